"""Admin pages whose saves are four-eyes proposals (``ops.services.changes``): a
participant's bank, custody and wallet accounts, beat's periodic tasks (edits, enabling and
disabling), net debit caps (with the liquidity position beside each) and an asset's kind, chain,
cycle or precision while it has instructions in flight.
Saving asks for a reason and files a proposal; the change is written when an approver agrees."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django_celery_beat.admin import PeriodicTaskAdmin, PeriodicTaskForm
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from common.admin_kit import HistoryAdmin, permission_check, reason_action
from common.exceptions import DomainError, ValidationFailed
from netting.models import NetDebitCap
from netting.selectors import liquidity_position
from ops.models import ApprovalKind
from ops.services.approvals import approval_propose
from ops.services.changes import asset_change_needs_approval, change_payload, changed_fields
from reference.models import Asset, BankAccount, CustodyAccount, WalletAddress

REASON = forms.CharField(
    label="Reason for the change",
    widget=forms.Textarea(attrs={"rows": 2}),
    help_text="The change is proposed: it is applied when an approver (another person) approves it.",
)


def change_propose(*, obj: Any, kind: str, fields: list[str], actor: Any, reason: str) -> Any:
    target_id, payload = change_payload(obj, kind, fields)
    return approval_propose(kind=kind, target_id=target_id, actor=actor, reason=reason, payload=payload)


class ProposeChangesMixin:
    """A model admin whose add and change forms propose (four-eyes) instead of saving. Deleting
    is not offered: the record of where money and keys go stays."""

    change_kind: str

    def _proposal_needed(self, obj: Any, fields: list[str]) -> bool:
        return True

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        fields = changed_fields(obj, self.change_kind)
        if change and not fields:
            request._four_eyes = "nothing"  # type: ignore[attr-defined]
            self.message_user(request, "Nothing changed: no proposal made.", messages.INFO)  # type: ignore[attr-defined]
            return
        if not self._proposal_needed(obj, fields):
            super().save_model(request, obj, form, change)  # type: ignore[misc]
            return
        request._four_eyes = "proposed"  # type: ignore[attr-defined]
        try:
            proposal = change_propose(
                obj=obj, kind=self.change_kind, fields=fields, actor=request.user, reason=form.cleaned_data["reason"]
            )
        except DomainError as exc:
            self.message_user(request, f"Not proposed: {exc.message}", messages.ERROR)  # type: ignore[attr-defined]
            return
        url = reverse("admin:ops_approvalrequest_change", args=[proposal.pk])
        self.message_user(  # type: ignore[attr-defined]
            request, f"Proposed ({', '.join(fields)}): applied once approved - request {url}", messages.WARNING
        )

    def _skip(self, request: HttpRequest) -> bool:
        return hasattr(request, "_four_eyes")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if not self._skip(request):
            super().save_related(request, form, formsets, change)  # type: ignore[misc]

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None if self._skip(request) else super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None if self._skip(request) else super().log_change(request, obj, message)  # type: ignore[misc]

    def _back(self, request: HttpRequest) -> HttpResponse:
        opts = self.model._meta  # type: ignore[attr-defined]
        return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: Any = None) -> HttpResponse:
        return self._back(request) if self._skip(request) else super().response_add(request, obj, post_url_continue)  # type: ignore[misc]

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        return self._back(request) if self._skip(request) else super().response_change(request, obj)  # type: ignore[misc]


class BankAccountForm(forms.ModelForm):
    reason = REASON

    class Meta:
        model = BankAccount
        fields = ["participant", "currency", "holder_name", "iban", "bic", "aba_routing", "account_number"]


class WalletForm(forms.ModelForm):
    reason = REASON

    class Meta:
        model = WalletAddress
        fields = ["participant", "chain", "address", "label"]


class CustodyAccountForm(forms.ModelForm):
    reason = REASON

    class Meta:
        model = CustodyAccount
        fields = ["participant", "custodian_bic", "account_id"]


class _ParticipantAccountAdmin(ProposeChangesMixin, HistoryAdmin):
    list_select_related = ["participant"]
    search_fields = ["participant__code"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [*super().get_readonly_fields(request, obj), *(["participant"] if obj is not None else [])]


@admin.register(BankAccount)
class BankAccountAdmin(_ParticipantAccountAdmin):
    """Where a participant's fiat is paid: every add or change is a four-eyes proposal."""

    form = BankAccountForm
    change_kind = ApprovalKind.BANK_ACCOUNT
    list_display = ["participant", "currency", "holder_name", "iban", "bic", "aba_routing", "account_number"]
    list_filter = ["currency"]


@admin.register(WalletAddress)
class WalletAddressAdmin(_ParticipantAccountAdmin):
    """A participant's wallets: every add or change is a four-eyes proposal. The signing state
    (next nonce, Bitcoin change output) belongs to the pipeline and is never edited here."""

    form = WalletForm
    change_kind = ApprovalKind.WALLET
    list_display = ["participant", "chain", "address", "label", "next_nonce"]
    list_filter = ["chain"]
    readonly_fields = ["next_nonce", "chain_state"]


@admin.register(CustodyAccount)
class CustodyAccountAdmin(_ParticipantAccountAdmin):
    """A participant's safekeeping accounts: every add or change is a four-eyes proposal."""

    form = CustodyAccountForm
    change_kind = ApprovalKind.CUSTODY_ACCOUNT
    list_display = ["participant", "custodian_bic", "account_id"]


