"""Admin of operations: review cases, four-eyes approvals, alerts, notifications, daily reports
(and the four-eyes edits of reference data, ops.admin_changes)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from common.actors import request_actor
from common.admin_kit import ActionOnlyAdminMixin, HistoryAdmin, ReadOnlyAdminMixin, permission_check, reason_action
from common.exceptions import DomainError
from ledger.admin_kit import transitions_table
from ops.models import ApprovalRequest, DailyReport, Notification, OpsAlert, ReviewCase
from ops.services.cases import case_assign, case_resolve


@admin.register(ReviewCase)
class ReviewCaseAdmin(ActionOnlyAdminMixin, HistoryAdmin):
    """The manual-review queue: escalated instructions and investigations, oldest first."""

    list_display = ["id", "kind", "status", "age", "assignee", "instruction", "asset", "reason", "resolved_by"]
    list_filter = ["status", "kind", "asset", ("assignee", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["reason", "instruction__trade__external_id"]
    date_hierarchy = "opened_at"
    list_select_related = ["assignee", "asset", "instruction__asset", "resolved_by"]
    ordering = ["status", "opened_at"]
    readonly_fields = [
        "kind",
        "status",
        "instruction",
        "asset",
        "reason",
        "opened_at",
        "assignee",
        "resolved_at",
        "resolved_by",
        "resolution",
        "transitions",
    ]
    fields = readonly_fields
    actions = ["take_selected", "resolve_selected"]
    has_resolve_permission = permission_check("ops.resolve_reviewcase")

    @admin.display(description="age", ordering="opened_at")
    def age(self, obj: ReviewCase) -> str:
        from django.utils import timezone
        from django.utils.timesince import timesince

        return timesince(obj.opened_at, timezone.now()) if obj.status == "open" else "-"

    @admin.display(description="transition log")
    def transitions(self, obj: ReviewCase) -> str:
        return transitions_table("reviewcase", obj.pk)

    @admin.action(description="Take selected cases (assign them to me)", permissions=["resolve"])
    def take_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        done = 0
        for case in queryset.order_by("pk"):
            try:
                case_assign(case=case, actor=request_actor(request.user))
                done += 1
            except DomainError as exc:
                self.message_user(request, f"#{case.pk}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{done} cases are now yours.", messages.SUCCESS)
        return None

    @admin.action(description="Resolve selected cases (asks for the resolution)", permissions=["resolve"])
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def resolve(*, case: ReviewCase, actor: Any, reason: str) -> None:
            case_resolve(case=case, actor=actor, resolution=reason)

        return reason_action(
            self, request, queryset, title="Resolve", service=resolve, action_name="resolve_selected", kwarg="case"
        )


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    """Four-eyes requests: an approver other than the proposer approves (applied at once) or rejects."""

    list_display = ["id", "kind", "target_label", "status", "proposed_by", "proposed_at", "decided_by", "outcome"]
    list_filter = ["status", "kind"]
    search_fields = ["target_label", "reason", "proposed_by__username"]
    date_hierarchy = "proposed_at"
    list_select_related = ["proposed_by", "decided_by"]
    readonly_fields = [
        "kind",
        "target_label",
        "payload",
        "reason",
        "proposed_by",
        "proposed_at",
        "status",
        "decided_by",
        "decided_at",
        "decision_reason",
        "outcome",
        "transitions",
    ]
    fields = readonly_fields
    actions = ["approve_selected", "reject_selected"]
    has_approve_permission = permission_check("ops.approve_approvalrequest")

    @admin.display(description="transition log")
    def transitions(self, obj: ApprovalRequest) -> str:
        return transitions_table("approval", obj.pk)

    def _decide(self, request: HttpRequest, queryset: QuerySet, *, approve: bool) -> HttpResponse | None:
        from ops.services.approvals import approval_decide

        def decide(*, obj: ApprovalRequest, actor: Any, reason: str) -> None:
            decided = approval_decide(request=obj, actor=actor, approve=approve, reason=reason)
            if decided.status == "failed":
                self.message_user(request, f"#{decided.pk}: {decided.outcome}", messages.WARNING)

        name = "approve_selected" if approve else "reject_selected"
        title = "Approve" if approve else "Reject"
        return reason_action(self, request, queryset, title=title, service=decide, action_name=name, kwarg="obj")

    @admin.action(
        description="Approve selected requests: they are applied now (asks for a reason)", permissions=["approve"]
    )
    def approve_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._decide(request, queryset, approve=True)

    @admin.action(description="Reject selected requests (asks for a reason)", permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._decide(request, queryset, approve=False)


@admin.register(OpsAlert)
class OpsAlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Notifications for operations staff (also emailed to the addressed roles)."""

    list_display = ["id", "level", "title", "roles", "created_at", "emailed", "is_read", "open_link"]
    list_filter = ["level", "roles"]
    search_fields = ["title", "body"]
    date_hierarchy = "created_at"
    fields = ("level", "title", "body", "roles", "created_at", "emailed", "open_link")
    readonly_fields = fields
    actions = ["mark_read"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        from django.db.models import Exists, OuterRef

        user = request_actor(request.user)
        read = OpsAlert.read_by.through.objects.filter(opsalert_id=OuterRef("pk"), user_id=user.pk)
        return super().get_queryset(request).annotate(read=Exists(read))

    @admin.display(boolean=True, description="read")
    def is_read(self, obj: OpsAlert) -> bool:
        return bool(getattr(obj, "read", False))

    @admin.display(description="act on it")
    def open_link(self, obj: OpsAlert) -> str:
        return format_html('<a href="{}">open</a>', obj.link) if obj.link else "-"

    @admin.action(description="Mark selected as read (by me)")
    def mark_read(self, request: HttpRequest, queryset: QuerySet) -> None:
        for alert in queryset:
            alert.read_by.add(request.user)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "audience",
        "participant",
        "event",
        "message",
        "delivery_status",
        "delivery_attempts",
    ]
    list_filter = ["audience", "event", "delivery_status"]
    search_fields = ["message", "participant__code"]


