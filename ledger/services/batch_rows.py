"""Rows the ledger batch writes by SQL, driven by arrays: no model instance per row.

``postings_insert`` inserts the postings of many journals in one statement (the balanced-journal
trigger checks that statement's rows per journal). ``lock_history_insert`` copies ledger-lock rows
as they are now into their simple-history table, with the user and reason the single-item services
record through ``stamp_history``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.db import connection

from common.actors import Actor, actor_user, history_reason

_POSTINGS_INSERT = (
    'INSERT INTO "settlement_posting" ("journal_id", "account_id", "asset_id", "amount") '
    "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[])"
)

# Every column of settlement_ledgerlock (tests/ledger/test_batch.py checks it against the model).
LOCK_COLUMNS = (
    "id",
    "reference",
    "asset_id",
    "available_account_id",
    "locked_account_id",
    "amount",
    "status",
    "expires_at",
    "created_at",
    "resolved_at",
)
_LOCK_HISTORY_INSERT = (
    'INSERT INTO "settlement_historicalledgerlock" ("id", "reference", "asset_id", "available_account_id", '
    '"locked_account_id", "amount", "status", "expires_at", "created_at", "resolved_at", '
    '"history_date", "history_change_reason", "history_type", "history_user_id") '
    "SELECT l.id, l.reference, l.asset_id, l.available_account_id, l.locked_account_id, l.amount, l.status, "
    "l.expires_at, l.created_at, l.resolved_at, %s, r.reason, %s, %s "
    "FROM unnest(%s::bigint[], %s::varchar[]) WITH ORDINALITY AS r(id, reason, n) "
    'JOIN "settlement_ledgerlock" l ON l.id = r.id ORDER BY r.n'
)


def postings_insert(rows: Sequence[tuple[int, int, int, Decimal]]) -> None:
    """Insert (journal id, account id, asset id, signed amount) postings in one statement."""
    if not rows:
        return
    journals, accounts, assets, amounts = (list(column) for column in zip(*rows, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(_POSTINGS_INSERT, [journals, accounts, assets, amounts])


def lock_history_insert(
    *, ids: Sequence[int], reasons: Sequence[str], actor: Actor, at: datetime, created: bool
) -> None:
    """One simple-history row per lock id, in the given order: '+' when ``created``, else '~'."""
    if not ids:
        return
    user = actor_user(actor)
    params = [
        at,
        "+" if created else "~",
        user.pk if user is not None else None,
        list(ids),
        [history_reason(actor=actor, reason=reason) for reason in reasons],
    ]
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_HISTORY_INSERT, params)
