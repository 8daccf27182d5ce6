from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from common.admin_kit import (
    ActionOnlyAdminMixin,
    HistoryAdmin,
    ReadOnlyAdminMixin,
    permission_check,
    proposal_service,
    reason_action,
)
from ledger.admin_kit import transitions_table
from netting.models import (
    NetObligation,
    NettedInstruction,
    NettingWindow,
    RailAttempt,
    RailMethod,
    RailReport,
)
from netting.pipeline import netted_retry
from netting.reports import rail_report_record_retry
from netting.selectors import netted_instructions_for_leg
from settlement.admin import FeeChargeInline, instruction_display_add
from settlement.models import SettlementInstruction


class ObligationInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = NetObligation
    fields = ("participant", "asset", "settlement_date", "pays", "receives", "net", "legs", "held")
    readonly_fields = fields
    extra = 0
    show_change_link = False


@admin.register(NettingWindow)
class NettingWindowAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    """Windows are opened and closed by Celery beat only; a closed window is a record."""

    list_display = ("id", "asset_class", "status", "opened_at", "closes_at", "closed_at", "gross_legs", "net_payments")
    list_filter = ("asset_class", "status")
    date_hierarchy = "opened_at"
    readonly_fields = (
        "asset_class",
        "status",
        "opened_at",
        "closes_at",
        "closed_at",
        "closed_by",
        "gross_legs",
        "net_payments",
        "summary",
    )
    inlines = [ObligationInline]


@admin.register(NetObligation)
class NetObligationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("window", "participant", "asset", "settlement_date", "pays", "receives", "net", "held")
    list_filter = ("held", "asset", "window__asset_class")
    search_fields = ("participant__code",)
    list_select_related = ("window", "participant", "asset")


class RailAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = RailAttempt
    fields = (
        "number",
        "method",
        "message_type",
        "message_id",
        "status",
        "sends",
        "reason_code",
        "reason_text",
        "created_at",
        "accepted_at",
        "resolved_at",
    )
    readonly_fields = fields
    extra = 0
    show_change_link = True


class NettedFeeInline(FeeChargeInline):
    """The netted payment's fee (see settlement.services.fees)."""

    fk_name = "netted"


