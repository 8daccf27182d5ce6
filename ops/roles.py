"""Operations roles (Django groups) and what each may do. Installed by a migration and kept
in step after every ``migrate`` (permissions of new models join the roles automatically).

- operator: sees everything; retries, cancels and escalates instructions, releases and retries
  netted payments, works reconciliation breaks and review cases, imports files, and proposes
  four-eyes requests (reversals, halt lifts, method overrides, adjusting journals, write-offs).
- approver: sees everything; approves or rejects what someone else proposed.
- auditor: sees everything, including history, and changes nothing.
- administrator: everything else (participants, assets, users, tokens, beat's schedule; the
  high-risk edits there - participants' bank, custody and wallet accounts, net debit caps, beat's
  tasks, an asset's kind/chain/cycle in flight - are four-eyes proposals), but
  like everybody never edits or deletes ledger rows, the transition log or history rows, and
  never approves: whoever can create users or change their roles could otherwise make a second
  account and approve their own proposal. No role holds both user management (any permission on
  ``auth`` users, groups or permissions) and an approver permission: ``roles_install`` refuses a
  table that would, and ``approver_require`` (ops.services.approvals) refuses such a
  person (and superusers) at the moment of approval too.
"""

from __future__ import annotations

from typing import Any

APPS = (
    "reference",
    "ledger",
    "settlement",
    "netting",
    "reconciliation",
    "rails",
    "django_celery_beat",
    "auth",
    "authtoken",
    "ops",
)

# Evidence: no role holds change/delete on these (the admin refuses it to superusers too).
IMMUTABLE = {
    ("ledger", "journal"),
    ("ledger", "posting"),
    ("ledger", "ledgeraccount"),
    ("ledger", "ledgerlock"),
    ("settlement", "feecharge"),
    ("ledger", "transitionlog"),
    ("ledger", "auditbatch"),
    ("ledger", "transitionloghead"),
    ("reconciliation", "externalrecord"),
    ("reconciliation", "importedfile"),
}

OPERATOR = {
    "settlement.retry_settlementinstruction",
    "settlement.cancel_settlementinstruction",
    "settlement.escalate_settlementinstruction",
    "ops.resolve_reviewcase",
    "ops.add_approvalrequest",
    "netting.release_nettedinstruction",
    "netting.retry_nettedinstruction",
    "reconciliation.work_break",
    "reconciliation.add_importedfile",
    "reconciliation.add_breakproposal",
}
APPROVER = {"ops.approve_approvalrequest"}
# Permissions that decide a four-eyes request (never together with user management).
APPROVER_PERMISSIONS = frozenset(APPROVER)


def user_management(permission: str) -> bool:
    """Creating or changing users, their groups or their permissions (``auth.*`` writes)."""
    app, codename = permission.split(".", 1)
    return app == "auth" and codename.split("_", 1)[0] in ("add", "change", "delete")


class RoleConflict(Exception):
    """A role table in which one role could both manage users and approve."""


def roles_check(roles: dict[str, set[str]]) -> None:
    """Refuse a role table in which a role holds user management and an approver permission."""
    for name, keys in roles.items():
        managing = sorted(key for key in keys if user_management(key))
        approving = sorted(keys & APPROVER_PERMISSIONS)
        if managing and approving:
            raise RoleConflict(f"role {name} would both manage users ({managing[0]}) and approve ({approving[0]})")


def _immutable(app_label: str, model: str) -> bool:
    return (app_label, model) in IMMUTABLE or model.startswith("historical")


def roles_install(group_model: Any, permission_model: Any) -> None:
    """Create the groups and set their permissions (idempotent; works with the migration's
    historical models as with the real ones)."""
    perms = {
        f"{app}.{codename}": (pk, model)
        for pk, app, codename, model in permission_model.objects.filter(content_type__app_label__in=APPS).values_list(
            "pk", "content_type__app_label", "codename", "content_type__model"
        )
    }
    view = {key for key in perms if key.split(".")[1].startswith("view_")}
    admin = {
        key
        for key, (_, model) in perms.items()
        if not (key.split(".")[1].split("_")[0] in ("change", "delete") and _immutable(key.split(".")[0], model))
        and key not in APPROVER_PERMISSIONS
    }
    roles = {
        "operator": view | OPERATOR,
        "approver": view | APPROVER,
        "auditor": view,
        "administrator": admin,
    }
    roles_check(roles)
    for name, keys in roles.items():
        group, _ = group_model.objects.get_or_create(name=name)
        group.permissions.set([perms[key][0] for key in keys if key in perms])


def roles_sync(**_: Any) -> None:
    """post_migrate: new models' permissions join the roles."""
    from django.contrib.auth.models import Group, Permission

    roles_install(Group, Permission)