@admin.register(DailyReport)
class DailyReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """End-of-day settlement reports (beat at 23:55 UTC); regenerate one, or today's, on demand."""

    list_display = ["day", "settled", "failed", "generated_at", "generated_by", "seconds"]
    date_hierarchy = "day"
    fields = ("day", "generated_at", "generated_by", "seconds", "report", "chart")
    readonly_fields = fields
    actions = ["regenerate_selected"]

    def get_urls(self) -> list[Any]:
        from django.urls import path

        view = self.admin_site.admin_view(self.generate_today)
        return [path("generate-today/", view, name="settlement_dailyreport_today"), *super().get_urls()]

    def generate_today(self, request: HttpRequest) -> HttpResponse:
        from django.utils import timezone

        from ops.daily_report import daily_report_build

        if not request.user.has_perm("ops.view_dailyreport"):
            raise PermissionDenied
        report = daily_report_build(day=timezone.now().date(), actor=request_actor(request.user))
        return HttpResponseRedirect(reverse("admin:ops_dailyreport_change", args=[report.pk]))

    @admin.display(description="settled")
    def settled(self, obj: DailyReport) -> int:
        return obj.figures.get("settled_count", 0)

    @admin.display(description="failed")
    def failed(self, obj: DailyReport) -> int:
        return obj.figures.get("failed_count", 0)

    @admin.display(description="chart")
    def chart(self, obj: DailyReport) -> str:
        from django.utils.safestring import mark_safe

        return mark_safe(obj.chart_svg)  # noqa: S308 - generated by common.charts from numbers

    @admin.display(description="figures")
    def report(self, obj: DailyReport) -> str:
        f = obj.figures

        def table(title: str, rows: list[dict[str, Any]]) -> str:
            if not rows:
                return format_html("<h3>{}</h3><p>none</p>", title)
            head = format_html_join("", "<th>{}</th>", ((key,) for key in rows[0]))
            body = format_html_join(
                "",
                "<tr>{}</tr>",
                ((format_html_join("", "<td>{}</td>", ((v,) for v in row.values())),) for row in rows),
            )
            return format_html("<h3>{}</h3><table><tr>{}</tr>{}</table>", title, head, body)

        breaks = f.get("breaks", {})
        return format_html(
            "<p>settled {} · failed {} ({} %) · breaks opened {}, closed {}, open now {}</p>{}{}{}{}",
            f.get("settled_count"), f.get("failed_count"), f.get("failure_rate_percent"),
            breaks.get("opened"), breaks.get("closed"), breaks.get("open"),
            table("Settled per rail and asset", f.get("settled", [])),
            table("Failures by reason", f.get("failures", [])),
            table("Netting efficiency", f.get("netting", [])),
            table("Fees earned and costs passed on", f.get("fees", [])),
        )  # fmt: skip

    @admin.action(description="Regenerate selected reports from the database")
    def regenerate_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        from ops.daily_report import daily_report_build

        for report in queryset:
            daily_report_build(day=report.day, actor=request_actor(request.user))
        self.message_user(request, f"{queryset.count()} reports regenerated.", messages.SUCCESS)


# Participants' accounts, assets and beat's schedule: saves there are four-eyes proposals.
from ops import admin_changes  # noqa: E402, F401
