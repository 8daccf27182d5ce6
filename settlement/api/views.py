from __future__ import annotations

from decimal import Decimal
from typing import Any

import django_filters
from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from common.choices import AssetKind, InstructionStatus, Leg
from ledger.models import LedgerAccount
from settlement import selectors
from settlement.api.errors import error_response
from settlement.api.filters import StrictFilterSet, TradeFilter
from settlement.api.schema import ingest_response
from settlement.api.serializers import (
    BalanceSerializer,
    FeePreviewSerializer,
    InstructionDetailSerializer,
    InstructionSerializer,
    TradeBatchSerializer,
    TradeInputSerializer,
    TradeSerializer,
)
from settlement.api.trade_rows import trade_rows_validate
from settlement.models import SettlementInstruction, Trade
from settlement.models.fees import FeeRail, SettlementType
from settlement.models.tokens import ApiToken
from settlement.services.trades import trades_ingest


def _item_errors(items: list[Any], errors: dict[int, Any]) -> list[dict[str, Any]]:
    """Per-item errors of a batch, in input order: index, the item's external_id, field errors."""
    rejected = []
    for index in sorted(errors):
        item = items[index]
        external_id = item.get("external_id") if isinstance(item, dict) else None
        rejected.append({"index": index, "external_id": external_id, "errors": errors[index]})
    return rejected


def _trade_reporter_refusal(request: Request) -> Response | None:
    """Who may report trades: only a staff service user (the matching engine) with its API token.
    A participant's token is refused (a trade it reports would bind its counterparty unaffirmed),
    as is a browser session (people do not report trades) and any other user."""
    if selectors.participant_for_user(request.user) is not None:
        return error_response(
            code="participant_cannot_report_trades",
            message="Trades are reported by the matching engine; a participant's token may not submit them.",
            http_status=status.HTTP_403_FORBIDDEN,
        )
    if not selectors.sees_everything(request.user):
        return error_response(
            code="permission_denied", message="This user may not submit trades.", http_status=status.HTTP_403_FORBIDDEN
        )
    if not isinstance(request.auth, ApiToken):
        return error_response(
            code="service_token_required",
            message="Trades are submitted with the matching engine's API token, not a browser session.",
            http_status=status.HTTP_403_FORBIDDEN,
        )
    return None


class TradeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Executed trades. ``POST`` ingests one trade or a batch; reads are limited to the caller's trades."""

    serializer_class = TradeSerializer
    filterset_class = TradeFilter

    def get_queryset(self) -> QuerySet[Trade]:
        return selectors.trades_visible_to(self.request.user).prefetch_related(
            "instructions__asset", "instructions__payer", "instructions__payee"
        )

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="TradeSubmission",
            serializers=[TradeInputSerializer, TradeBatchSerializer],
            resource_type_field_name=None,
        ),
        responses={
            200: ingest_response("Every trade was already stored with the same content (replay)."),
            201: ingest_response("At least one trade was stored."),
            400: OpenApiResponse(description="Validation failed; nothing of the request was stored."),
            403: OpenApiResponse(
                description="Not the matching engine: a participant's token (`participant_cannot_report_trades`), "
                "a browser session (`service_token_required`) or any other user (`permission_denied`)."
            ),
            409: OpenApiResponse(description="A trade id was already used with different content."),
        },
        description=(
            'Submit one trade (a JSON object) or a batch (`{"trades": [...]}` or a JSON list, at most '
            "10,000). All-or-nothing per request: if any item is invalid, nothing is stored and the response "
            "lists every rejected item with per-field messages. Idempotent by (source, external_id). Only a "
            "staff service user (the matching engine) may submit, with its API token; the trades' `source` is "
            "that user's name (a body `source` that differs is a field error)."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = request.data
        single = isinstance(body, dict) and "trades" not in body
        if single:
            items = [body]
        elif isinstance(body, dict):
            items = body["trades"]
        else:
            items = body
        if not isinstance(items, list) or not items:
            return error_response(
                code="invalid",
                message="Send a trade object or a non-empty list of trades.",
                http_status=status.HTTP_400_BAD_REQUEST,
            )
        if len(items) > settings.CLEARHOUSE_MAX_BATCH:
            return error_response(
                code="batch_too_large",
                message=f"A batch holds at most {settings.CLEARHOUSE_MAX_BATCH} trades, got {len(items)}.",
                http_status=status.HTTP_400_BAD_REQUEST,
            )
        refused = _trade_reporter_refusal(request)
        if refused is not None:
            return refused
        participants, instruments = selectors.ingest_lookups()
        context = {"participants": participants, "instruments": instruments, "source": request.user.get_username()}
        inputs = trade_rows_validate(items, **context, now=timezone.now())  # plain code, the usual case
        if inputs is None:  # some row is not plainly valid: the serializer gives every row's verdict
            checked = self._serializer_inputs(items, context=context, single=single)
            if isinstance(checked, Response):
                return checked
            inputs = checked
        result = trades_ingest(items=inputs, actor=request.user)
        http_status = status.HTTP_201_CREATED if any(result.created) else status.HTTP_200_OK
        if single:
            trade = self.get_queryset().get(pk=result.trades[0].pk)
            data = dict(TradeSerializer(trade).data)
            data["result"] = "created" if result.created[0] else "existing"
            return Response(data, status=http_status)
        return Response(
            {
                "received": len(items),
                "created": result.created_count,
                "existing": sum(1 for c in result.created if not c),
                "results": [
                    {
                        "index": index,
                        "id": trade.pk,
                        "source": trade.source,
                        "external_id": trade.external_id,
                        "settlement_date": trade.settlement_date,
                        "result": "created" if created else "existing",
                    }
                    for index, (trade, created) in enumerate(zip(result.trades, result.created, strict=True))
                ],
            },
            status=http_status,
        )

    @staticmethod
    def _serializer_inputs(items: list[Any], *, context: dict[str, Any], single: bool) -> list[Any] | Response:
        """The batch through ``TradeInputSerializer``: its inputs, or the 400 listing every bad row."""
        serializer = TradeInputSerializer(data=items, many=True, context=context)
        if not serializer.is_valid():
            rejected = _item_errors(items, serializer.errors)
            if single:
                return error_response(
                    code="invalid",
                    message="The trade is invalid; nothing was stored.",
                    http_status=status.HTTP_400_BAD_REQUEST,
                    detail=rejected[0]["errors"],
                )
            return error_response(
                code="invalid",
                message=f"{len(rejected)} of {len(items)} trades are invalid; nothing was stored.",
                http_status=status.HTTP_400_BAD_REQUEST,
                detail=rejected,
            )
        child = serializer.child
        return [child.to_trade_input(attrs) for attrs in serializer.validated_data]


class InstructionFilter(StrictFilterSet):
    status = django_filters.MultipleChoiceFilter(choices=InstructionStatus.choices)
    leg = django_filters.ChoiceFilter(choices=Leg.choices)
    asset = django_filters.CharFilter(field_name="asset__code")
    participant = django_filters.CharFilter(method="filter_participant", help_text="Payer or payee code")
    settlement_date = django_filters.DateFilter()
    settlement_date_from = django_filters.DateFilter(field_name="settlement_date", lookup_expr="gte")
    settlement_date_to = django_filters.DateFilter(field_name="settlement_date", lookup_expr="lte")
    trade_external_id = django_filters.CharFilter(field_name="trade__external_id")

    class Meta:
        model = SettlementInstruction
        fields: list[str] = []

    def filter_participant(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(payer__code=value) | Q(payee__code=value))


class InstructionViewSet(viewsets.ReadOnlyModelViewSet):
    """Settlement instructions (one per trade leg); the detail carries its transition history."""

    filterset_class = InstructionFilter

    def get_queryset(self) -> QuerySet[SettlementInstruction]:
        return selectors.instructions_visible_to(self.request.user).order_by("-id")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return InstructionDetailSerializer if self.action == "retrieve" else InstructionSerializer


class BalanceFilter(StrictFilterSet):
    asset = django_filters.CharFilter(field_name="asset__code")
    participant = django_filters.CharFilter(field_name="owner__code")
    kind = django_filters.CharFilter()

    class Meta:
        model = LedgerAccount
        fields: list[str] = []


class BalanceViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Ledger balances per (participant, asset, kind); participants see their own accounts only."""

    serializer_class = BalanceSerializer
    filterset_class = BalanceFilter

    def get_queryset(self) -> QuerySet:
        return selectors.balances_visible_to(self.request.user)


class FeePreviewView(viewsets.ViewSet):
    """``POST /api/v1/fees/preview/``: the fees a trade would be charged now, per party, with the
    rule applied (nothing is stored). A trade that settles through a netting window is charged on
    the net payments instead; its quote is then ``indicative`` (as if it were the whole net
    payment). A read: the ``read`` scope suffices. Staff see every party's quote; a participant
    may preview only a trade it is a party to, and sees only its own fee (and total)."""

    required_scope = "read"

    @extend_schema(
        request=FeePreviewSerializer,
        responses={
            200: OpenApiResponse(description="Fees per party (a participant: its own only)."),
            403: OpenApiResponse(description="The caller is not a party to the trade (`not_a_party`)."),
        },
    )
    def create(self, request: Request) -> Response:
        from common.money import format_amount, quantize
        from settlement.services.fees import fee_quotes

        viewer = None if selectors.sees_everything(request.user) else selectors.participant_for_user(request.user)
        if viewer is None and not selectors.sees_everything(request.user):
            return error_response(code="permission_denied", message="This user may not preview fees.", http_status=403)
        serializer = FeePreviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if viewer is not None and viewer.pk not in (data["buyer"].pk, data["seller"].pk):
            return error_response(
                code="not_a_party",
                message="A participant may preview the fees only of a trade it is a party to.",
                http_status=403,
            )
        instrument = data["instrument"]
        quote = instrument.quote
        notional = quantize(data["quantity"] * data["price"], quote.precision)
        netted = not instrument.base.is_crypto_t0  # everything but T+0 crypto settles through a window
        quotes = fee_quotes(
            payer=data["buyer"],
            payee=data["seller"],
            asset=quote,
            amount=notional,
            rail=FeeRail.BANK if netted and quote.kind == AssetKind.FIAT else FeeRail.LEDGER,
            settlement_type=SettlementType.NETTED if netted else SettlementType.GROSS,
        )
        if viewer is not None:  # never the counterparty's rule, rate or fee
            quotes = [q for q in quotes if q.participant.pk == viewer.pk]
        return Response(
            {
                "symbol": instrument.symbol,
                "currency": quote.code,
                "notional": format_amount(notional, quote.precision),
                "settlement_type": SettlementType.NETTED if netted else SettlementType.GROSS,
                # a netted trade is charged on its participants' net payments of the window: the
                # quote is what this trade would cost if it were the whole net payment
                "indicative": netted,
                "fees": [
                    {
                        "party": q.party,
                        "participant": q.participant.code,
                        "rule": q.rule.name if q.rule else None,
                        "bps": str(q.bps),
                        "limited": q.limited,
                        "flat": format_amount(q.flat, quote.precision),
                        "fee": format_amount(q.fee, quote.precision),
                    }
                    for q in quotes
                ],
                "total": format_amount(sum((q.fee for q in quotes), Decimal(0)), quote.precision),
            }
        )


class StatementView(viewsets.ViewSet):
    """``GET /api/v1/statements/?from=YYYY-MM-DD&to=YYYY-MM-DD&output=json|csv|pdf``: the caller's
    statement (a participant's token); staff name the participant with ``participant=CODE``."""

    required_scope = "read"

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, required=True, description="First day (YYYY-MM-DD)"),
            OpenApiParameter("to", OpenApiTypes.DATE, required=True, description="Last day (YYYY-MM-DD), inclusive"),
            OpenApiParameter("output", str, enum=["json", "csv", "pdf"], description="Format (default json)"),
            OpenApiParameter("participant", str, description="Participant code (staff only; required for staff)"),
        ],
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="The statement."),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The statement as CSV."),
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The statement as PDF."),
        },
    )
    def list(self, request: Request) -> Any:
        from reference.models import Participant
        from settlement.api.statements import statement_response

        names = ("from", "to", "output", "participant")
        repeated = [name for name in names if len(request.query_params.getlist(name)) > 1]
        if repeated:
            return error_response(
                code="invalid",
                message="Give each parameter at most once.",
                http_status=400,
                detail={name: ["Give this parameter at most once."] for name in repeated},
            )
        params = {key: value for key, value in request.query_params.items() if value != ""}
        participant = selectors.participant_for_user(request.user)
        if participant is None:
            if not selectors.sees_everything(request.user):
                return error_response(code="permission_denied", message="No statement for this user.", http_status=403)
            code = params.get("participant", "")
            # PostgreSQL text cannot hold NUL: such a code names no participant (was a 500)
            participant = Participant.objects.filter(code=code).first() if "\x00" not in code else None
            if participant is None:
                return error_response(
                    code="invalid",
                    message="Name the participant.",
                    http_status=400,
                    detail={"participant": ["Unknown or missing participant code."]},
                )
        return statement_response(
            participant=participant, start=params.get("from"), end=params.get("to"), fmt=params.get("output", "json")
        )
