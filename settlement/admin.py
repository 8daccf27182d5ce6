from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from settlement.exceptions import DomainError
from settlement.models import (
    Asset,
    BankAccount,
    ChainTransfer,
    CustodyAccount,
    Instrument,
    Journal,
    LedgerAccount,
    LedgerLock,
    Notification,
    Participant,
    ParticipantUser,
    Posting,
    ReviewCase,
    SettlementHalt,
    SettlementInstruction,
    Trade,
    TransitionLog,
    WalletAddress,
)
from settlement.money import format_amount
from settlement.services.crypto import case_resolve, halt_lift
from settlement.services.instructions import instruction_cancel, instruction_retry, trade_reverse


def amount_column(field: str, precision: Callable[[Any], int], label: str) -> Callable[[Any, Any], str]:
    """An admin column showing ``field`` at its asset's precision instead of 18 places."""

    @admin.display(description=label, ordering=field)
    def show(model_admin: Any, obj: Any) -> str:
        return format_amount(getattr(obj, field), precision(obj))

    return show


def _asset_precision(obj: Any) -> int:
    return obj.asset.precision


class ReadOnlyAdminMixin:
    """Ledger and audit rows: visible, never added, edited or deleted from the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ActionOnlyAdminMixin:
    """Rows that change only through audited admin actions (which ask for a reason): no add, no
    delete, and change pages without save buttons, so nobody writes a no-op history record."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]


class WalletInline(admin.TabularInline):
    model = WalletAddress
    extra = 0


class BankAccountInline(admin.StackedInline):
    model = BankAccount
    extra = 0


class CustodyAccountInline(admin.TabularInline):
    model = CustodyAccount
    extra = 0


class ParticipantUserInline(admin.TabularInline):
    model = ParticipantUser
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Participant)
class ParticipantAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "lei", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["code", "name", "lei"]
    inlines = [ParticipantUserInline, WalletInline, BankAccountInline, CustodyAccountInline]


@admin.register(Asset)
class AssetAdmin(SimpleHistoryAdmin):
    list_display = ["code", "name", "kind", "precision", "settlement_cycle", "calendar", "chain", "is_active"]
    list_filter = ["kind", "settlement_cycle", "calendar", "is_active"]
    search_fields = ["code", "name"]


@admin.register(Instrument)
class InstrumentAdmin(SimpleHistoryAdmin):
    list_display = ["symbol", "base", "quote", "price_precision", "is_active"]
    list_filter = ["is_active", "base__kind"]
    search_fields = ["symbol"]


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "owner", "system_code", "asset", "kind", "balance_shown", "allow_negative"]
    list_filter = ["kind", "asset", "allow_negative"]
    search_fields = ["owner__code", "system_code", "asset__code"]
    list_select_related = ["owner", "asset"]
    ordering = ["owner__code", "system_code", "asset__code", "kind"]
    fields = ["owner", "system_code", "asset", "kind", "balance_shown", "allow_negative", "created_at"]
    readonly_fields = fields
    balance_shown = amount_column("balance", _asset_precision, "balance")


class PostingInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Posting
    fields = ["account", "asset", "amount_shown"]
    readonly_fields = fields
    extra = 0
    amount_shown = amount_column("amount", _asset_precision, "amount")


@admin.register(Journal)
class JournalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "kind", "reference", "memo", "actor", "created_at"]
    list_filter = ["kind"]
    search_fields = ["reference", "memo"]
    date_hierarchy = "created_at"
    inlines = [PostingInline]


@admin.register(LedgerLock)
class LedgerLockAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
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
    amount_shown = amount_column("amount", _asset_precision, "amount")


class InstructionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = SettlementInstruction
    fields = ["leg", "asset", "payer", "payee", "amount_shown", "settlement_date", "status"]
    readonly_fields = fields
    extra = 0
    show_change_link = True
    amount_shown = amount_column("amount", _asset_precision, "amount")


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = [
        "id",
        "source",
        "external_id",
        "instrument",
        "buyer",
        "seller",
        "quantity_shown",
        "price_shown",
        "notional_shown",
        "executed_at",
        "settlement_date",
    ]
    list_filter = ["instrument", "source", "settlement_date"]
    search_fields = ["external_id", "buyer__code", "seller__code"]
    date_hierarchy = "executed_at"
    list_select_related = ["instrument__base", "instrument__quote", "buyer", "seller"]
    fields = [
        "source",
        "external_id",
        "instrument",
        "buyer",
        "seller",
        "quantity_shown",
        "price_shown",
        "notional_shown",
        "executed_at",
        "settlement_date",
        "received_at",
        "submitted_by",
        "payload_hash",
    ]
    readonly_fields = fields
    inlines = [InstructionInline]
    quantity_shown = amount_column("quantity", lambda t: t.instrument.base.precision, "quantity")
    price_shown = amount_column("price", lambda t: t.instrument.price_precision, "price")
    notional_shown = amount_column("notional", lambda t: t.instrument.quote.precision, "notional")


