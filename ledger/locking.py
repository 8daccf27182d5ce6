"""Row locks on the ledger: accounts, ledger locks and the transition-log head.

The global lock order (every app follows it; a transaction takes what it needs in this order and
never goes back up it):

1. netting window row (``netting.locking``): FOR SHARE by the ingest and ``trade_cancel`` while a
   window is open, FOR UPDATE by the close, FOR NO KEY UPDATE by the netted pipeline when a
   payment settles - before any leg, so neither side holds a leg while waiting for the window;
2. netted instruction rows, then their rail attempts (``netting.locking``; the netted pipeline
   takes the window after its payment rows, see there);
3. settlement instruction rows (``settlement.locking``), a trade's legs together in pk order;
4. ledger locks (FOR UPDATE OF the lock row only);
5. ledger accounts (this module), all of a journal's or trade's accounts in one statement in
   primary-key order, so two journals on the same accounts never deadlock;
6. the transition-log head (this module), last: appended after the ledger work (``audit``'s
   deferred appends), held from the end of the caller's work to its commit.

Rows of one entity outside this chain (reports, cases, alerts, tokens, breaks, ...) are locked
alone, one row per transaction or a batch in pk order, each by its module's helper. These
helpers are the only place that calls ``select_for_update`` (``tests/test_locking.py``); each
returns a query, so the lock is taken when the caller runs it (``get``, ``first``, iteration).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from ledger.models import LedgerAccount, LedgerLock, TransitionLogHead


def lock_accounts(ids: Iterable[int], *, related: Sequence[str] = ()) -> QuerySet[LedgerAccount]:
    """Ledger accounts by id, FOR UPDATE in primary-key order (``related`` rows, e.g. the owner and
    the asset, are read with them, not locked)."""
    if not related:
        return LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    query = LedgerAccount.objects.select_for_update(of=("self",)).select_related(*related)
    return query.filter(pk__in=ids).order_by("pk")


def lock_owner_accounts(pairs: Iterable[tuple[int, int]], *, kinds: Sequence[str]) -> QuerySet[LedgerAccount]:
    """The accounts of the given kinds of (owner id, asset id) pairs, owner and asset read with them
    (not locked): FOR UPDATE OF the account rows, one statement in primary-key order whatever the
    number of pairs (the pairs go as two arrays, not as one condition per pair)."""
    ordered = sorted(set(pairs))
    owners = [owner for owner, _ in ordered]
    assets = [asset for _, asset in ordered]
    of_pairs = RawSQL(
        '("settlement_ledgeraccount"."owner_id", "settlement_ledgeraccount"."asset_id") '
        "IN (SELECT * FROM unnest(%s::bigint[], %s::bigint[]))",
        (owners, assets),
        output_field=BooleanField(),
    )
    query = LedgerAccount.objects.select_for_update(of=("self",)).select_related("owner", "asset")
    return query.filter(of_pairs, kind__in=kinds).order_by("pk")


def lock_accounts_where(condition: Q, *, kinds: Sequence[str]) -> QuerySet[LedgerAccount]:
    """The accounts of the given kinds matching ``condition`` (e.g. owner and asset pairs), FOR
    UPDATE in one statement in primary-key order."""
    return LedgerAccount.objects.select_for_update().filter(condition, kind__in=kinds).order_by("pk")


def lock_ledger_locks(*, related: Sequence[str] = (), **filters: object) -> QuerySet[LedgerLock]:
    """Ledger locks matching ``filters``, FOR UPDATE OF the lock row only (``related`` rows are
    read with it, not locked)."""
    query = LedgerLock.objects.select_for_update(of=("self",))
    if related:
        query = query.select_related(*related)
    return query.filter(**filters)


def lock_log_head() -> QuerySet[TransitionLogHead]:
    """The transition-log head (one row, pk 1), FOR UPDATE: the last lock of a transaction."""
    return TransitionLogHead.objects.select_for_update().filter(pk=1)
