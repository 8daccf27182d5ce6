from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from simple_history.models import HistoricalRecords
from stdnum import isin as stdnum_isin
from stdnum import lei as stdnum_lei
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.us import rtn as stdnum_rtn

from common.choices import AssetKind, Chain, MarketCalendar, SettlementCycle
from common.money import MAX_PRECISION
from common.webhook_targets import validate_webhook_url

code_validator = RegexValidator(r"^[A-Z0-9][A-Z0-9_.-]{0,31}$", "Use upper-case letters, digits, '_', '-' or '.'.")


class Participant(models.Model):
    """A member firm or customer that trades and settles through the house."""

    code = models.CharField(max_length=32, unique=True, validators=[code_validator])
    name = models.CharField(max_length=200)
    lei = models.CharField("LEI", max_length=20, blank=True, help_text="Legal Entity Identifier (ISO 17442)")
    is_active = models.BooleanField(default=True)
    tier = models.CharField(max_length=32, default="standard", help_text="Fee tier (matches fee rules' tier).")
    webhook_url = models.URLField(
        blank=True,
        validators=[validate_webhook_url],
        help_text="Settlement events are POSTed here (JSON, HMAC-signed). Public https addresses only.",
    )
    webhook_secret = models.CharField(
        max_length=128, blank=True, help_text="Shared secret for the X-Clearhouse-Signature HMAC of webhook bodies."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(table_name="settlement_historicalparticipant")

    class Meta:
        db_table = "settlement_participant"
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        if self.lei:
            try:
                self.lei = stdnum_lei.validate(self.lei)
            except StdnumError as exc:
                raise ValidationError({"lei": f"Invalid LEI: {exc}"}) from exc


class ParticipantUser(models.Model):
    """Binds a login or API token user to the participant whose data it may see."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="participant_link")
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="users")
    history = HistoricalRecords(table_name="settlement_historicalparticipantuser")

    class Meta:
        db_table = "settlement_participantuser"

    def __str__(self) -> str:
        return f"{self.user} → {self.participant}"


class Asset(models.Model):
    code = models.CharField(max_length=16, unique=True, validators=[code_validator])
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=AssetKind.choices)
    precision = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(0), MaxValueValidator(MAX_PRECISION)],
        help_text="Decimal places of the smallest unit (ETH 18, BTC 8, USD 2, shares 0).",
    )
    settlement_cycle = models.PositiveSmallIntegerField(choices=SettlementCycle.choices, default=SettlementCycle.T0)
    calendar = models.CharField(max_length=16, choices=MarketCalendar.choices, default=MarketCalendar.ALWAYS)
    chain = models.CharField(max_length=16, choices=Chain.choices, blank=True, help_text="Crypto assets only.")
    required_confirmations = models.PositiveSmallIntegerField(
        default=1, help_text="Blocks on top of a transfer before it counts as settled (e.g. BTC 2, ETH 12, SOL 32)."
    )
    isin = models.CharField("ISIN", max_length=12, blank=True, help_text="Securities: ISO 6166 identifier.")
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords(table_name="settlement_historicalasset")

    class Meta:
        db_table = "settlement_asset"
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(condition=models.Q(precision__lte=MAX_PRECISION), name="asset_precision_max"),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def is_crypto_t0(self) -> bool:
        """Trades with this base asset settle at once through the crypto pipeline."""
        return self.kind == AssetKind.CRYPTO and self.settlement_cycle == SettlementCycle.T0

    def clean(self) -> None:
        if self.kind == AssetKind.CRYPTO and not self.chain:
            raise ValidationError({"chain": "A crypto asset needs its chain."})
        if self.kind != AssetKind.CRYPTO and self.chain:
            raise ValidationError({"chain": "Only crypto assets live on a chain."})
        if self.isin:
            if self.kind != AssetKind.SECURITY:
                raise ValidationError({"isin": "Only securities have an ISIN."})
            try:
                self.isin = stdnum_isin.validate(self.isin)
            except StdnumError as exc:
                raise ValidationError({"isin": f"Invalid ISIN: {exc}"}) from exc


class Instrument(models.Model):
    """A tradable symbol such as ``BTC/USD``: base asset delivered, quote asset paid."""

    symbol = models.CharField(max_length=40, unique=True)
    base = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    quote = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    price_precision = models.PositiveSmallIntegerField(
        validators=[MaxValueValidator(MAX_PRECISION)], help_text="Decimal places allowed in a price."
    )
    is_active = models.BooleanField(default=True)
    history = HistoricalRecords(table_name="settlement_historicalinstrument")

    class Meta:
        db_table = "settlement_instrument"
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(base=models.F("quote")), name="instrument_base_ne_quote"),
        ]

    def __str__(self) -> str:
        return self.symbol


class WalletAddress(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="wallets")
    chain = models.CharField(max_length=16, choices=Chain.choices)
    address = models.CharField(max_length=128)
    label = models.CharField(max_length=100, blank=True)
    next_nonce = models.BigIntegerField(default=0, help_text="Next transaction nonce the house will sign with.")
    chain_state = models.JSONField(
        default=dict, blank=True, help_text="Rail state after the last signed transfer (Bitcoin: the change output)."
    )
    history = HistoricalRecords(table_name="settlement_historicalwalletaddress")

    class Meta:
        db_table = "settlement_walletaddress"
        constraints = [
            models.UniqueConstraint(fields=["chain", "address"], name="wallet_chain_address_unique"),
            models.UniqueConstraint(fields=["participant", "chain"], name="wallet_one_per_chain"),
        ]

    def __str__(self) -> str:
        return f"{self.chain}:{self.address}"

    def clean(self) -> None:
        if self.chain == Chain.ETHEREUM:
            from eth_utils import is_address, is_checksum_address, to_checksum_address

            mixed_case = self.address != self.address.lower() and self.address != self.address.upper()
            if not is_address(self.address) or (mixed_case and not is_checksum_address(self.address)):
                raise ValidationError(
                    {"address": "Invalid Ethereum address (20-byte hex; EIP-55 checksum if mixed case)"}
                )
            self.address = to_checksum_address(self.address)
        elif self.chain == Chain.BITCOIN:
            from rails.crypto.bitcoin import BitcoinRail
            from rails.crypto.bitcoin_network import select_network

            select_network(settings.CLEARHOUSE_BTC_NETWORK)
            if not BitcoinRail.valid_address(self.address):
                raise ValidationError(
                    {
                        "address": f"Invalid Bitcoin address for {settings.CLEARHOUSE_BTC_NETWORK} "
                        "(Base58Check or bech32)"
                    }
                )
        elif self.chain == Chain.SOLANA:
            from rails.crypto.solana import SolanaRail

            if not SolanaRail.valid_address(self.address):
                raise ValidationError({"address": "Invalid Solana address (a base58 32-byte public key)"})


class BankAccount(models.Model):
    """A fiat account: IBAN + BIC (SEPA / SWIFT) or ABA routing + account number (US)."""

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="bank_accounts")
    currency = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="+")
    holder_name = models.CharField(max_length=140)
    iban = models.CharField("IBAN", max_length=34, blank=True)
    bic = models.CharField("BIC", max_length=11, blank=True)
    aba_routing = models.CharField("ABA routing number", max_length=9, blank=True)
    account_number = models.CharField(max_length=34, blank=True)
    history = HistoricalRecords(table_name="settlement_historicalbankaccount")

    class Meta:
        db_table = "settlement_bankaccount"

    def __str__(self) -> str:
        return f"{self.participant} {self.currency} {self.iban or self.account_number}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.iban:
            try:
                self.iban = IBAN(self.iban).compact
            except SchwiftyException as exc:
                errors["iban"] = f"Invalid IBAN: {exc}"
        if self.bic:
            try:
                self.bic = str(BIC(self.bic))
            except SchwiftyException as exc:
                errors["bic"] = f"Invalid BIC: {exc}"
        if self.aba_routing:
            try:
                self.aba_routing = stdnum_rtn.validate(self.aba_routing)
            except StdnumError as exc:
                errors["aba_routing"] = f"Invalid ABA routing number: {exc}"
            if not self.account_number:
                errors["account_number"] = "An ABA routing number needs an account number."
        if not self.iban and not self.aba_routing:
            errors["iban"] = "Give an IBAN, or an ABA routing number with an account number."
        if errors:
            raise ValidationError(errors)


class CustodyAccount(models.Model):
    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="custody_accounts")
    custodian_bic = models.CharField("custodian BIC", max_length=11)
    account_id = models.CharField(max_length=35)
    history = HistoricalRecords(table_name="settlement_historicalcustodyaccount")

    class Meta:
        db_table = "settlement_custodyaccount"
        constraints = [
            models.UniqueConstraint(fields=["custodian_bic", "account_id"], name="custody_account_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.custodian_bic}/{self.account_id}"

    def clean(self) -> None:
        try:
            self.custodian_bic = str(BIC(self.custodian_bic))
        except SchwiftyException as exc:
            raise ValidationError({"custodian_bic": f"Invalid BIC: {exc}"}) from exc
