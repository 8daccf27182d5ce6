"""Ports: what the lower layers (ledger, settlement, netting, reconciliation) ask of operations.

A pipeline that meets a problem opens a review case, tells participants and operations, or raises
an alert; a four-eyes service checks who may propose and approve. Operations (``ops``, the top
layer) implements these and registers the implementation in ``OpsConfig.ready()``; the callers
import only this module, so no lower layer imports ``ops``. Every call is synchronous and runs in
the caller's transaction, with the arguments and return values of the implementation. Without
``ops`` installed a call raises :class:`PortNotBound`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# The four-eyes approver permission (ops owns the ApprovalRequest model).
APPROVE_PERMISSION = "ops.approve_approvalrequest"

_bound: dict[str, Callable[..., Any]] = {}


class PortNotBound(RuntimeError):
    """A lower layer asked for an operations service but no implementation is registered."""


def ports_register(**implementations: Callable[..., Any]) -> None:
    """Bind the implementations (``OpsConfig.ready``)."""
    _bound.update(implementations)


def _impl(name: str) -> Callable[..., Any]:
    try:
        return _bound[name]
    except KeyError:
        raise PortNotBound(f"no implementation of {name} is registered (is the ops app installed?)") from None


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