def _transitions_table(entity_type: str, entity_id: int) -> str:
    rows = TransitionLog.objects.filter(entity_type=entity_type, entity_id=entity_id).order_by("id")
    body = format_html_join(
        "",
        "<tr><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        (
            (r.at.strftime("%Y-%m-%d %H:%M:%S"), r.from_status, r.to_status, r.actor_label, r.reason, r.hash[:12])
            for r in rows
        ),
    )
    return format_html(
        "<table><thead><tr><th>at</th><th>transition</th><th>actor</th><th>reason</th><th>hash</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        body or format_html("<tr><td colspan=5>no transitions yet</td></tr>"),
    )


def _reason_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    title: str,
    service: Any,
    action_name: str,
    kwarg: str = "instruction",
) -> HttpResponse | None:
    """Ask for a reason, then apply ``service`` to each selected row and report per row."""
    reason = (request.POST.get("reason") or "").strip()
    if "apply" in request.POST and reason:
        done, refused = 0, []
        for obj in queryset.order_by("pk"):
            try:
                service(**{kwarg: obj}, actor=request.user, reason=reason)
                done += 1
            except DomainError as exc:
                refused.append(f"#{obj.pk}: {exc.message}")
        if done:
            noun = modeladmin.model._meta.verbose_name_plural
            modeladmin.message_user(request, f"{title}: {done} {noun} done.", messages.SUCCESS)
        for line in refused:
            modeladmin.message_user(request, f"{title} refused for {line}", messages.ERROR)
        return None
    if "apply" in request.POST:
        modeladmin.message_user(request, "A reason is required.", messages.ERROR)
    return TemplateResponse(
        request,
        "admin/settlement/reason_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "objects": queryset,
            "action_name": action_name,
            "opts": modeladmin.model._meta,
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
        },
    )


