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
    for chunk in _chunks(ids, settings.CLEARHOUSE_CRYPTO_BATCH):
        try:
            crypto_advance_task.delay(chunk)
        except Exception:  # broker unreachable: the sweeper will pick these trades up
            logger.exception("could not enqueue crypto settlement for trades %s..%s", chunk[0], chunk[-1])
