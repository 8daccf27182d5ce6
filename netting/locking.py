"""Row locks of netting: windows, netted instructions (net payments), rail attempts and reports.

The global lock order is stated in ``ledger.locking``. Netting's part of it:

- a **window** row is taken FOR SHARE (``lock_window_shared``) by every service that changes legs
  of an open window (ingest, ``trade_cancel``), before any leg row; the close takes it FOR UPDATE
  (``lock_window``), so a close waits for them and they see it closed after;
- the netted pipeline locks **netted instruction** rows first (FOR UPDATE OF the payment row; a
  sweeper SKIP LOCKED), then their **rail attempts**, then the window row FOR NO KEY UPDATE
  (``lock_windows_no_key``: rows that merely reference the window by foreign key must not wait
  for it), then ledger accounts in pk order, then the transition-log head;
- a **rail report** is locked alone.

Every helper returns a query: the lock is taken when the caller runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection
from django.db.models import QuerySet

from netting.models import NettedInstruction, NettingWindow, RailAttempt, RailReport


def lock_window(pk: int) -> QuerySet[NettingWindow]:
    """A window row FOR UPDATE (the close)."""
    return NettingWindow.objects.select_for_update().filter(pk=pk)


def lock_window_shared(window_id: int) -> str | None:
    """A window row FOR SHARE for the rest of the caller's transaction; its status (None: no such
    window). PostgreSQL only."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM netting_nettingwindow WHERE id = %s FOR SHARE", [window_id])
        row = cursor.fetchone()
    return None if row is None else row[0]


def lock_windows_no_key(ids: Iterable[int]) -> QuerySet[NettingWindow]:
    """Window rows FOR NO KEY UPDATE in pk order (the netted pipeline, when a payment settles)."""
    return NettingWindow.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk")


def lock_net_payments(
    *, of_self: bool = False, skip_locked: bool = False, related: Sequence[str] = (), **filters: object
) -> QuerySet[NettedInstruction]:
    """Netted instructions matching ``filters``, FOR UPDATE (OF the payment row only with
    ``of_self``; SKIP LOCKED for a sweeper)."""
    query = NettedInstruction.objects.select_for_update(skip_locked=skip_locked, of=("self",) if of_self else ())
    if related:
        query = query.select_related(*related)
    return query.filter(**filters)


def lock_attempts(**filters: object) -> QuerySet[RailAttempt]:
    """Rail attempts matching ``filters``, FOR UPDATE (after their netted instruction)."""
    return RailAttempt.objects.select_for_update().filter(**filters)


def lock_report(pk: int) -> QuerySet[RailReport]:
    return RailReport.objects.select_for_update().filter(pk=pk)
