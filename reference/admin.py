"""Admin of the reference data: participants (with their users, wallets, bank and custody
accounts, and statements), instruments. Assets and the accounts' four-eyes edits: ops.admin_changes."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from common.exceptions import DomainError
from ops.admin_kit import (
    HistoryAdmin,
    ReadOnlyAdminMixin,
)
from reference.models import BankAccount, CustodyAccount, Instrument, Participant, ParticipantUser, WalletAddress


class WalletInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Shown, not edited: adds and changes are four-eyes proposals on the wallet's own page
    (``ops.admin_changes``); the signing state (nonce, chain state) is never edited."""

    model = WalletAddress
    fields = ("chain", "address", "label", "next_nonce")
    readonly_fields = fields
    extra = 0
    show_change_link = True


class BankAccountInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Shown, not edited: adds and changes are four-eyes proposals on the account's own page."""

    model = BankAccount
    fields = ("currency", "holder_name", "iban", "bic", "aba_routing", "account_number")
    readonly_fields = fields
    extra = 0
    show_change_link = True


class CustodyAccountInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Shown, not edited: adds and changes are four-eyes proposals on the account's own page."""

    model = CustodyAccount
    fields = ("custodian_bic", "account_id")
    readonly_fields = fields
    extra = 0
    show_change_link = True


class ParticipantUserInline(admin.TabularInline):
    model = ParticipantUser
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Participant)
class ParticipantAdmin(HistoryAdmin):
    list_display = ["code", "name", "lei", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["code", "name", "lei"]
    inlines = [ParticipantUserInline, WalletInline, BankAccountInline, CustodyAccountInline]
    readonly_fields = ["statements"]

    def get_urls(self) -> list[Any]:
        from django.urls import path

        view = self.admin_site.admin_view(self.statement_view)
        return [path("<int:pk>/statement/", view, name="settlement_participant_statement"), *super().get_urls()]

    def statement_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """?from=YYYY-MM-DD&to=YYYY-MM-DD&output=csv|pdf|json"""
        from settlement.api.statements import statement_response

        if not request.user.has_perm("reference.view_participant"):
            raise PermissionDenied
        participant = Participant.objects.get(pk=pk)
        try:
            return statement_response(
                participant=participant,
                start=request.GET.get("from"),
                end=request.GET.get("to"),
                fmt=request.GET.get("output", "pdf"),
            )
        except DomainError as exc:
            self.message_user(request, f"Statement: {exc.message} {exc.detail}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:reference_participant_change", args=[pk]))

    @admin.display(description="statements")
    def statements(self, obj: Participant) -> str:
        if obj.pk is None:
            return "-"
        from django.utils import timezone

        today = timezone.now().date()
        first = today.replace(day=1)
        url = reverse("admin:settlement_participant_statement", args=[obj.pk])
        query = f"from={first.isoformat()}&to={today.isoformat()}"
        return format_html(
            'This month: <a href="{}?{}&output=pdf">PDF</a> · <a href="{}?{}&output=csv">CSV</a> '
            "(other periods: change from/to in the address)",
            url, query, url, query,
        )  # fmt: skip


@admin.register(Instrument)
class InstrumentAdmin(HistoryAdmin):
    list_display = ["symbol", "base", "quote", "price_precision", "is_active"]
    list_filter = ["is_active", "base__kind"]
    search_fields = ["symbol"]
