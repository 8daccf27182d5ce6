"""Enqueue netting's tasks by their names, after commit. The pipeline (``netting.pipeline``)
sends its work through here and never imports ``netting.tasks``, which imports the pipeline: the
task modules are looked up in Celery's registry (loaded there as a worker loads them when the
calling process has not imported them yet), so a task still runs inline under
``CELERY_TASK_ALWAYS_EAGER`` exactly as a direct ``.delay`` would.

A lost enqueue (broker unreachable) loses nothing: the rows are committed and the beat sweeper
(``netted_sweep``) finds them and dispatches them again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

NETTED_ADVANCE = "netting.tasks.netted_advance_task"
PLAN_START = "netting.tasks.plan_start_task"
REPORTS_APPLY = "netting.tasks.reports_apply_task"


def task_named(name: str) -> Any:
    """The registered Celery task ``name`` (its module imported through the app's loader the
    first time, as a worker does at start)."""
    app = current_app
    if name not in app.tasks:
        app.loader.import_default_modules()
    return app.tasks[name]


def enqueue(name: str, *args: Any) -> None:
    """``task.delay(*args)`` of the task named ``name``; raises what the broker raises."""
    task_named(name).delay(*args)


def dispatch_netted(ids: Iterable[int]) -> None:
    """Enqueue work on netted instructions (called after commit; the sweeper covers a lost enqueue)."""
    ids = sorted(set(ids))
    size = settings.CLEARHOUSE_CRYPTO_BATCH
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        try:
            enqueue(NETTED_ADVANCE, chunk)
        except Exception:  # broker unreachable: the sweeper picks them up
            logger.exception("could not enqueue netted instructions %s..%s", chunk[0], chunk[-1])


def dispatch_netted_after_commit(ids: list[int]) -> None:
    if ids:
        transaction.on_commit(partial(dispatch_netted, ids))


def plan_start_enqueue(window_id: int) -> None:
    try:
        enqueue(PLAN_START, window_id)
    except Exception:  # broker unreachable: the sweeper finds the pending instructions
        logger.exception("could not enqueue the start of window %s's plan", window_id)
