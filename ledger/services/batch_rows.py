"""Rows the ledger batch writes by SQL, driven by arrays: one statement per kind of row however many
rows, and no model instance built per row on the way in.

* ``locks_insert``: new ledger locks (pending), their ids by reference;
* ``lock_history_insert``: copies of ledger-lock rows as they are now in their simple-history table,
  with the user and reason the single-item services record through ``stamp_history``;
* ``journals_insert``: one journal per lock (``<reference>:<kind>``, ``lock`` set) and its postings,
  in one statement (the balanced-journal trigger checks that statement's rows per journal).

Rows keep the order they are given in (ids follow it, as one-by-one writing would give them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from common.actors import Actor, actor_user, history_reason
from common.choices import LockStatus

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

_LOCKS_INSERT = """
INSERT INTO "settlement_ledgerlock"
    ("reference", "asset_id", "available_account_id", "locked_account_id", "amount", "status", "expires_at",
     "created_at", "resolved_at")
SELECT r.reference, r.asset_id, r.available_id, r.locked_id, r.amount, %s, r.expires_at, %s, NULL
  FROM unnest(%s::varchar[], %s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[], %s::timestamptz[])
       WITH ORDINALITY AS r(reference, asset_id, available_id, locked_id, amount, expires_at, n)
 ORDER BY r.n
RETURNING "id", "reference"
"""

_LOCK_HISTORY_INSERT = """
INSERT INTO "settlement_historicalledgerlock"
    ("id", "reference", "asset_id", "available_account_id", "locked_account_id", "amount", "status", "expires_at",
     "created_at", "resolved_at", "history_date", "history_change_reason", "history_type", "history_user_id")
SELECT l.id, l.reference, l.asset_id, l.available_account_id, l.locked_account_id, l.amount, l.status,
       l.expires_at, l.created_at, l.resolved_at, %s, r.reason, %s, %s
  FROM unnest(%s::bigint[], %s::varchar[]) WITH ORDINALITY AS r(id, reason, n)
  JOIN "settlement_ledgerlock" l ON l.id = r.id
 ORDER BY r.n
"""

_JOURNALS_INSERT = """
WITH journal AS (
    INSERT INTO "settlement_journal" ("kind", "reference", "memo", "lock_id", "actor_id", "created_at")
    SELECT %(kind)s, l.reference || ':' || %(kind)s, m.memo, l.id, %(user)s, %(now)s
      FROM unnest(%(locks)s::bigint[], %(memos)s::varchar[]) WITH ORDINALITY AS m(lock_id, memo, n)
      JOIN "settlement_ledgerlock" l ON l.id = m.lock_id
     ORDER BY m.n
    RETURNING "id", "reference", "memo", "lock_id"
), posting AS (
    INSERT INTO "settlement_posting" ("journal_id", "account_id", "asset_id", "amount")
    SELECT journal.id, leg.account_id, leg.asset_id, leg.amount
      FROM unnest(%(leg_locks)s::bigint[], %(leg_accounts)s::bigint[], %(leg_assets)s::bigint[],
                  %(leg_amounts)s::numeric[]) WITH ORDINALITY AS leg(lock_id, account_id, asset_id, amount, n)
      JOIN journal ON journal.lock_id = leg.lock_id
     ORDER BY journal.id, leg.n
)
SELECT "id", "reference", "memo", "lock_id" FROM journal ORDER BY "id"
"""


@dataclass(frozen=True)
class NewLock:
    reference: str
    asset_id: int
    available_account_id: int
    locked_account_id: int
    amount: Decimal
    expires_at: datetime


def locks_insert(*, locks: Sequence[NewLock], at: datetime) -> dict[str, int]:
    """Insert pending locks created ``at``; their ids by reference. A reference that exists
    already raises ``IntegrityError`` (unique)."""
    if not locks:
        return {}
    columns: list[list[Any]] = [
        [lock.reference for lock in locks],
        [lock.asset_id for lock in locks],
        [lock.available_account_id for lock in locks],
        [lock.locked_account_id for lock in locks],
        [lock.amount for lock in locks],
        [lock.expires_at for lock in locks],
    ]
    with connection.cursor() as cursor:
        cursor.execute(_LOCKS_INSERT, [LockStatus.PENDING.value, at, *columns])
        return {reference: pk for pk, reference in cursor.fetchall()}


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


def journals_insert(
    *,
    kind: str,
    lock_ids: Sequence[int],
    memos: Sequence[str],
    legs: Sequence[tuple[int, int, int, Decimal]],
    actor: Actor,
    at: datetime,
) -> list[tuple[int, str, str, int]]:
    """One ``kind`` journal per lock (in the given order) with its postings, ``legs`` being
    (lock id, account id, asset id, signed amount) in the order of each journal's postings.
    Returns the journals as (id, reference, memo, lock id) in id order. Each lock gets one
    journal: the caller passes a lock once."""
    if not lock_ids:
        return []
    user = actor_user(actor)
    leg_locks, leg_accounts, leg_assets, leg_amounts = (list(column) for column in zip(*legs, strict=True))
    params = {
        "kind": kind,
        "user": user.pk if user is not None else None,
        "now": at,
        "locks": list(lock_ids),
        "memos": list(memos),
        "leg_locks": leg_locks,
        "leg_accounts": leg_accounts,
        "leg_assets": leg_assets,
        "leg_amounts": leg_amounts,
    }
    with connection.cursor() as cursor:
        cursor.execute(_JOURNALS_INSERT, params)
        return [(pk, reference, memo, lock_id) for pk, reference, memo, lock_id in cursor.fetchall()]
