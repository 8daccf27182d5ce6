"""Forming batches: pending crypto T+0 trades are claimed, in pk order, into batches per chain.

A trade goes into a batch when exactly one of its legs moves on a chain with a batching rail (the
usual crypto/cash trade: the crypto leg on chain, the cash leg on the internal ledger). Trades
with two chain legs (crypto against crypto) keep the per-trade pipeline: a batch is one chain.

The former claims legs with ``FOR UPDATE SKIP LOCKED`` and sets their ``batch`` in the same
transaction, so two formers running at once never claim a trade twice, and a trade an
operations action holds at that moment is simply claimed by the next round. A batch closes at
``CLEARHOUSE_BATCH_MAX_TRADES`` trades; the dispatcher wakes the former
``CLEARHOUSE_BATCH_WAIT_MS`` after the trades commit, so trades arriving meanwhile join the same
batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from common.choices import AssetKind, InstructionStatus
from reference.models import Asset
from settlement.crypto.trades import on_chain
from settlement.locking import claim_unbatched_legs
from settlement.models import BatchStatus, CryptoBatch, SettlementInstruction, Trade
from settlement.routing import settles_gross_q

S = InstructionStatus


def batch_engine_on() -> bool:
    return bool(settings.CLEARHOUSE_CRYPTO_ENGINE == "batch")


def batchable_q(prefix: str = "") -> Q:
    """Legs (``prefix`` "" from an instruction) of trades the batch engine takes: gross crypto
    T+0 whose quote asset is not a crypto asset (one chain per trade)."""
    return settles_gross_q(f"{prefix}trade__instrument") & ~Q(
        **{f"{prefix}trade__instrument__quote__kind": AssetKind.CRYPTO}
    )


def trades_split(trade_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """(batched, per-trade) of the given crypto T+0 trades: one query."""
    rows = Trade.objects.filter(pk__in=trade_ids).values_list("pk", "instrument__quote__kind")
    batched = sorted(pk for pk, quote_kind in rows if quote_kind != AssetKind.CRYPTO)
    return batched, sorted(set(trade_ids) - set(batched))


@dataclass
class Formed:
    batches: list[int] = field(default_factory=list)
    trades: int = 0
    skipped: list[int] = field(default_factory=list)  # trades with no batching chain (per-trade path)


def batches_form(*, max_trades: int | None = None) -> Formed:
    """Claim the waiting trades into batches (one transaction per round of up to ``max_trades``
    trades per chain); returns the batch ids to advance."""
    size = max_trades or settings.CLEARHOUSE_BATCH_MAX_TRADES
    formed = Formed()
    while True:
        with transaction.atomic():
            claimed = _form_round(size=size, formed=formed)
        if claimed < size:
            return formed


def _form_round(*, size: int, formed: Formed) -> int:
    waiting = SettlementInstruction.objects.filter(
        batchable_q(), status=S.PENDING, batch__isnull=True, netting_window__isnull=True
    )
    legs = list(claim_unbatched_legs(waiting, limit=2 * size).values_list("pk", "trade_id", "asset_id"))
    by_trade: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for pk, trade_id, asset_id in legs:
        by_trade[trade_id].append((pk, asset_id))
    assets = Asset.objects.in_bulk({asset_id for _, _, asset_id in legs})
    per_chain: dict[str, list[int]] = defaultdict(list)  # chain -> leg ids, trades in pk order
    trades_of: dict[str, int] = defaultdict(int)
    for trade_id in sorted(by_trade):
        pair = by_trade[trade_id]
        if len(pair) != 2:  # the other leg is held elsewhere right now: next round
            continue
        chains = {assets[a].chain for _, a in pair if on_chain(assets[a])}
        if len(chains) != 1:
            formed.skipped.append(trade_id)
            continue
        chain = chains.pop()
        per_chain[chain].extend(pk for pk, _ in pair)
        trades_of[chain] += 1
    claimed = 0
    for chain in sorted(per_chain):
        leg_ids = per_chain[chain]
        for start in range(0, len(leg_ids), 2 * size):
            chunk = leg_ids[start : start + 2 * size]
            (batch,) = bulk_create_with_history(
                [CryptoBatch(chain=chain, size=len(chunk) // 2, status=BatchStatus.OPEN)],
                CryptoBatch,
                default_change_reason="formed",
            )
            SettlementInstruction.objects.filter(pk__in=chunk, batch__isnull=True).update(batch=batch)
            formed.batches.append(batch.pk)
            claimed += len(chunk) // 2
    formed.trades += claimed
    return len(by_trade)


def batch_assets(batch: CryptoBatch) -> list[Asset]:
    """The distinct assets a batch's legs move, in one query (not one row per leg)."""
    return list(Asset.objects.filter(pk__in=SettlementInstruction.objects.filter(batch=batch).values("asset_id")))


def stuck_batches(*, older_than_seconds: int, limit: int = 1000) -> list[int]:
    """Batches not done whose row has not moved for a while (a lost task, a killed worker)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        CryptoBatch.objects.filter(updated_at__lt=cutoff)
        .exclude(status=BatchStatus.DONE)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
