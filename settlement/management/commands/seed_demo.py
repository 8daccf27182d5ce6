"""Seed demo participants, assets, instruments, endpoints, balances, users and tokens.

Safe to run twice: everything is looked up by its natural key, deposits by their reference.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from stdnum.iso7064 import mod_97_10

from common.actors import SystemActor
from common.choices import AssetKind, Chain, MarketCalendar
from ledger.services.ledger import ledger_deposit
from rails.crypto.registry import chain_rail
from reference.models import Asset, BankAccount, CustodyAccount, Instrument, Participant, ParticipantUser, WalletAddress
from settlement.crypto.wallets import local_chain_fund, wallet_provision
from settlement.models.tokens import ApiToken, Scope
from settlement.services.tokens import token_issue, token_revoke

ASSETS = [
    # code, name, kind, precision, cycle, calendar, chain
    ("USD", "US dollar", AssetKind.FIAT, 2, 1, MarketCalendar.FED, ""),
    ("EUR", "Euro", AssetKind.FIAT, 2, 1, MarketCalendar.TARGET, ""),
    ("BTC", "Bitcoin", AssetKind.CRYPTO, 8, 0, MarketCalendar.ALWAYS, Chain.BITCOIN),
    ("ETH", "Ether", AssetKind.CRYPTO, 18, 0, MarketCalendar.ALWAYS, Chain.ETHEREUM),
    ("SOL", "Solana", AssetKind.CRYPTO, 9, 0, MarketCalendar.ALWAYS, Chain.SOLANA),
    ("AAPL", "Apple Inc. common stock", AssetKind.SECURITY, 0, 1, MarketCalendar.NYSE, ""),
    ("MSFT", "Microsoft Corp. common stock", AssetKind.SECURITY, 0, 1, MarketCalendar.NYSE, ""),
]
INSTRUMENTS = [
    ("BTC/USD", "BTC", "USD", 2),
    ("ETH/USD", "ETH", "USD", 2),
    ("SOL/USD", "SOL", "USD", 4),
    ("ETH/BTC", "ETH", "BTC", 8),
    ("BTC/EUR", "BTC", "EUR", 2),
    ("AAPL/USD", "AAPL", "USD", 2),
    ("MSFT/USD", "MSFT", "USD", 2),
    ("EUR/USD", "EUR", "USD", 4),
]
PARTICIPANTS = [
    ("ALPHA", "Alpha Securities LLC"),
    ("BRAVO", "Bravo Capital Markets"),
    ("CHARLIE", "Charlie Digital Assets"),
    ("DELTA", "Delta Brokerage"),
    ("ECHO", "Echo Retail Trading (thinly funded)"),
]
FUNDING = {
    "USD": Decimal("50000000"),
    "EUR": Decimal("20000000"),
    "BTC": Decimal("500"),
    "ETH": Decimal("1000"),  # on chain when an Ethereum rail is configured (anvil in the demo)
    "SOL": Decimal("200000"),
    "AAPL": Decimal("200000"),
    "MSFT": Decimal("200000"),
}
IBANS = [
    "DE89370400440532013000",
    "GB33BUKB20201555555555",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
    "CH9300762011623852957",
]
BICS = ["COBADEFFXXX", "BUKBGB22XXX", "PSSTFRPPXXX", "ABNANL2AXXX", "UBSWCHZH80A"]
ABA = ["021000021", "026009593", "111000025", "121000248", "011000138"]

ISINS = {"AAPL": "US0378331005", "MSFT": "US5949181045"}
DEMO_ADMIN = ("demo", "demo-password")
ENGINE_USER = "matching-engine"


def make_lei(index: int) -> str:
    base = f"5493000DEMO{index:07d}"
    return base + mod_97_10.calc_check_digits(base)


class Command(BaseCommand):
    help = "Seed demo participants, assets, balances, users and API tokens (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        actor = SystemActor("seed-demo")
        on_chain = {chain for chain in Chain.values if chain_rail(chain) is not None}
        with transaction.atomic():
            assets = {}
            for code, name, kind, precision, cycle, calendar, chain in ASSETS:
                assets[code], _ = Asset.objects.get_or_create(
                    code=code,
                    defaults={
                        "name": name,
                        "kind": kind,
                        "precision": precision,
                        "settlement_cycle": cycle,
                        "calendar": calendar,
                        "chain": chain,
                        "required_confirmations": 1,
                        "isin": ISINS.get(code, ""),
                    },
                )
            for symbol, base, quote, price_precision in INSTRUMENTS:
                Instrument.objects.get_or_create(
                    symbol=symbol,
                    defaults={"base": assets[base], "quote": assets[quote], "price_precision": price_precision},
                )
            users = get_user_model()
            for index, (code, name) in enumerate(PARTICIPANTS):
                participant, created = Participant.objects.get_or_create(
                    code=code, defaults={"name": name, "lei": make_lei(index)}
                )
                participant.full_clean()
                if created:
                    self._endpoints(participant, index, assets, on_chain=on_chain, actor=actor)
                user, _ = users.objects.get_or_create(username=f"{code.lower()}-api")
                ParticipantUser.objects.get_or_create(user=user, defaults={"participant": participant})
                share = Decimal("0.001") if code == "ECHO" else Decimal(1)
                for asset_code, amount in FUNDING.items():
                    asset = assets[asset_code]
                    if asset.chain in on_chain:
                        self._fund_on_chain(participant, asset, amount * share, created=created, actor=actor)
                        continue
                    ledger_deposit(
                        owner=participant,
                        asset=asset,
                        amount=(amount * share).quantize(Decimal(1).scaleb(-asset.precision)),
                        reference=f"seed:{code}:{asset_code}",
                        actor=actor,
                        memo="demo funding",
                    )
            admin, created = users.objects.get_or_create(
                username=DEMO_ADMIN[0], defaults={"is_staff": True, "is_superuser": True}
            )
            if created:
                admin.set_password(DEMO_ADMIN[1])
                admin.save()
            otp_device = self._demo_second_factor(admin)
            self._open_at_networks()
            self._fee_schedule(assets)
            engine, _ = users.objects.get_or_create(username=ENGINE_USER, defaults={"is_staff": True})
            # a fresh key each run (only its hash is stored); the previous demo key stops working
            for old in ApiToken.objects.filter(user=engine, revoked_at__isnull=True):
                token_revoke(token=old, actor=actor, reason="demo re-seeded: a new key was issued")
            issued = token_issue(
                user=engine, name="matching engine (demo)", scopes=[Scope.READ, Scope.TRADES_WRITE], actor=actor
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(PARTICIPANTS)} participants, {len(ASSETS)} assets, {len(INSTRUMENTS)} instruments."
            )
        )
        self.stdout.write(f"Admin login: {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}")
        if otp_device is not None:
            self.stdout.write(f"Admin second factor (TOTP, add to an authenticator app): {otp_device.config_url}")
        self.stdout.write(f"Matching-engine API token: {issued.key}")

    @staticmethod
    def _demo_second_factor(admin: Any) -> Any:
        """With CLEARHOUSE_ADMIN_OTP_REQUIRED on (production settings) the demo admin gets a
        confirmed TOTP device; otherwise (the demo's DEBUG mode) the admin asks for no token."""
        if not settings.CLEARHOUSE_ADMIN_OTP_REQUIRED:
            return None
        from django_otp.plugins.otp_totp.models import TOTPDevice

        device, _ = TOTPDevice.objects.get_or_create(user=admin, name="demo", defaults={"confirmed": True})
        return device

    @staticmethod
    def _fee_schedule(assets: dict) -> None:
        """Cash fees: 5 bp, at least 0.50 and at most 250.00 per instruction, from the epoch."""
        from datetime import UTC, datetime

        from settlement.models import FeeRule

        for code in ("USD", "EUR"):
            if code in assets:
                FeeRule.objects.get_or_create(
                    name=f"standard {code}",
                    defaults={
                        "asset": assets[code],
                        "bps": Decimal("5"),
                        "minimum": Decimal("0.50"),
                        "maximum": Decimal("250.00"),
                        "valid_from": datetime(2020, 1, 1, tzinfo=UTC),
                    },
                )

    def _open_at_networks(self) -> None:
        """Open every participant's bank and custody accounts at the bank and custodian simulators
        the settings point at (when they run as processes), funded as on the ledger."""
        from rails.networks import network_client

        if settings.CLEARHOUSE_BANK_URL == "local" or settings.CLEARHOUSE_CUSTODIAN_URL == "local":
            return
        bank, custodian = network_client("bank"), network_client("custodian")
        for account in BankAccount.objects.select_related("participant", "currency"):
            share = Decimal("0.001") if account.participant.code == "ECHO" else Decimal(1)
            bank.session.post(
                f"{bank.url}/sim/open_account",
                json={
                    "account": account.iban or account.account_number,
                    "currency": account.currency.code,
                    "name": account.holder_name,
                    "balance": str(FUNDING[account.currency.code] * share),
                },
                timeout=5,
            ).raise_for_status()
        # The house keeps an operating buffer at the bank, from which the bank takes its charges:
        # 15.00 per wire (pacs.008), reported in the booking's camt.054 and passed on at cost.
        for currency, house in settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS.items():
            bank.session.post(
                f"{bank.url}/sim/open_account",
                json={"account": house.get("iban") or house["account"], "currency": currency, "balance": "50000"},
                timeout=5,
            ).raise_for_status()
        bank.session.post(
            f"{bank.url}/sim/set_charges", json={"message_type": "pacs.008.001.08", "amount": "15.00"}, timeout=5
        ).raise_for_status()
        for custody in CustodyAccount.objects.select_related("participant"):
            share = Decimal("0.001") if custody.participant.code == "ECHO" else Decimal(1)
            for code, isin in ISINS.items():
                custodian.session.post(
                    f"{custodian.url}/sim/open_account",
                    json={"account": custody.account_id, "isin": isin, "quantity": str(FUNDING[code] * share)},
                    timeout=5,
                ).raise_for_status()

    def _fund_on_chain(
        self, participant: Participant, asset: Asset, amount: Decimal, *, created: bool, actor: SystemActor
    ) -> None:
        """Pay into the participant's house wallet on the asset's chain and credit the ledger for
        it, once (the chain keeps its state between demo runs, like the database)."""
        if created:
            wallet = participant.wallets.get(chain=asset.chain)
            local_chain_fund(wallet=wallet, asset=asset, amount=amount, actor=actor)

    def _endpoints(
        self, participant: Participant, index: int, assets: dict[str, Asset], *, on_chain: set[str], actor: SystemActor
    ) -> None:
        accounts = [
            BankAccount(
                participant=participant,
                currency=assets["EUR"],
                holder_name=participant.name,
                iban=IBANS[index],
                bic=BICS[index],
            ),
            BankAccount(
                participant=participant,
                currency=assets["USD"],
                holder_name=participant.name,
                aba_routing=ABA[index],
                account_number=f"{9000001 + index}",
            ),
        ]
        for account in accounts:
            account.full_clean()
            account.save()
        custody = CustodyAccount(participant=participant, custodian_bic="IRVTUS3NXXX", account_id=f"DEMO-{index:04d}")
        custody.full_clean()
        custody.save()
        # house wallets whose keys are in the keystore: trades on these chains settle on chain
        for chain in sorted(on_chain):
            wallet_provision(participant=participant, chain=chain, actor=actor)
        placeholders = {  # display-only addresses for chains that settle on the internal ledger
            Chain.ETHEREUM: "0x" + f"{index + 1:040x}",
            Chain.BITCOIN: f"bcrt1qdemo{index:032d}",
            Chain.SOLANA: f"Demo{index:040d}",
        }
        for chain, address in placeholders.items():
            if chain not in on_chain:
                WalletAddress.objects.create(participant=participant, chain=chain, address=address, label="demo")
