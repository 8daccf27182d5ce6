from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from common.actors import request_actor
from common.choices import InstructionStatus, Leg
from ledger.models import LedgerAccount
from settlement import selectors
from settlement.api.fee_preview import fee_preview_payload, fee_preview_viewer, not_a_party_refusal
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
from settlement.api.statement_request import statement_params, statement_participant
from settlement.api.trade_submission import (
    batch_payload,
    ingest_status,
    submission_inputs,
    submission_read,
    trade_reporter_refusal,
)
from settlement.fee_preview import fee_preview
from settlement.models import SettlementInstruction, Trade
from settlement.services.trades import trades_ingest


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
        submission = submission_read(request.data)
        if isinstance(submission, Response):
            return submission
        refused = trade_reporter_refusal(request)
        if refused is not None:
            return refused
        inputs = submission_inputs(submission, source=request.user.get_username())
        if isinstance(inputs, Response):
            return inputs
        result = trades_ingest(items=inputs, actor=request_actor(request.user))
        if submission.single:
            trade = self.get_queryset().get(pk=result.trades[0].pk)
            data = dict(TradeSerializer(trade).data)
            data["result"] = "created" if result.created[0] else "existing"
            return Response(data, status=ingest_status(result))
        return Response(batch_payload(submission, result), status=ingest_status(result))


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
        viewer = fee_preview_viewer(request)
        if isinstance(viewer, Response):
            return viewer
        serializer = FeePreviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        refused = not_a_party_refusal(viewer, data)
        if refused is not None:
            return refused
        preview = fee_preview(
            buyer=data["buyer"],
            seller=data["seller"],
            instrument=data["instrument"],
            quantity=data["quantity"],
            price=data["price"],
            viewer=viewer,
        )
        return Response(fee_preview_payload(preview))


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
        from settlement.api.statements import statement_response

        params = statement_params(request)
        if isinstance(params, Response):
            return params
        participant = statement_participant(request, params)
        if isinstance(participant, Response):
            return participant
        return statement_response(
            participant=participant, start=params.get("from"), end=params.get("to"), fmt=params.get("output", "json")
        )
