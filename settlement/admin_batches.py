"""Admin pages of the batch engine: batches and their chain transactions (read-only; operations
act on the trades and legs, whose pages link here)."""

from __future__ import annotations

from django.contrib import admin

from common.admin_kit import HistoryAdmin, ReadOnlyAdminMixin
from ledger.admin_kit import transitions_table
from settlement.models import ChainTransaction, ChainTransfer, CryptoBatch


class ChainTransactionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ChainTransaction
    fields = ("tx_hash", "from_address", "nonce", "payouts", "status", "confirmations", "fee", "broadcast_count")
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(CryptoBatch)
class CryptoBatchAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    list_display = ["id", "chain", "status", "size", "settled", "failed", "created_at", "updated_at"]
    list_filter = ["status", "chain"]
    readonly_fields = ["chain", "status", "size", "settled", "failed", "created_at", "updated_at", "transitions"]
    fields = readonly_fields
    inlines = [ChainTransactionInline]

    @admin.display(description="transition log")
    def transitions(self, obj: CryptoBatch) -> str:
        return transitions_table("cryptobatch", obj.pk)


class PayoutInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ChainTransfer
    fk_name = "chain_tx"
    fields = ("output_index", "instruction", "to_address", "amount", "status")
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(ChainTransaction)
class ChainTransactionAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    list_display = [
        "id",
        "batch",
        "chain",
        "status",
        "from_address",
        "nonce",
        "payouts",
        "tx_hash",
        "fee",
        "updated_at",
    ]
    list_filter = ["status", "chain"]
    search_fields = ["tx_hash", "from_address"]
    readonly_fields = [
        "batch",
        "chain",
        "from_address",
        "nonce",
        "tx_hash",
        "payouts",
        "status",
        "confirmations",
        "block_number",
        "fee_cap",
        "fee",
        "broadcast_count",
        "unseen_checks",
        "resign_count",
        "last_error",
        "created_at",
        "updated_at",
        "transitions",
    ]
    fields = readonly_fields
    inlines = [PayoutInline]

    @admin.display(description="transition log")
    def transitions(self, obj: ChainTransaction) -> str:
        return transitions_table("chaintransaction", obj.pk)
