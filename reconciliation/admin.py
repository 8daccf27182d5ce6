from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from reconciliation.importers import ImportRejected, external_import
from reconciliation.models import Break, ExternalRecord, ImportedFile, InternalRecord, ReconciliationRun, Source
from settlement.admin import ReadOnlyAdminMixin


class ImportForm(forms.Form):
    source = forms.ChoiceField(choices=Source.choices)
    file = forms.FileField()
    mapping = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='CSV only: JSON {"field": "column header"}, e.g. {"external_id": "Txn", "amount": "Amt"}.',
    )

    def clean_mapping(self) -> dict[str, str] | None:
        raw = self.cleaned_data["mapping"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
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
                outcome = external_import(
                    source=form.cleaned_data["source"],
                    name=upload.name,
                    content=upload.read(),
                    actor=request.user,
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
    list_display = ("id", "started_at", "finished_at", "started_by", "matched", "breaks")
    readonly_fields = ("started_at", "finished_at", "started_by", "totals")
    fields = readonly_fields

    @admin.display(description="matched")
    def matched(self, obj: ReconciliationRun) -> int:
        return obj.totals.get("matched", 0)

    @admin.display(description="breaks by kind")
    def breaks(self, obj: ReconciliationRun) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(obj.totals.get("breaks", {}).items())) or "none"


@admin.register(Break)
class BreakAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Breaks found by the runs (the resolution workflow comes with the rest of reconciliation)."""

    list_display = (
        "id",
        "kind",
        "severity",
        "reference",
        "account",
        "asset_code",
        "expected",
        "found",
        "difference",
        "first_run",
        "last_run",
    )
    list_filter = ("kind", "severity", "asset_code")
    search_fields = ("reference", "account")
    readonly_fields = (
        "dedupe_key",
        "kind",
        "severity",
        "internal",
        "reference",
        "account",
        "asset_code",
        "expected",
        "found",
        "difference",
        "external_ids",
        "first_run",
        "last_run",
    )
    fields = readonly_fields


@admin.register(InternalRecord)
class InternalRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("natural_key", "rail", "reference", "account", "asset_code", "amount", "value_date", "state")
    list_filter = ("rail", "state", "asset_code")
    search_fields = ("reference", "natural_key")
