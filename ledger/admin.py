"""Admin of the ledger: accounts, journals with their postings, locks, the transition log and its
batches, all read-only."""

from __future__ import annotations

from django.contrib import admin

from common.admin_kit import HistoryAdmin, ReadOnlyAdminMixin, amount_column, asset_precision
from ledger.models import AuditBatch, Journal, LedgerAccount, LedgerLock, Posting, TransitionLog


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "owner", "system_code", "asset", "kind", "balance_shown", "allow_negative"]
    list_filter = ["kind", "asset", "allow_negative"]
    search_fields = ["owner__code", "system_code", "asset__code"]
    list_select_related = ["owner", "asset"]
    ordering = ["owner__code", "system_code", "asset__code", "kind"]
    fields = ("owner", "system_code", "asset", "kind", "balance_shown", "allow_negative", "created_at")
    readonly_fields = fields
    balance_shown = amount_column("balance", asset_precision, "balance")


class PostingInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Posting
    fields = ("account", "asset", "amount_shown")
    readonly_fields = fields
    extra = 0
    amount_shown = amount_column("amount", asset_precision, "amount")


@admin.register(Journal)
class JournalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "kind", "reference", "memo", "actor", "created_at"]
    list_filter = ["kind"]
    search_fields = ["reference", "memo"]
    date_hierarchy = "created_at"
    inlines = [PostingInline]


@admin.register(LedgerLock)
class LedgerLockAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    list_display = ["id", "reference", "asset", "amount_shown", "status", "expires_at", "resolved_at"]
    list_filter = ["status", "asset"]
    search_fields = ["reference"]
    date_hierarchy = "created_at"
    fields = [
        "reference",
        "asset",
        "available_account",
        "locked_account",
        "amount_shown",
        "status",
        "expires_at",
        "created_at",
        "resolved_at",
    ]
    readonly_fields = fields
    amount_shown = amount_column("amount", asset_precision, "amount")


@admin.register(TransitionLog)
class TransitionLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "entity_type",
        "entity_id",
        "from_status",
        "to_status",
        "actor_label",
        "reason",
        "at",
        "batch_id",
        "leaf_index",
        "short_hash",
    ]
    list_filter = ["entity_type", "to_status"]
    search_fields = ["=entity_id", "actor_label", "reason"]
    date_hierarchy = "at"

    @admin.display(description="hash")
    def short_hash(self, obj: TransitionLog) -> str:
        return obj.hash[:12]


@admin.register(AuditBatch)
class AuditBatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["seq", "id", "entries", "length", "at", "key_id", "short_root", "short_hash"]
    date_hierarchy = "at"

    @admin.display(description="root")
    def short_root(self, obj: AuditBatch) -> str:
        return obj.root[:12]

    @admin.display(description="hash")
    def short_hash(self, obj: AuditBatch) -> str:
        return obj.hash[:12]
