from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from common.actors import request_actor
from common.admin_kit import ActionOnlyAdminMixin, HistoryAdmin, ReadOnlyAdminMixin, permission_check, reason_action
from common.exceptions import DomainError
from common.jsonload import json_loads
from reconciliation.importers import ImportRejected
from reconciliation.models import (
    Break,
    BreakProposal,
    ExternalRecord,
    ImportedFile,
    InternalRecord,
    ReconciliationRun,
    Source,
)
from reconciliation.resolution import break_confirm, break_escalate, break_investigate, break_propose, proposal_decide
from reconciliation.services import records_import


class ImportForm(forms.Form):
    source = forms.ChoiceField(choices=Source.choices)
    file = forms.FileField()
    mapping = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='CSV only: JSON {"field": "column header"}, e.g. {"external_id": "Txn", "amount": "Amt"}.',
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        limit = settings.CLEARHOUSE_IMPORT_MAX_BYTES
        if upload.size > limit:  # refused before it is read into memory
            raise forms.ValidationError(
                f"{upload.name} is {filesizeformat(upload.size)}; files up to {filesizeformat(limit)} are imported "
                "here (CLEARHOUSE_IMPORT_MAX_BYTES)."
            )
        return upload

    def clean_mapping(self) -> dict[str, str] | None:
        raw = self.cleaned_data["mapping"].strip()
        if not raw:
            return None
        try:
            value = json_loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"not JSON: {exc}") from exc
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise forms.ValidationError('a JSON object of column names, e.g. {"amount": "Amt"}')
        return value


class RecordInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ExternalRecord
    fields = ("line", "natural_key", "reference", "account", "asset_code", "amount", "value_date", "status")
    readonly_fields = fields
    extra = 0
    max_num = 0


@admin.register(ImportedFile)
class ImportedFileAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Files from outside, kept as received. 'Import a file' on the list page adds one."""

    list_display = ("id", "source", "name", "records", "repeated", "imported_at", "imported_by_label")
    list_filter = ("source",)
    search_fields = ("name", "sha256")
    readonly_fields = ("source", "name", "sha256", "records", "repeated", "imported_at", "imported_by_label", "content")
    fields = readonly_fields
    inlines = [RecordInline]
    change_list_template = "admin/reconciliation/importedfile/change_list.html"

    def get_urls(self) -> list[Any]:
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="reconciliation_importedfile_import"),
            *super().get_urls(),
        ]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("reconciliation.view_importedfile"):
            return HttpResponseRedirect(reverse("admin:index"))
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                outcome = records_import(
                    source=form.cleaned_data["source"],
                    name=upload.name,
                    content=upload.read(settings.CLEARHOUSE_IMPORT_MAX_BYTES),
                    actor=request_actor(request.user),
                    mapping=form.cleaned_data["mapping"],
                )
            except ImportRejected as exc:
                messages.error(request, f"{upload.name} was not imported: {exc.message}")
            else:
                if outcome.already_imported:
                    messages.warning(
                        request, f"{upload.name} was imported before (file #{outcome.file.pk}): nothing changed."
                    )
                else:
                    messages.success(
                        request, f"{upload.name}: {outcome.created} new records, {outcome.repeated} already known."
                    )
                    if outcome.charges:
                        messages.info(request, f"Bank charges passed on to participants: {outcome.charges}.")
                return HttpResponseRedirect(reverse("admin:reconciliation_importedfile_change", args=[outcome.file.pk]))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": "Import an external file",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/reconciliation/import_form.html", context)


@admin.register(ExternalRecord)
class ExternalRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "source",
        "natural_key",
        "reference",
        "account",
        "asset_code",
        "amount",
        "value_date",
        "status",
    )
    list_filter = ("source", "asset_code", "status")
    search_fields = ("natural_key", "reference", "account")
    readonly_fields = (
        "source",
        "natural_key",
        "file",
        "line",
        "reference",
        "account",
        "counterparty",
        "asset_code",
        "amount",
        "value_date",
        "status",
        "reason_code",
        "detail",
    )
    fields = readonly_fields


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Runs (hourly by beat; the schedule is editable under Periodic tasks). The list shows a
    chart of matched vs breaks over the last runs; each run downloads its breaks as CSV."""

    list_display = ("id", "started_at", "finished_at", "started_by", "matched", "breaks", "csv_link")
    readonly_fields = ("started_at", "finished_at", "started_by", "totals", "csv_link")
    fields = readonly_fields
    change_list_template = "admin/reconciliation/reconciliationrun/change_list.html"

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/breaks.csv",
                self.admin_site.admin_view(self.csv_view),
                name="reconciliation_reconciliationrun_csv",
            ),
            *super().get_urls(),
        ]

    def csv_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        from reconciliation.reports import run_breaks_csv

        run = ReconciliationRun.objects.get(pk=pk)
        response = HttpResponse(run_breaks_csv(run), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="reconciliation-run-{pk}-breaks.csv"'
        return response

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        from django.utils.safestring import mark_safe

        from reconciliation.reports import runs_chart_svg

        runs = reversed(list(ReconciliationRun.objects.order_by("-pk")[:48]))
        chart = mark_safe(runs_chart_svg(runs))  # noqa: S308 - built from numbers and escaped ids only
        return super().changelist_view(request, {**(extra_context or {}), "runs_chart": chart})

    @admin.display(description="breaks CSV")
    def csv_link(self, obj: ReconciliationRun) -> str:
        url = reverse("admin:reconciliation_reconciliationrun_csv", args=[obj.pk])
        return format_html('<a href="{}">download</a>', url)

    @admin.display(description="matched")
    def matched(self, obj: ReconciliationRun) -> int:
        return obj.totals.get("matched", 0)

    @admin.display(description="breaks by kind")
    def breaks(self, obj: ReconciliationRun) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(obj.totals.get("breaks", {}).items())) or "none"


