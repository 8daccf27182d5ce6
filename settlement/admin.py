from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin

from common.exceptions import DomainError
from common.money import format_amount
from ledger.models import Journal, LedgerAccount, LedgerLock, Posting, TransitionLog
from ops.models import ApprovalRequest, DailyReport, Notification, OpsAlert, ReviewCase
from ops.services.cases import case_assign, case_resolve, instruction_escalate
from reference.models import BankAccount, CustodyAccount, Instrument, Participant, ParticipantUser, WalletAddress
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
from settlement.selectors import transitions_of
from settlement.services.instructions import instruction_cancel, instruction_retry


def amount_column(field: str, precision: Callable[[Any], int], label: str) -> Callable[[Any, Any], str]:
    """An admin column showing ``field`` at its asset's precision instead of 18 places."""

    @admin.display(description=label, ordering=field)
    def show(model_admin: Any, obj: Any) -> str:
        return format_amount(getattr(obj, field), precision(obj))

    return show


def _asset_precision(obj: Any) -> int:
    return obj.asset.precision


class HistoryAdmin(SimpleHistoryAdmin):
    """simple-history's admin with history that can be read, never written: its "revert to
    this version" page saves the old version on any POST by someone who may merely *view*
    history (the revert-disabled setting only hides the button), so POSTs are refused here."""

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> Any:
        if request.method != "GET":
            raise PermissionDenied("history is read-only")
        return super().history_form_view(request, object_id, version_id, extra_context)


def permission_check(codename: str) -> Any:
    """A ``has_<name>_permission`` method for admin actions declared with ``permissions=[name]``:
    the action is offered (and accepted) only to users holding ``codename``."""

    def check(self: Any, request: HttpRequest) -> bool:
        return request.user.has_perm(codename)

    return check


def _propose(kind: str, target: Any) -> Any:
    """A service for _reason_action: propose a four-eyes request on ``target``."""
    from ops.services.approvals import approval_propose

    def propose(*, actor: Any, reason: str, **kwargs: Any) -> None:
        obj = kwargs.pop("obj")
        approval_propose(kind=kind, target_id=target(obj), actor=actor, reason=reason, payload=kwargs)

    return propose


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


class WalletInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Shown, not edited: adds and changes are four-eyes proposals on the wallet's own page
    (``ops.admin_changes``); the signing state (nonce, chain state) is never edited."""

    model = WalletAddress
    fields = ["chain", "address", "label", "next_nonce"]
    readonly_fields = fields
    extra = 0
    show_change_link = True


class BankAccountInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Shown, not edited: adds and changes are four-eyes proposals on the account's own page."""

    model = BankAccount
    fields = ["currency", "holder_name", "iban", "bic", "aba_routing", "account_number"]
    readonly_fields = fields
    extra = 0
    show_change_link = True


class CustodyAccountInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Shown, not edited: adds and changes are four-eyes proposals on the account's own page."""

    model = CustodyAccount
    fields = ["custodian_bic", "account_id"]
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
    amount_shown = amount_column("amount", _asset_precision, "amount")


class InstructionInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = SettlementInstruction
    fields = ["leg", "asset", "payer", "payee", "amount_shown", "settlement_date", "status"]
    readonly_fields = fields
    extra = 0
    show_change_link = True
    amount_shown = amount_column("amount", _asset_precision, "amount")


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


def _transitions_table(entity_type: str, entity_id: int) -> str:
    rows = transitions_of(entity_type, entity_id)
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
    choice: tuple[str, str, list[tuple[str, str]]] | None = None,
) -> HttpResponse | None:
    """Ask for a reason (and, with ``choice`` = (name, label, options), one option passed to
    the service as ``name``), then apply ``service`` to each selected row and report per row."""
    reason = (request.POST.get("reason") or "").strip()
    extra = {}
    if choice is not None:
        value = request.POST.get(choice[0], "")
        if value in {key for key, _ in choice[2]}:
            extra[choice[0]] = value
    if "apply" in request.POST and reason and (choice is None or extra):
        done, refused = 0, []
        for obj in queryset.order_by("pk"):
            try:
                service(**{kwarg: obj}, actor=request.user, reason=reason, **extra)
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
            "choice": choice,
        },
    )


class FeeChargeInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = FeeCharge
    extra = 0
    fields = [
        "attempt", "kind", "party", "participant", "rule", "cost_source", "value", "bps", "limited", "flat", "fee",
        "status", "journal",
    ]  # fmt: skip
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
        "netted_in",
        "transitions",
    ]
    fields = readonly_fields
    actions = ["retry_selected", "cancel_selected", "escalate_selected", "reverse_selected"]
    has_retry_permission = permission_check("settlement.retry_settlementinstruction")
    has_cancel_permission = permission_check("settlement.cancel_settlementinstruction")
    has_escalate_permission = permission_check("settlement.escalate_settlementinstruction")
    has_propose_permission = permission_check("ops.add_approvalrequest")

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

    @admin.action(description="Retry selected failed instructions (asks for a reason)", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return _reason_action(
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
        return _reason_action(
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
        return _reason_action(
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
        return _reason_action(
            self,
            request,
            trades if "apply" in request.POST else queryset,
            title="Propose reversal",
            service=_propose("reversal", lambda leg: leg.trade_id),
            action_name="reverse_selected",
            kwarg="obj",
        )


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
        return _transitions_table("chaintransfer", obj.pk)


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
        return _reason_action(
            self,
            request,
            queryset,
            title="Propose lifting the halt",
            service=_propose("halt_lift", lambda halt: halt.pk),
            action_name="lift_selected",
            kwarg="obj",
        )


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
        return _transitions_table("reviewcase", obj.pk)

    @admin.action(description="Take selected cases (assign them to me)", permissions=["resolve"])
    def take_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        done = 0
        for case in queryset.order_by("pk"):
            try:
                case_assign(case=case, actor=request.user)
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

        return _reason_action(
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
        return _transitions_table("approval", obj.pk)

    def _decide(self, request: HttpRequest, queryset: QuerySet, *, approve: bool) -> HttpResponse | None:
        from ops.services.approvals import approval_decide

        def decide(*, obj: ApprovalRequest, actor: Any, reason: str) -> None:
            decided = approval_decide(request=obj, actor=actor, approve=approve, reason=reason)
            if decided.status == "failed":
                self.message_user(request, f"#{decided.pk}: {decided.outcome}", messages.WARNING)

        name = "approve_selected" if approve else "reject_selected"
        title = "Approve" if approve else "Reject"
        return _reason_action(self, request, queryset, title=title, service=decide, action_name=name, kwarg="obj")

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
    fields = ["level", "title", "body", "roles", "created_at", "emailed", "open_link"]
    readonly_fields = fields
    actions = ["mark_read"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        from django.db.models import Exists, OuterRef

        read = OpsAlert.read_by.through.objects.filter(opsalert_id=OuterRef("pk"), user_id=request.user.pk)
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
            actor=request.user,
            expires_at=form.cleaned_data.get("expires_at"),
        )
        obj.pk = issued.token.pk
        self.message_user(request, f"Key for {issued.token} (shown once, copy it now): {issued.key}", messages.WARNING)

    @admin.action(description="Revoke selected tokens (asks for a reason)", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        from settlement.services.tokens import token_revoke

        def revoke(*, obj: ApiToken, actor: Any, reason: str) -> None:
            token_revoke(token=obj, actor=actor, reason=reason)

        return _reason_action(
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

        return _reason_action(
            self, request, queryset, title="Rotate", service=rotate, action_name="rotate_selected", kwarg="obj"
        )


@admin.register(AuthFailure)
class AuthFailureAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["at", "channel", "who", "ip", "reason", "path"]
    list_filter = ["channel", "reason"]
    search_fields = ["who", "ip"]
    date_hierarchy = "at"


# The DRF token table is not used for authentication (ApiToken is): keep it out of the admin.
try:
    from rest_framework.authtoken.models import TokenProxy

    admin.site.unregister(TokenProxy)
except (ImportError, admin.sites.NotRegistered):
    pass


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
        from django.utils import timezone

        data = super().clean()
        now = timezone.now() - timezone.timedelta(minutes=1)  # the time it took to fill the form
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


@admin.register(DailyReport)
class DailyReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """End-of-day settlement reports (beat at 23:55 UTC); regenerate one, or today's, on demand."""

    list_display = ["day", "settled", "failed", "generated_at", "generated_by", "seconds"]
    date_hierarchy = "day"
    fields = ["day", "generated_at", "generated_by", "seconds", "report", "chart"]
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
        report = daily_report_build(day=timezone.now().date(), actor=request.user)
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
            daily_report_build(day=report.day, actor=request.user)
        self.message_user(request, f"{queryset.count()} reports regenerated.", messages.SUCCESS)


# Participants' accounts, assets and beat's schedule: saves there are four-eyes proposals.
from ops import admin_changes  # noqa: E402, F401
