"""Domain errors. The API maps each to an HTTP status with a stable ``code``."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "domain_error"
    http_status = 400

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ValidationFailed(DomainError):
    code = "invalid"


class Conflict(DomainError):
    code = "conflict"
    http_status = 409


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    http_status = 409


class UnbalancedJournal(DomainError):
    code = "unbalanced_journal"


class IllegalTransition(DomainError):
    code = "illegal_transition"
    http_status = 409


class WindowNotOpen(IllegalTransition):
    """A netted leg's window is closing or closed: its value moves with the window's payments."""

    code = "netting_window_not_open"


class LockNotPending(DomainError):
    code = "lock_not_pending"
    http_status = 409


class NotPermitted(DomainError):
    code = "not_permitted"
    http_status = 403
