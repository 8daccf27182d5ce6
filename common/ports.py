"""Ports: what a lower layer asks of a layer above it, without importing it.

Operations. A pipeline that meets a problem opens a review case, tells participants and operations, or raises
an alert; a four-eyes service checks who may propose and approve. Operations (``ops``, the top
layer) implements these and registers the implementation in ``OpsConfig.ready()``; the callers
import only this module, so no lower layer imports ``ops``. Every call is synchronous and runs in
the caller's transaction, with the arguments and return values of the implementation. Without
``ops`` installed a call raises :class:`PortNotBound`.

Netting. The ingest puts a netted trade's legs in the open window of their asset class, and a
cancel holds a leg's window open; the window rows are netting's (``netting`` sits above
``settlement``), so ``NettingConfig.ready()`` registers the window look-up and share-lock here,
and a leg's net payments for the API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

# The four-eyes approver permission (ops owns the ApprovalRequest model).
APPROVE_PERMISSION = "ops.approve_approvalrequest"

_bound: dict[str, Callable[..., Any]] = {}


# The approval kind whose application ``netted_release`` is; ``ops.models.ApprovalKind`` takes its
# value from here, so the two cannot drift apart.
NETTED_RELEASE = "netted_release"


class Approval(Protocol):
    """A four-eyes request as a lower layer sees it (``ops.models.ApprovalRequest``)."""

    pk: Any
    decided_by_id: int | None


class PortNotBound(RuntimeError):
    """A lower layer asked for an operations service but no implementation is registered."""


def ports_register(**implementations: Callable[..., Any]) -> None:
    """Bind the implementations (``OpsConfig.ready``, ``NettingConfig.ready``)."""
    _bound.update(implementations)


def _impl(name: str) -> Callable[..., Any]:
    try:
        return _bound[name]
    except KeyError:
        raise PortNotBound(f"no implementation of {name} is registered (is its app installed?)") from None


def case_open(
    *, kind: str, reason: str, dedupe_key: str, instruction: Any | None = None, asset: Any | None = None
) -> Any:
    """Open a manual-review case once per ``dedupe_key`` and tell operations; returns the case."""
    return _impl("case_open")(kind=kind, reason=reason, dedupe_key=dedupe_key, instruction=instruction, asset=asset)


def escalate(instruction: Any, *, reason: str) -> Any:
    """Put an instruction in the manual-review queue (one open case per problem); returns the case."""
    return _impl("escalate")(instruction, reason=reason)


def notify(
    *,
    event: str,
    instruction: Any | None,
    message: str,
    dedupe_key: str,
    participant_ids: Iterable[int] = (),
    ops: bool = False,
    payload: dict | None = None,
) -> list[Any]:
    """Store notifications to participants (and operations), idempotent by ``dedupe_key``."""
    return _impl("notify")(
        event=event,
        instruction=instruction,
        message=message,
        dedupe_key=dedupe_key,
        participant_ids=participant_ids,
        ops=ops,
        payload=payload,
    )


def ops_alert(
    *,
    title: str,
    body: str = "",
    link: str = "",
    level: str = "info",
    roles: Iterable[str] = ("operator",),
    dedupe_key: str | None = None,
) -> Any:
    """Record an operations alert (once per ``dedupe_key``) and queue its email; returns it."""
    return _impl("ops_alert")(title=title, body=body, link=link, level=level, roles=roles, dedupe_key=dedupe_key)


def permission_require(actor: Any, permission: str, what: str) -> Any:
    """The active person behind ``actor``, who must hold ``permission`` (else NotPermitted)."""
    return _impl("permission_require")(actor, permission, what)


def approver_require(actor: Any, *, proposed_by_id: int | None, what: str) -> Any:
    """The person deciding a four-eyes request (approver, not the proposer, no administrator)."""
    return _impl("approver_require")(actor, proposed_by_id=proposed_by_id, what=what)


def approval_propose(
    *, kind: str, target_id: int, actor: Any, reason: str, payload: dict[str, Any] | None = None
) -> Any:
    """Propose a four-eyes request of ``kind`` on ``target_id``; returns the request."""
    return _impl("approval_propose")(kind=kind, target_id=target_id, actor=actor, reason=reason, payload=payload)


def approval_pending(pk: int | None) -> tuple[str, int, int | None] | None:
    """``(kind, target_id, proposed_by_id)`` of four-eyes request ``pk`` while it is pending, else None."""
    return _impl("approval_pending")(pk)


def case_exists(*, dedupe_key: str) -> bool:
    """Whether a review case was ever opened under ``dedupe_key`` (open or resolved)."""
    return _impl("case_exists")(dedupe_key=dedupe_key)


def instruction_escalate(*, instruction: Any, actor: Any, reason: str) -> Any:
    """Ops: put an instruction in the manual-review queue by hand (one open escalation); returns the case."""
    return _impl("instruction_escalate")(instruction=instruction, actor=actor, reason=reason)


# --- asked of netting (registered in NettingConfig.ready) -----------------------------------------


def netting_windows_for(asset_classes: set[str]) -> dict[str, int]:
    """The open window id of each asset class, share-locked for the rest of the caller's transaction."""
    return _impl("netting_windows_for")(asset_classes)


def window_hold_open(*, window_id: int) -> bool:
    """Share-lock a window row for the rest of the caller's transaction; True if it is still open."""
    return _impl("window_hold_open")(window_id=window_id)


def leg_net_payment_ids(leg: Any) -> list[int]:
    """Ids of the net payments (payer's and payee's side) that settle ``leg``, sorted; empty if gross."""
    return _impl("leg_net_payment_ids")(leg)
