from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.money import DECIMAL_PLACES, MAX_DIGITS, fits_column, fits_precision, format_amount, quantize
from ledger.models import LedgerAccount, TransitionLog
from settlement.models import FeeCharge, SettlementInstruction, Trade
from settlement.selectors import instruction_transitions, visible_scope
from settlement.services.trades import TradeInput

# A positive decimal as a string: at most 20 digits before the point, no sign, exponent or spaces.
POSITIVE_DECIMAL = r"^(?:[1-9][0-9]{0,19}(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)$"


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "format": "decimal", "pattern": POSITIVE_DECIMAL, "example": "0.25"},
            {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1e20, "exclusiveMaximum": True},
        ]
    }
)
class ExactDecimalField(serializers.Field):
    """A positive decimal given as a JSON string (``POSITIVE_DECIMAL``), integer or (Decimal-parsed) number."""

    default_error_messages = {
        "invalid": "Must be a decimal number given as a string or a number.",
        "positive": "Must be greater than zero.",
        "too_large": "Must have at most 20 digits before the decimal point.",
    }

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, (bool, float)) or not isinstance(data, (str, int, Decimal)):
            self.fail("invalid")
        if isinstance(data, str) and not re.fullmatch(POSITIVE_DECIMAL, data):
            try:
                parsed = Decimal(data)
            except InvalidOperation:
                self.fail("invalid")
            if parsed.is_finite() and parsed <= 0:
                self.fail("positive")
            if parsed.is_finite() and parsed.adjusted() >= 20:
                self.fail("too_large")
            self.fail("invalid")  # a sign, an exponent, spaces or leading zeros
        try:
            value = data if isinstance(data, Decimal) else Decimal(data)
        except InvalidOperation:
            self.fail("invalid")
        if not value.is_finite():
            self.fail("invalid")
        if value <= 0:
            self.fail("positive")
        if value.adjusted() >= 20:
            self.fail("too_large")
        return value

    def to_representation(self, value: Decimal) -> str:
        return str(value)