@admin.register(NettedInstruction)
class NettedInstructionAdmin(ActionOnlyAdminMixin, HistoryAdmin):
    """The settlement plan's payments. Ops propose releasing held ones (four-eyes) and retry
    those in review; every attempt (method, message, answer) is listed below the payment."""

    list_display = (
        "id",
        "window",
        "participant",
        "direction",
        "asset",
        "amount",
        "settlement_date",
        "status",
        "method",
        "attempts",
        "failing_since",
    )
    list_filter = ("status", "direction", "method", "asset", "settlement_date")
    search_fields = ("=id", "participant__code")
    list_select_related = ("window", "participant", "asset")
    readonly_fields = (
        "window",
        "obligation",
        "participant",
        "asset",
        "settlement_date",
        "direction",
        "amount",
        "status",
        "method",
        "lock",
        "attempts",
        "next_attempt_at",
        "failing_since",
        "failure_reason",
        "created_at",
        "updated_at",
        "legs_link",
        "transitions",
    )
    fields = readonly_fields
    inlines = [RailAttemptInline, NettedFeeInline]
    actions = ["release_selected", "retry_selected", "override_method_selected"]
    has_release_permission = permission_check("netting.release_nettedinstruction")
    has_retry_permission = permission_check("netting.retry_nettedinstruction")
    has_propose_permission = permission_check("ops.add_approvalrequest")

    @admin.display(description="legs")
    def legs_link(self, obj: NettedInstruction) -> str:
        ids = ",".join(str(pk) for pk in obj.legs().values_list("pk", flat=True)[:500])
        url = reverse("admin:settlement_settlementinstruction_changelist")
        return format_html('<a href="{}?id__in={}">{} legs</a>', url, ids, obj.legs().count())

    @admin.display(description="transition log")
    def transitions(self, obj: NettedInstruction) -> str:
        return transitions_table("nettedinstruction", obj.pk)

    @admin.action(
        description="Propose releasing selected held payments past their net debit cap (four-eyes)",
        permissions=["release"],
    )
    def release_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return reason_action(
            self,
            request,
            queryset,
            title="Propose a release",
            service=proposal_service("netted_release", lambda ni: ni.pk),
            action_name="release_selected",
            kwarg="obj",
        )

    @admin.action(description="Retry selected payments in review (asks for a reason)", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return reason_action(
            self, request, queryset, title="Retry", service=netted_retry, action_name="retry_selected", kwarg="ni"
        )

    @admin.action(
        description="Propose retrying selected payments in review by another rail method (four-eyes)",
        permissions=["propose"],
    )
    def override_method_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        methods = [(m.value, m.label) for m in RailMethod if m != RailMethod.LEDGER]
        return reason_action(
            self,
            request,
            queryset,
            title="Propose a method override",
            service=proposal_service("method_override", lambda ni: ni.pk),
            action_name="override_method_selected",
            kwarg="obj",
            choice=("method", "Rail method", methods),
        )


@admin.register(RailAttempt)
class RailAttemptAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    list_display = (
        "message_id",
        "instruction",
        "method",
        "message_type",
        "status",
        "sends",
        "reason_code",
        "created_at",
    )
    list_filter = ("method", "status", "reason_code")
    search_fields = ("message_id", "end_to_end_id")
    readonly_fields = (
        "instruction",
        "number",
        "method",
        "message_type",
        "message_id",
        "end_to_end_id",
        "status",
        "sends",
        "reason_code",
        "reason_text",
        "created_at",
        "accepted_at",
        "resolved_at",
        "payload",
        "transitions",
    )
    fields = readonly_fields

    @admin.display(description="transition log")
    def transitions(self, obj: RailAttempt) -> str:
        return transitions_table("railattempt", obj.pk)


class ImportFailedFilter(admin.SimpleListFilter):
    """Reports reconciliation could not import: they wait for people (see their record error)."""

    title = "import failed"
    parameter_name = "import_failed"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(record_error="")
        if self.value() == "no":
            return queryset.filter(record_error="")
        return queryset


@admin.register(RailReport)
class RailReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Reports received from the networks, raw, with what applying them did."""

    list_display = (
        "network",
        "epoch",
        "sequence",
        "kind",
        "received_at",
        "applied",
        "outcome",
        "recorded",
        "import_failed",
    )
    list_filter = ("network", "kind", "applied", "recorded", ImportFailedFilter)
    readonly_fields = (
        "network",
        "epoch",
        "sequence",
        "kind",
        "received_at",
        "applied",
        "outcome",
        "recorded",
        "record_error",
        "content",
    )
    fields = readonly_fields
    actions = ["record_retry_selected"]
    has_record_retry_permission = permission_check("reconciliation.work_break")

    @admin.action(description="Import selected failed reports again (asks for a reason)", permissions=["record_retry"])
    def record_retry_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return reason_action(
            self,
            request,
            queryset,
            title="Import again",
            service=rail_report_record_retry,
            action_name="record_retry_selected",
            kwarg="report",
        )

    @admin.display(boolean=True, description="import failed")
    def import_failed(self, obj: RailReport) -> bool:
        return bool(obj.record_error)


@admin.display(description="netted instructions")
def netted_in(model_admin: Any, obj: SettlementInstruction) -> str:
    """The leg's netted instructions (payer's and payee's side), linked, on the instruction's page."""
    links = [
        format_html('<a href="{}">{}</a>', reverse("admin:netting_nettedinstruction_change", args=[ni.pk]), ni)
        for ni in netted_instructions_for_leg(obj).select_related("asset")
    ]
    return format_html_join(", ", "{}", ((link,) for link in links)) or "-"


instruction_display_add("netted_in", netted_in, after="netting_window")
