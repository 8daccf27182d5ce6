from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from common.actors import request_actor
from common.admin_kit import (
    ActionOnlyAdminMixin,
    HistoryAdmin,
    ReadOnlyAdminMixin,
    amount_column,
    asset_precision,
    permission_check,
    proposal_service,
    reason_action,
)
from common.ports import instruction_escalate
from ledger.admin_kit import transitions_table
from settlement.models import (
    ApiToken,
    AuthFailure,
    ChainTransfer,
    FeeCharge,
    FeeRule,
    Scope,
    SettlementHalt,
    SettlementInstruction,
    Trade,
)
from settlement.services.instructions import instruction_cancel, instruction_retry


class InstructionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = SettlementInstruction
    fields = ("leg", "asset", "payer", "payee", "amount_shown", "settlement_date", "status")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    amount_shown = amount_column("amount", asset_precision, "amount")


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdminMixin, HistoryAdmin):
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


class FeeChargeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = FeeCharge
    extra = 0
    fields = (
        "attempt", "kind", "party", "participant", "rule", "cost_source", "value", "bps", "limited", "flat", "fee",
        "status", "journal",
    )  # fmt: skip
    readonly_fields = fields


@admin.register(SettlementInstruction)
class SettlementInstructionAdmin(ActionOnlyAdminMixin, HistoryAdmin):
    inlines = [FeeChargeInline]
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
        "transitions",
    ]
    fields = readonly_fields
    actions = ["retry_selected", "cancel_selected", "escalate_selected", "reverse_selected"]
    has_retry_permission = permission_check("settlement.retry_settlementinstruction")
    has_cancel_permission = permission_check("settlement.cancel_settlementinstruction")
    has_escalate_permission = permission_check("settlement.escalate_settlementinstruction")
    has_propose_permission = permission_check("ops.add_approvalrequest")

    amount_shown = amount_column("amount", asset_precision, "amount")

    @admin.display(description="trade")
    def trade_link(self, obj: SettlementInstruction) -> str:
        url = reverse("admin:settlement_trade_change", args=[obj.trade_id])
        return format_html('<a href="{}">{}</a>', url, obj.trade.external_id)

    @admin.display(description="transition log")
    def transitions(self, obj: SettlementInstruction) -> str:
        return transitions_table("instruction", obj.pk)

    @admin.action(description="Retry selected failed instructions (asks for a reason)", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return reason_action(
            self, request, queryset, title="Retry", service=instruction_retry, action_name="retry_selected"
        )

    @admin.action(
        description="Cancel the trades of the selected instructions (both legs, voiding locks; asks for a reason)",
        permissions=["cancel"],
    )
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        # one cancel per trade (both legs together, delivery versus payment), however many legs are selected
        first_legs = queryset.order_by("trade_id", "pk").distinct("trade_id")
        trades = SettlementInstruction.objects.filter(pk__in=[leg.pk for leg in first_legs])
        return reason_action(
            self,
            request,
            trades if "apply" in request.POST else queryset,
            title="Cancel trade",
            service=instruction_cancel,
            action_name="cancel_selected",
        )

    @admin.action(
        description="Escalate selected instructions to the review queue (asks for a reason)", permissions=["escalate"]
    )
    def escalate_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return reason_action(
            self, request, queryset, title="Escalate", service=instruction_escalate, action_name="escalate_selected"
        )

    @admin.action(
        description="Propose reversing the settled trades of the selected instructions (four-eyes)",
        permissions=["propose"],
    )
    def reverse_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        # one reversal per trade (both legs, compensating journals), however many legs are selected
        first_legs = queryset.order_by("trade_id", "pk").distinct("trade_id")
        trades = SettlementInstruction.objects.filter(pk__in=[leg.pk for leg in first_legs])
        return reason_action(
            self,
            request,
            trades if "apply" in request.POST else queryset,
            title="Propose reversal",
            service=proposal_service("reversal", lambda leg: leg.trade_id),
            action_name="reverse_selected",
            kwarg="obj",
        )


def instruction_display_add(name: str, display: Callable[[Any, SettlementInstruction], str], *, after: str) -> None:
    """A layer above settlement adds a read-only field ``name`` (shown by ``display``) to the
    instruction's change page, after the field ``after`` (netting: the leg's netted instructions)."""
    setattr(SettlementInstructionAdmin, name, display)
    fields = SettlementInstructionAdmin.readonly_fields  # also its ``fields``: the same list
    if name not in fields:
        fields.insert(fields.index(after) + 1, name)


@admin.register(ChainTransfer)
class ChainTransferAdmin(ReadOnlyAdminMixin, HistoryAdmin):
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
        return transitions_table("chaintransfer", obj.pk)


@admin.register(SettlementHalt)
class SettlementHaltAdmin(ActionOnlyAdminMixin, HistoryAdmin):
    list_display = ["id", "asset", "is_open", "opened_at", "opened_by", "lifted_at", "lifted_by", "reason"]
    list_filter = ["asset", ("lifted_at", admin.EmptyFieldListFilter)]
    readonly_fields = ["asset", "reason", "opened_at", "opened_by", "lifted_at", "lifted_by", "lift_reason"]
    fields = readonly_fields
    actions = ["lift_selected"]
    has_propose_permission = permission_check("ops.add_approvalrequest")

    @admin.display(boolean=True, description="open")
    def is_open(self, obj: SettlementHalt) -> bool:
        return obj.lifted_at is None

    @admin.action(
        description="Propose lifting selected halts: the asset settles again once approved (four-eyes)",
        permissions=["propose"],
    )
    def lift_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return reason_action(
            self,
            request,
            queryset,
            title="Propose lifting the halt",
            service=proposal_service("halt_lift", lambda halt: halt.pk),
            action_name="lift_selected",
            kwarg="obj",
        )


class ApiTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = ApiToken
        fields = ["user", "name", "scopes", "expires_at"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Issue (the key is shown once), rotate and revoke API tokens. Only a hash is stored."""

    form = ApiTokenForm
    list_display = ["name", "user", "prefix", "scopes", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["name", "prefix", "user__username"]
    date_hierarchy = "created_at"
    autocomplete_fields = ["user"]
    actions = ["revoke_selected", "rotate_selected"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        return [f.name for f in ApiToken._meta.fields]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked, never deleted: the record of who had access stays

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            return
        from settlement.services.tokens import token_issue

        issued = token_issue(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            actor=request_actor(request.user),
            expires_at=form.cleaned_data.get("expires_at"),
        )
        obj.pk = issued.token.pk
        self.message_user(request, f"Key for {issued.token} (shown once, copy it now): {issued.key}", messages.WARNING)

    @admin.action(description="Revoke selected tokens (asks for a reason)", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        from settlement.services.tokens import token_revoke

        def revoke(*, obj: ApiToken, actor: Any, reason: str) -> None:
            token_revoke(token=obj, actor=actor, reason=reason)

        return reason_action(
            self, request, queryset, title="Revoke", service=revoke, action_name="revoke_selected", kwarg="obj"
        )

    @admin.action(
        description="Rotate selected tokens: new keys, old ones stop now (asks for a reason)", permissions=["change"]
    )
    def rotate_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        from settlement.services.tokens import token_rotate

        def rotate(*, obj: ApiToken, actor: Any, reason: str) -> None:
            issued = token_rotate(token=obj, actor=actor, reason=reason)
            self.message_user(request, f"New key for {issued.token} (shown once): {issued.key}", messages.WARNING)

        return reason_action(
            self, request, queryset, title="Rotate", service=rotate, action_name="rotate_selected", kwarg="obj"
        )


@admin.register(AuthFailure)
class AuthFailureAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "channel", "who", "ip", "reason", "path"]
    list_filter = ["channel", "reason"]
    search_fields = ["who", "ip"]
    date_hierarchy = "at"


class FeeRuleForm(forms.ModelForm):
    """A schedule is never rewritten for time that has passed: a new rule starts now or later,
    and a rule that has started can only be closed, from now on (its 'valid to')."""

    class Meta:
        model = FeeRule
        fields = [
            "name", "tier", "asset", "asset_kind", "rail", "settlement_type", "bps", "minimum", "maximum", "flat",
            "valid_from", "valid_to",
        ]  # fmt: skip

    def clean(self) -> dict[str, Any]:
        from datetime import timedelta

        from django.utils import timezone

        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns
        now = timezone.now() - timedelta(minutes=1)  # the time it took to fill the form
        started = self.instance.pk is not None and self.instance.valid_from <= now
        if not started and data.get("valid_from") and data["valid_from"] < now:
            self.add_error("valid_from", "A fee rule cannot start in the past; start it now or later.")
        if started and data.get("valid_to") and data["valid_to"] < now and "valid_to" in self.changed_data:
            self.add_error("valid_to", "A rule in force can be closed from now on, not in the past.")
        return data


@admin.register(FeeRule)
class FeeRuleAdmin(HistoryAdmin):
    """Fee schedules. A change of price is a new rule from its start time (close the old one with
    its 'valid to', or let the newer rule win); the history keeps every version. Once a rule has
    started only its 'valid to' can change, and it cannot be deleted: what was in force stays
    as it was."""

    form = FeeRuleForm

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        from django.utils import timezone

        if obj is not None and obj.valid_from <= timezone.now():
            return [f.name for f in FeeRule._meta.fields if f.name not in ("id", "valid_to")]
        return []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        from django.utils import timezone

        if obj is not None and obj.valid_from <= timezone.now():
            return False
        return super().has_delete_permission(request, obj)

    list_display = ["name", "tier", "asset", "asset_kind", "rail", "settlement_type", "bps", "minimum", "maximum",
                    "flat", "valid_from", "valid_to"]  # fmt: skip
    list_filter = ["tier", "asset", "asset_kind", "rail", "settlement_type"]
    search_fields = ["name"]
    date_hierarchy = "valid_from"


@admin.register(FeeCharge)
class FeeChargeAdmin(ReadOnlyAdminMixin, HistoryAdmin):
    """Every fee and pass-through cost charged: on a gross instruction or a netted payment, with
    the rule or the bank booking / transaction it came from and the journal that posted it. A
    pass-through charge left pending is waiting for the participant's funds (see the alerts)."""

    list_display = ["id", "kind", "participant", "asset", "fee", "party", "status", "instruction", "netted",
                    "cost_source", "posted_at"]  # fmt: skip
    list_filter = ["kind", "status", "party", "asset"]
    search_fields = ["participant__code", "cost_source", "external_key"]
    date_hierarchy = "created_at"
    list_select_related = ["participant", "asset"]
    raw_id_fields = ["instruction", "netted", "journal", "rule"]


# The DRF token table is not used for authentication (ApiToken is): keep it out of the admin.
try:
    from rest_framework.authtoken.models import TokenProxy

    admin.site.unregister(TokenProxy)
except (ImportError, NotRegistered):
    pass


from settlement import (  # noqa: E402
    admin_batches,  # noqa: F401  (batches and chain transactions)
    admin_statements,  # noqa: F401  (the participant's statements)
)