@extend_schema_field(OpenApiTypes.DATETIME)
class AwareDateTimeField(serializers.Field):
    """ISO 8601 with an explicit UTC offset; naive or unparseable timestamps are refused."""

    default_error_messages = {
        "invalid": "Must be an ISO 8601 timestamp such as 2026-11-24T14:30:00Z.",
        "naive": "Must carry a timezone offset (e.g. Z or +01:00).",
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            value = datetime.fromisoformat(data.strip())
        except ValueError:
            self.fail("invalid")
        if value.tzinfo is None or value.utcoffset() is None:
            self.fail("naive")
        return value.astimezone(UTC)

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


NOTIONAL_TOO_LARGE = (
    f"The notional (quantity x price) must have at most {MAX_DIGITS - DECIMAL_PLACES} digits before the point."
)


def executed_at_error(value: datetime, now: datetime) -> str | None:
    if value > now + timedelta(seconds=settings.CLEARHOUSE_MAX_CLOCK_SKEW_SECONDS):
        return "Must not be in the future."
    if value < now - timedelta(days=settings.CLEARHOUSE_MAX_TRADE_AGE_DAYS):
        return f"Must be within the last {settings.CLEARHOUSE_MAX_TRADE_AGE_DAYS} days."
    return None


def trade_errors(instrument: Any, buyer: Any, seller: Any, quantity: Decimal, price: Decimal) -> dict[str, str]:
    """The checks across a trade's fields: distinct parties, per-asset precision, the notional fits
    its column and does not round to zero in the quote currency."""
    errors: dict[str, str] = {}
    if buyer.pk == seller.pk:
        errors["seller"] = "Buyer and seller must be different participants."
    if not fits_precision(quantity, instrument.base.precision):
        errors["quantity"] = f"{instrument.base.code} allows at most {instrument.base.precision} decimal places."
    if not fits_precision(price, instrument.price_precision):
        errors["price"] = f"{instrument.symbol} prices allow at most {instrument.price_precision} decimal places."
    if not errors and not fits_column(quantity * price):
        errors["price"] = NOTIONAL_TOO_LARGE
    if not errors and quantize(quantity * price, instrument.quote.precision) <= 0:
        errors["quantity"] = f"The payment rounds to zero {instrument.quote.code}."
    return errors


class TradeInputSerializer(serializers.Serializer):
    """One trade as the matching engine reports it.

    Context: ``participants`` and ``instruments`` (lookups by code, see
    ``selectors.ingest_lookups``) and ``source``: the authenticated service user's identity. The
    source is never taken from the body (a caller cannot file trades under another system's ids):
    a body ``source`` is accepted only when it equals it, otherwise it is a field error.
    """

    # (DRF's metaclass takes declared fields out of the class: this does not shadow Field.source)
    source = serializers.CharField(  # type: ignore[assignment]
        max_length=64,
        required=False,
        help_text="Always the authenticated API user; may be omitted, or sent equal to it (anything else is refused).",
    )
    external_id = serializers.CharField(max_length=100)
    symbol = serializers.CharField(max_length=40, help_text="BASE/QUOTE, e.g. BTC/USD or AAPL/USD")
    buyer = serializers.CharField(max_length=32, help_text="Participant code")
    seller = serializers.CharField(max_length=32, help_text="Participant code")
    quantity = ExactDecimalField(help_text="Base asset units, at most the asset's precision")
    price = ExactDecimalField(help_text="Quote currency per unit, at most the instrument's price precision")
    executed_at = AwareDateTimeField(help_text="Execution time with a UTC offset")

    def _lookup(self, table: str, code: str, what: str) -> Any:
        found = self.context[table].get(code)
        if found is None:
            raise serializers.ValidationError(f"Unknown {what} '{code}'.")
        return found

    def validate_symbol(self, value: str) -> Any:
        return self._lookup("instruments", value, "symbol")

    def validate_buyer(self, value: str) -> Any:
        return self._lookup("participants", value, "participant")

    def validate_seller(self, value: str) -> Any:
        return self._lookup("participants", value, "participant")

    def validate_source(self, value: str) -> str:
        if value != self.context["source"]:
            raise serializers.ValidationError(
                f"The source is the API user ('{self.context['source']}'), not '{value}': omit it or send that."
            )
        return value

    def validate_executed_at(self, value: datetime) -> datetime:
        message = executed_at_error(value, timezone.now())
        if message:
            raise serializers.ValidationError(message)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = trade_errors(attrs["symbol"], attrs["buyer"], attrs["seller"], attrs["quantity"], attrs["price"])
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def to_trade_input(self, attrs: dict[str, Any]) -> TradeInput:
        return TradeInput(
            source=self.context["source"],
            external_id=attrs["external_id"],
            instrument=attrs["symbol"],
            buyer=attrs["buyer"],
            seller=attrs["seller"],
            quantity=attrs["quantity"],
            price=attrs["price"],
            executed_at=attrs["executed_at"],
        )


class TradeBatchSerializer(serializers.Serializer):
    """Request body for a batch: ``{"trades": [...]}`` (a bare JSON list is accepted too)."""

    trades = TradeInputSerializer(many=True)


@extend_schema_field({"type": "string", "format": "decimal", "example": "16000.12"})
class AmountField(serializers.Field):
    """A stored amount rendered as a string at its asset's precision ("16000.12", not 18 places)."""

    def __init__(self, *, field: str, precision: Callable[[Any], int], **kwargs: Any) -> None:
        self.field_name_on_object = field
        self.precision_of = precision
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str:
        return format_amount(getattr(value, self.field_name_on_object), self.precision_of(value))


def _asset_precision(obj: Any) -> int:
    return obj.asset.precision


class _InstructionCodes(serializers.ModelSerializer):
    """Asset and parties by their codes rather than ids; amount at the asset's precision."""

    amount = AmountField(field="amount", precision=_asset_precision)
    asset = serializers.CharField(source="asset.code")
    payer = serializers.CharField(source="payer.code")
    payee = serializers.CharField(source="payee.code")


class InstructionSummarySerializer(_InstructionCodes):
    class Meta:
        model = SettlementInstruction
        fields = ["id", "leg", "asset", "payer", "payee", "amount", "settlement_date", "status"]


class TradeSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="instrument.symbol")
    quantity = AmountField(field="quantity", precision=lambda t: t.instrument.base.precision)
    price = AmountField(field="price", precision=lambda t: t.instrument.price_precision)
    notional = AmountField(field="notional", precision=lambda t: t.instrument.quote.precision)
    buyer = serializers.CharField(source="buyer.code")
    seller = serializers.CharField(source="seller.code")
    instructions = InstructionSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Trade
        fields = [
            "id",
            "source",
            "external_id",
            "symbol",
            "buyer",
            "seller",
            "quantity",
            "price",
            "notional",
            "executed_at",
            "settlement_date",
            "received_at",
            "instructions",
        ]


