"""The admin kit every app's admin builds on (public): read-only and action-only admins, history
that cannot be reverted by a POST, amount columns at the asset's precision, the reason-asking
action (with the four-eyes proposal, through ``common.ports``, as its service). The transition-log
table is the ledger's: ``ledger.admin_kit``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from simple_history.admin import SimpleHistoryAdmin

from common.exceptions import DomainError
from common.money import format_amount
from common.ports import approval_propose


def amount_column(field: str, precision: Callable[[Any], int], label: str) -> Callable[[Any, Any], str]:
    """An admin column showing ``field`` at its asset's precision instead of 18 places."""

    @admin.display(description=label, ordering=field)
    def show(model_admin: Any, obj: Any) -> str:
        return format_amount(getattr(obj, field), precision(obj))

    return show


def asset_precision(obj: Any) -> int:
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


def proposal_service(kind: str, target: Any) -> Any:
    """A service for reason_action: propose a four-eyes request on ``target``."""

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


def reason_action(
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
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "choice": choice,
        },
    )
