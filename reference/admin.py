"""Admin of the reference data: participants (with their users, wallets, bank and custody
accounts), instruments. A participant's statements: settlement.admin_statements. Assets and the
accounts' four-eyes edits: ops.admin_changes."""

from __future__ import annotations

from django.contrib import admin

from common.admin_kit import HistoryAdmin, ReadOnlyAdminMixin
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


@admin.register(Instrument)
class InstrumentAdmin(HistoryAdmin):
    list_display = ["symbol", "base", "quote", "price_precision", "is_active"]
    list_filter = ["is_active", "base__kind"]
    search_fields = ["symbol"]
