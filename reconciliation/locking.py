"""Row locks of reconciliation: breaks, break proposals and chain scans.

None of these is part of the settlement chain of the global lock order (stated in
``ledger.locking``): a break or a proposal is locked first in its transaction, before the ledger
work that books or resolves it (accounts in pk order, then the transition-log head); a batch of
breaks in pk order. A chain scan's row serialises the importers of one chain. Every helper
returns a query: the lock is taken when the caller runs it.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from reconciliation.models import Break, BreakProposal, ChainScan


def lock_break(pk: int) -> QuerySet[Break]:
    return Break.objects.select_for_update().filter(pk=pk)


def lock_breaks(ids: Iterable[int], **filters: object) -> QuerySet[Break]:
    """Breaks by id (and ``filters``), FOR UPDATE in pk order."""
    return Break.objects.select_for_update().filter(pk__in=ids, **filters).order_by("pk")


def lock_proposal(pk: int) -> QuerySet[BreakProposal]:
    return BreakProposal.objects.select_for_update().filter(pk=pk)


def lock_chain_scan(chain: str) -> QuerySet[ChainScan]:
    return ChainScan.objects.select_for_update().filter(chain=chain)