class AssetForm(forms.ModelForm):
    reason = forms.CharField(
        label="Reason for the change",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="A change of kind, chain, cycle or precision while the asset has instructions in flight is "
        "proposed (four-eyes); anything else is saved at once.",
    )

    class Meta:
        model = Asset
        fields = [
            "code", "name", "kind", "precision", "settlement_cycle", "calendar", "chain", "required_confirmations",
            "isin", "is_active",
        ]  # fmt: skip


@admin.register(Asset)
class AssetAdmin(ProposeChangesMixin, HistoryAdmin):
    form = AssetForm
    change_kind = ApprovalKind.ASSET
    list_display = ["code", "name", "kind", "precision", "settlement_cycle", "calendar", "chain", "is_active"]
    list_filter = ["kind", "settlement_cycle", "calendar", "is_active"]
    search_fields = ["code", "name"]

    def _proposal_needed(self, obj: Any, fields: list[str]) -> bool:
        return asset_change_needs_approval(obj, fields)

    def save_model(self, request: HttpRequest, obj: Asset, form: Any, change: bool) -> None:
        from common.actors import request_actor, stamp_history

        stamp_history(obj, actor=request_actor(request.user), reason=form.cleaned_data["reason"])
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return HistoryAdmin.has_delete_permission(self, request, obj)


# --- beat's schedule ---------------------------------------------------------------------------


class NetDebitCapForm(forms.ModelForm):
    reason = REASON

    class Meta:
        model = NetDebitCap
        fields = ["participant", "asset", "cap"]


@admin.register(NetDebitCap)
class NetDebitCapAdmin(ProposeChangesMixin, HistoryAdmin):
    """Caps are liquidity limits set by operations: adding or changing one is a four-eyes
    proposal (a raised cap lets payments past the old limit); every change is kept in history.
    Next to each, the participant's liquidity position in that asset."""

    form = NetDebitCapForm
    change_kind = ApprovalKind.NET_DEBIT_CAP
    list_display = ("participant", "asset", "cap", "available", "locked", "open_pay_ins", "latest_net", "headroom")
    list_select_related = ("participant", "asset")

    def _position(self, obj: NetDebitCap, key: str) -> str:
        from common.money import format_amount

        return format_amount(liquidity_position(obj)[key], obj.asset.precision)

    @admin.display(description="available")
    def available(self, obj: NetDebitCap) -> str:
        return self._position(obj, "available")

    @admin.display(description="locked")
    def locked(self, obj: NetDebitCap) -> str:
        return self._position(obj, "locked")

    @admin.display(description="open pay-ins")
    def open_pay_ins(self, obj: NetDebitCap) -> str:
        return self._position(obj, "open_pay_ins")

    @admin.display(description="latest net obligation")
    def latest_net(self, obj: NetDebitCap) -> str:
        return self._position(obj, "latest_net")

    @admin.display(description="headroom (cap - open pay-ins)")
    def headroom(self, obj: NetDebitCap) -> str:
        return self._position(obj, "headroom")

    list_filter = ("asset",)
    search_fields = ("participant__code",)


class PeriodicTaskChangeForm(PeriodicTaskForm):
    reason = REASON


class FourEyesPeriodicTaskAdmin(ProposeChangesMixin, PeriodicTaskAdmin):
    """Beat's schedule: editing, enabling or disabling a task is a four-eyes proposal whose
    payload records the values before and after (beat's tables keep no history). Tasks come from
    settings (``CELERY_BEAT_SCHEDULE``); they are not added or deleted here."""

    form = PeriodicTaskChangeForm
    change_kind = ApprovalKind.BEAT_TASK
    actions = ["propose_enable", "propose_disable", "run_tasks"]
    has_propose_permission = permission_check("ops.add_approvalrequest")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return [*super().get_fieldsets(request, obj), ("Four-eyes", {"fields": ("reason",)})]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def _propose_enabled(self, request: HttpRequest, queryset: QuerySet, *, enabled: bool) -> HttpResponse | None:
        def propose(*, obj: PeriodicTask, actor: Any, reason: str) -> None:
            if obj.enabled == enabled:
                raise ValidationFailed(f"{obj.name} is already {'enabled' if enabled else 'disabled'}")
            obj.enabled = enabled
            change_propose(obj=obj, kind=self.change_kind, fields=["enabled"], actor=actor, reason=reason)

        name = "propose_enable" if enabled else "propose_disable"
        title = "Propose enabling" if enabled else "Propose disabling"
        return reason_action(self, request, queryset, title=title, service=propose, action_name=name, kwarg="obj")

    @admin.action(description="Propose enabling selected tasks (four-eyes)", permissions=["propose"])
    def propose_enable(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._propose_enabled(request, queryset, enabled=True)

    @admin.action(description="Propose disabling selected tasks (four-eyes)", permissions=["propose"])
    def propose_disable(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._propose_enabled(request, queryset, enabled=False)


class AddOnlyScheduleMixin:
    """A schedule in use times its tasks: a new one can be added (then proposed for a task), an
    existing one is neither edited nor deleted (that would move or stop tasks without four-eyes)."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _beat_admin_install() -> None:
    admin.site.unregister(PeriodicTask)
    admin.site.register(PeriodicTask, FourEyesPeriodicTaskAdmin)
    for model in (ClockedSchedule, CrontabSchedule, IntervalSchedule, SolarSchedule):
        stock = type(admin.site._registry[model])
        admin.site.unregister(model)
        admin.site.register(model, type(f"AddOnly{stock.__name__}", (AddOnlyScheduleMixin, stock), {}))


_beat_admin_install()
