"""Enqueue pipeline work. Called from ``transaction.on_commit`` hooks, so a task never runs for
rows that were rolled back, and never before they are visible to the worker.

If the broker is down at that moment nothing is lost: the rows are committed and the beat
sweepers find them (pending trades, signed transfers; webhooks: ops.tasks) and dispatch again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.conf import settings

logger = logging.getLogger(__name__)


def _chunks(ids: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def dispatch_crypto_trades(trade_ids: Iterable[int]) -> None:
    from settlement.tasks import crypto_advance_task

    ids = sorted(set(trade_ids))
    if ids and settings.CLEARHOUSE_CRYPTO_ENGINE == "batch":
        from settlement.batch_tasks import crypto_batch_form_task
        from settlement.crypto.batch_form import trades_split

        batched, ids = trades_split(ids)
        if batched:
            try:  # trades committed meanwhile join the same batch
                crypto_batch_form_task.apply_async(countdown=settings.CLEARHOUSE_BATCH_WAIT_MS / 1000)
            except Exception:  # broker unreachable: the sweeper forms the batch
                logger.exception("could not enqueue the batch former for trades %s..%s", batched[0], batched[-1])
    for chunk in _chunks(ids, settings.CLEARHOUSE_CRYPTO_BATCH):
        try:
            crypto_advance_task.delay(chunk)
        except Exception:  # broker unreachable: the sweeper will pick these trades up
            logger.exception("could not enqueue crypto settlement for trades %s..%s", chunk[0], chunk[-1])