def _show(amount: Decimal) -> str:
    """An amount without the storage's 18 trailing zeros (at least two decimals)."""
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents}" if cents == amount else f"{amount.normalize():f}"


class ProposalInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = BreakProposal
    fk_name = "brk"
    fields = (
        "action",
        "amount",
        "debit_account",
        "credit_account",
        "reason",
        "proposed_by",
        "approved",
        "decided_by",
        "decision_reason",
        "journal",
    )
    readonly_fields = fields
    extra = 0


@admin.register(Break)
class BreakAdmin(ActionOnlyAdminMixin, HistoryAdmin):
    """The reconciliation queue: open breaks by severity and age. Actions need a reason; journals
    and write-offs are proposed (Break proposals → Add) and approved by someone else."""

    list_display = (
        "id",
        "kind",
        "severity",
        "status",
        "reference",
        "account",
        "asset_code",
        "expected",
        "found",
        "difference",
        "first_run",
        "last_run",
    )
    list_filter = ("status", "kind", "severity", "asset_code")
    search_fields = ("reference", "account")
    ordering = ("status", "-severity", "first_run")
    readonly_fields = (
        "dedupe_key",
        "kind",
        "severity",
        "status",
        "resolution",
        "internal_side",
        "external_side",
        "first_run",
        "last_run",
        "transitions",
    )
    fields = readonly_fields
    inlines = [ProposalInline]
    actions = ["investigate_selected", "confirm_selected", "escalate_selected"]
    has_work_permission = permission_check("reconciliation.work_break")

    @admin.display(description="internal record (what we expect)")
    def internal_side(self, obj: Break) -> str:
        i = obj.internal
        if i is None:
            return "none: nothing of ours carries this reference"
        return f"{i.natural_key}: {_show(i.amount)} {i.asset_code} on {i.account}, value {i.value_date} ({i.state})"

    @admin.display(description="external records (what the outside shows)")
    def external_side(self, obj: Break) -> str:
        rows = ExternalRecord.objects.filter(pk__in=obj.external_ids or [])
        return (
            "; ".join(
                f"#{r.pk} {r.source} {r.natural_key}: {_show(r.amount)} {r.asset_code} on {r.account}, "
                f"value {r.value_date}"
                for r in rows
            )
            or "none: no confirmation found"
        )

    @admin.display(description="transition log")
    def transitions(self, obj: Break) -> str:
        from ledger.admin_kit import transitions_table

        return transitions_table("break", obj.pk)

    @admin.action(description="Investigate selected breaks (asks for a reason)", permissions=["work"])
    def investigate_selected(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        return reason_action(
            self,
            request,
            queryset,
            title="Investigate",
            service=break_investigate,
            action_name="investigate_selected",
            kwarg="brk",
        )

    @admin.action(description="Confirm selected breaks as matched (asks for a reason)", permissions=["work"])
    def confirm_selected(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        return reason_action(
            self, request, queryset, title="Confirm", service=break_confirm, action_name="confirm_selected", kwarg="brk"
        )

    @admin.action(description="Escalate selected breaks (asks for a reason)", permissions=["work"])
    def escalate_selected(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        return reason_action(
            self,
            request,
            queryset,
            title="Escalate",
            service=break_escalate,
            action_name="escalate_selected",
            kwarg="brk",
        )


@admin.register(BreakProposal)
class BreakProposalAdmin(HistoryAdmin):
    """Adjusting journals and write-offs: proposed here, approved or rejected by another person."""

    list_display = ("id", "brk", "action", "amount", "proposed_by", "approved", "decided_by", "journal")
    list_filter = ("action", "approved")
    fields = ("brk", "action", "debit_account", "credit_account", "amount", "reason")
    raw_id_fields = ("brk", "debit_account", "credit_account")
    actions = ["approve_selected", "reject_selected"]
    has_approve_permission = permission_check("ops.approve_approvalrequest")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: BreakProposal, form: Any, change: bool) -> None:
        try:
            created = break_propose(
                brk=obj.brk,
                actor=request_actor(request.user),
                action=obj.action,
                debit_account=obj.debit_account,
                credit_account=obj.credit_account,
                amount=obj.amount,
                reason=obj.reason,
            )
        except DomainError as exc:
            messages.error(request, f"Not proposed: {exc.message}")
            return
        obj.pk = created.pk

    @admin.action(
        description="Approve selected proposals: posts the journal (asks for a reason)", permissions=["approve"]
    )
    def approve_selected(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        def approve(*, proposal: BreakProposal, actor: Any, reason: str) -> None:
            proposal_decide(proposal=proposal, actor=actor, approve=True, reason=reason)

        return reason_action(
            self, request, queryset, title="Approve", service=approve, action_name="approve_selected", kwarg="proposal"
        )

    @admin.action(description="Reject selected proposals (asks for a reason)", permissions=["approve"])
    def reject_selected(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        def reject(*, proposal: BreakProposal, actor: Any, reason: str) -> None:
            proposal_decide(proposal=proposal, actor=actor, approve=False, reason=reason)

        return reason_action(
            self, request, queryset, title="Reject", service=reject, action_name="reject_selected", kwarg="proposal"
        )


@admin.register(InternalRecord)
class InternalRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("natural_key", "rail", "reference", "account", "asset_code", "amount", "value_date", "state")
    list_filter = ("rail", "state", "asset_code")
    search_fields = ("reference", "natural_key")
