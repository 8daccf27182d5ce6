"""The settlement plan over the API (read-only): netting windows with their headline figures
(staff only: they describe the whole market) and net payments (a participant sees its own),
each net payment with its rail attempts, fees and transition history and the trade legs it
settles."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework.routers import DefaultRouter

from ledger.selectors import transitions_of
from netting.models import Direction, NettedInstruction, NettedStatus, NettingWindow, RailAttempt, RailMethod
from netting.selectors import net_payments_visible_to, windows_visible_to
from settlement.api.filters import IntegerFilter, StrictFilterSet, UtcIsoDateTimeFilter
from settlement.api.serializers import AmountField, FeeChargeSerializer, TransitionSerializer


class WindowSerializer(serializers.ModelSerializer):
    class Meta:
        model = NettingWindow
        fields = [
            "id", "asset_class", "status", "opened_at", "closes_at", "closed_at", "closed_by", "gross_legs",
            "net_payments", "summary",
        ]  # fmt: skip


class RailAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = RailAttempt
        fields = [
            "number", "method", "message_type", "message_id", "end_to_end_id", "status", "sends", "reason_code",
            "reason_text", "created_at", "accepted_at", "resolved_at",
        ]  # fmt: skip


class NetPaymentSerializer(serializers.ModelSerializer):
    participant = serializers.CharField(source="participant.code")
    asset = serializers.CharField(source="asset.code")
    amount = AmountField(field="amount", precision=lambda ni: ni.asset.precision)

    class Meta:
        model = NettedInstruction
        fields = [
            "id", "window", "participant", "asset", "settlement_date", "direction", "amount", "status", "method",
            "attempts", "failure_reason", "created_at", "updated_at",
        ]  # fmt: skip


class NetPaymentDetailSerializer(NetPaymentSerializer):
    rail_attempts = RailAttemptSerializer(many=True, read_only=True)
    fees = FeeChargeSerializer(source="fee_charges", many=True, read_only=True)
    legs = serializers.SerializerMethodField(help_text="Ids of the trade legs (instructions) this payment settles.")
    transitions = serializers.SerializerMethodField()

    class Meta(NetPaymentSerializer.Meta):
        fields = [*NetPaymentSerializer.Meta.fields, "rail_attempts", "fees", "legs", "transitions"]

    def get_legs(self, obj: NettedInstruction) -> list[int]:
        return list(obj.legs().order_by("pk").values_list("pk", flat=True))

    @extend_schema_field(TransitionSerializer(many=True))
    def get_transitions(self, obj: NettedInstruction) -> Any:
        return TransitionSerializer(transitions_of("nettedinstruction", obj.pk), many=True).data


class WindowFilter(StrictFilterSet):
    status = django_filters.CharFilter()
    asset_class = django_filters.CharFilter()
    closed_from = UtcIsoDateTimeFilter(field_name="closed_at", lookup_expr="gte")
    closed_to = UtcIsoDateTimeFilter(field_name="closed_at", lookup_expr="lt")

    class Meta:
        model = NettingWindow
        fields: list[str] = []


class NetPaymentFilter(StrictFilterSet):
    window = IntegerFilter(field_name="window_id")
    participant = django_filters.CharFilter(field_name="participant__code")
    asset = django_filters.CharFilter(field_name="asset__code")
    status = django_filters.MultipleChoiceFilter(choices=NettedStatus.choices)
    direction = django_filters.ChoiceFilter(choices=Direction.choices)
    method = django_filters.ChoiceFilter(choices=RailMethod.choices)
    settlement_date = django_filters.DateFilter()
    end_to_end_id = django_filters.CharFilter(field_name="rail_attempts__end_to_end_id", distinct=True)

    class Meta:
        model = NettedInstruction
        fields: list[str] = []


class NettingWindowViewSet(viewsets.ReadOnlyModelViewSet):
    """Netting windows and their plan's headline figures (gross legs and value against net
    payments, per asset). Staff only: a participant sees its own net payments instead."""

    serializer_class = WindowSerializer
    filterset_class = WindowFilter

    def get_queryset(self) -> QuerySet[NettingWindow]:
        return windows_visible_to(self.request.user).order_by("-id")


class NetPaymentViewSet(viewsets.ReadOnlyModelViewSet):
    """Net payments of the settlement plan (one per participant, asset and settlement date of a
    window): pay-ins into and pay-outs from the central settlement account. The detail carries
    the rail attempts (message ids, end-to-end ids, network outcome), fees, the trade legs it
    settles and its transition history."""

    filterset_class = NetPaymentFilter

    def get_queryset(self) -> QuerySet[NettedInstruction]:
        return net_payments_visible_to(self.request.user).order_by("-id")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return NetPaymentDetailSerializer if self.action == "retrieve" else NetPaymentSerializer


def netting_routes_register(router: DefaultRouter) -> None:
    """Netting's API routes; ``config.api_urls`` mounts them after settlement's on one router."""
    router.register("netting-windows", NettingWindowViewSet, basename="netting-window")
    router.register("net-payments", NetPaymentViewSet, basename="net-payment")