class TransitionSerializer(serializers.ModelSerializer):
    class Meta:
        model = TransitionLog
        fields = ["id", "from_status", "to_status", "at", "actor_label", "reason", "metadata", "hash"]


class InstructionSerializer(_InstructionCodes):
    trade_external_id = serializers.CharField(source="trade.external_id")
    trade_source = serializers.CharField(source="trade.source")
    reference = serializers.CharField(read_only=True)

    class Meta:
        model = SettlementInstruction
        fields = [
            "id",
            "trade",
            "trade_source",
            "trade_external_id",
            "leg",
            "asset",
            "payer",
            "payee",
            "amount",
            "settlement_date",
            "status",
            "attempt",
            "failure_reason",
            "reference",
            "created_at",
            "updated_at",
        ]


class FeeChargeSerializer(serializers.ModelSerializer):
    participant = serializers.CharField(source="participant.code")
    asset = serializers.CharField(source="asset.code")
    rule = serializers.CharField(
        source="rule.name", default=None, allow_null=True, help_text="None for a pass-through cost (gas, bank charges)."
    )
    value = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True)
    fee = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True)

    class Meta:
        model = FeeCharge
        fields = [
            "attempt",
            "kind",
            "party",
            "participant",
            "asset",
            "rule",
            "cost_source",
            "value",
            "bps",
            "limited",
            "flat",
            "fee",
            "status",
        ]


class InstructionDetailSerializer(InstructionSerializer):
    transitions = serializers.SerializerMethodField()
    fees = serializers.SerializerMethodField(
        help_text="The leg's fee charges; a participant sees only its own (never its counterparty's rule or fee)."
    )
    net_payments = serializers.SerializerMethodField(
        help_text="Ids of the net payments (payer's and payee's side) that settled this leg, when netted."
    )

    class Meta(InstructionSerializer.Meta):
        fields = [*InstructionSerializer.Meta.fields, "fees", "net_payments", "transitions"]

    @extend_schema_field(FeeChargeSerializer(many=True))
    def get_fees(self, obj: SettlementInstruction) -> list[dict[str, Any]]:
        request = self.context.get("request")
        charges = visible_scope(obj.fee_charges.all(), getattr(request, "user", None), "participant")
        fees = FeeChargeSerializer(charges.select_related("participant", "asset", "rule"), many=True)
        return cast(list[dict[str, Any]], fees.data)  # many=True makes a ListSerializer: its data is a list

    def get_net_payments(self, obj: SettlementInstruction) -> list[int]:
        from common.ports import leg_net_payment_ids

        return leg_net_payment_ids(obj)

    @extend_schema_field(TransitionSerializer(many=True))
    def get_transitions(self, obj: SettlementInstruction) -> list[dict[str, Any]]:
        rows = TransitionSerializer(instruction_transitions(obj), many=True)
        return cast(list[dict[str, Any]], rows.data)  # many=True makes a ListSerializer: its data is a list


class FeePreviewSerializer(serializers.Serializer):
    """What a trade would cost in fees now (on its cash leg)."""

    symbol = serializers.CharField()
    buyer = serializers.CharField()
    seller = serializers.CharField()
    quantity = ExactDecimalField()
    price = ExactDecimalField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        from reference.models import Instrument, Participant

        errors = {}
        attrs["instrument"] = Instrument.objects.select_related("quote").filter(symbol=attrs["symbol"]).first()
        if attrs["instrument"] is None:
            errors["symbol"] = [f"Unknown instrument {attrs['symbol']!r}."]
        for side in ("buyer", "seller"):
            attrs[side] = Participant.objects.filter(code=attrs[side]).first() or attrs[side]
            if isinstance(attrs[side], str):
                errors[side] = [f"Unknown participant {attrs[side]!r}."]
        if not fits_column(attrs["quantity"] * attrs["price"]):
            errors["price"] = [NOTIONAL_TOO_LARGE]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class BalanceSerializer(serializers.ModelSerializer):
    balance = AmountField(field="balance", precision=_asset_precision)
    participant = serializers.SerializerMethodField()
    asset = serializers.CharField(source="asset.code")

    class Meta:
        model = LedgerAccount
        fields = ["id", "participant", "asset", "kind", "balance"]

    def get_participant(self, obj: LedgerAccount) -> str:
        return obj.owner.code if obj.owner is not None else f"system:{obj.system_code}"