@admin.register(SettlementInstruction)
class SettlementInstructionAdmin(ActionOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = [
        "id",
        "trade_link",
        "leg",
        "asset",
        "payer",
        "payee",
        "amount_shown",
        "settlement_date",
        "status",
        "attempt",
        "updated_at",
    ]
    list_filter = ["status", "leg", "asset", "settlement_date"]
    search_fields = ["=id", "trade__external_id", "payer__code", "payee__code"]
    date_hierarchy = "settlement_date"
    list_select_related = ["trade", "asset", "payer", "payee"]
    readonly_fields = [
        "trade",
        "leg",
        "asset",
        "payer",
        "payee",
        "amount_shown",
        "settlement_date",
        "status",
        "lock",
        "attempt",
        "failure_reason",
        "created_at",
        "updated_at",
        "reference",
        "netting_window",
        "netted_in",
        "transitions",
    ]
    fields = readonly_fields
    actions = ["retry_selected", "cancel_selected", "reverse_selected"]

    @admin.display(description="netted instructions")
    def netted_in(self, obj: SettlementInstruction) -> str:
        from netting.selectors import netted_instructions_for_leg

        links = [
            format_html('<a href="{}">{}</a>', reverse("admin:netting_nettedinstruction_change", args=[ni.pk]), ni)
            for ni in netted_instructions_for_leg(obj).select_related("asset")
        ]
        return format_html_join(", ", "{}", ((link,) for link in links)) or "-"

    amount_shown = amount_column("amount", _asset_precision, "amount")

    @admin.display(description="trade")
    def trade_link(self, obj: SettlementInstruction) -> str:
        url = reverse("admin:settlement_trade_change", args=[obj.trade_id])
        return format_html('<a href="{}">{}</a>', url, obj.trade.external_id)

    @admin.display(description="transition log")
    def transitions(self, obj: SettlementInstruction) -> str:
        return _transitions_table("instruction", obj.pk)

    @admin.action(description="Retry selected failed instructions (asks for a reason)")
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return _reason_action(
            self, request, queryset, title="Retry", service=instruction_retry, action_name="retry_selected"
        )

    @admin.action(description="Cancel selected instructions, voiding their locks (asks for a reason)")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return _reason_action(
            self, request, queryset, title="Cancel", service=instruction_cancel, action_name="cancel_selected"
        )

    @admin.action(description="Reverse the settled trades of the selected instructions (asks for a reason)")
    def reverse_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        # one reversal per trade (both legs, compensating journals), however many legs are selected
        first_legs = queryset.order_by("trade_id", "pk").distinct("trade_id")
        trades = SettlementInstruction.objects.filter(pk__in=[leg.pk for leg in first_legs])

        def reverse_trade(*, instruction: SettlementInstruction, actor: Any, reason: str) -> None:
            trade_reverse(trade=instruction.trade, actor=actor, reason=reason)

        return _reason_action(
            self,
            request,
            trades if "apply" in request.POST else queryset,
            title="Reverse",
            service=reverse_trade,
            action_name="reverse_selected",
        )


@admin.register(ChainTransfer)
class ChainTransferAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = [
        "id",
        "instruction",
        "chain",
        "status",
        "nonce",
        "tx_hash",
        "confirmations",
        "block_number",
        "broadcast_count",
        "fee_shown",
        "updated_at",
    ]
    list_filter = ["status", "chain"]
    search_fields = ["tx_hash", "from_address", "to_address", "instruction__trade__external_id"]
    list_select_related = ["instruction__asset"]
    readonly_fields = [
        "instruction",
        "attempt",
        "chain",
        "from_address",
        "to_address",
        "amount_shown",
        "nonce",
        "tx_hash",
        "status",
        "confirmations",
        "block_number",
        "broadcast_count",
        "unseen_checks",
        "fee_cap_shown",
        "fee_shown",
        "last_error",
        "created_at",
        "updated_at",
        "transitions",
    ]
    fields = readonly_fields
    amount_shown = amount_column("amount", lambda t: t.instruction.asset.precision, "amount")
    fee_shown = amount_column("fee", lambda t: t.instruction.asset.precision, "fee")
    fee_cap_shown = amount_column("fee_cap", lambda t: t.instruction.asset.precision, "fee cap")

    @admin.display(description="transition log")
    def transitions(self, obj: ChainTransfer) -> str:
        return _transitions_table("chaintransfer", obj.pk)


@admin.register(SettlementHalt)
class SettlementHaltAdmin(ActionOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = ["id", "asset", "is_open", "opened_at", "opened_by", "lifted_at", "lifted_by", "reason"]
    list_filter = ["asset", ("lifted_at", admin.EmptyFieldListFilter)]
    readonly_fields = ["asset", "reason", "opened_at", "opened_by", "lifted_at", "lifted_by", "lift_reason"]
    fields = readonly_fields
    actions = ["lift_selected"]

    @admin.display(boolean=True, description="open")
    def is_open(self, obj: SettlementHalt) -> bool:
        return obj.lifted_at is None

    @admin.action(description="Lift selected halts: the asset settles again (asks for a reason)")
    def lift_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return _reason_action(
            self, request, queryset, title="Lift halt", service=halt_lift, action_name="lift_selected", kwarg="halt"
        )


@admin.register(ReviewCase)
class ReviewCaseAdmin(ActionOnlyAdminMixin, SimpleHistoryAdmin):
    list_display = ["id", "kind", "status", "instruction", "asset", "opened_at", "reason", "resolved_by"]
    list_filter = ["status", "kind", "asset"]
    search_fields = ["reason", "instruction__trade__external_id"]
    readonly_fields = [
        "kind",
        "status",
        "instruction",
        "asset",
        "reason",
        "opened_at",
        "resolved_at",
        "resolved_by",
        "resolution",
    ]
    fields = readonly_fields
    actions = ["resolve_selected"]

    @admin.action(description="Resolve selected cases (asks for the resolution)")
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def resolve(*, case: ReviewCase, actor: Any, reason: str) -> None:
            case_resolve(case=case, actor=actor, resolution=reason)

        return _reason_action(
            self, request, queryset, title="Resolve", service=resolve, action_name="resolve_selected", kwarg="case"
        )


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
        "short_hash",
    ]
    list_filter = ["entity_type", "to_status"]
    search_fields = ["=entity_id", "actor_label", "reason"]
    date_hierarchy = "at"

    @admin.display(description="hash")
    def short_hash(self, obj: TransitionLog) -> str:
        return obj.hash[:12]
