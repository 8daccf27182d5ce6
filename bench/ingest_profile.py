#!/usr/bin/env python
"""Where an ingest batch spends its time, in-process (no HTTP server, no client threads).

    .venv/bin/python bench/ingest_profile.py --trades 20000 --batch 5000 --participants 200

Same database shape and request bodies as ``bench/ingest.py`` (scratch database, seeded, queue-only
redis-server of its own, tasks not inline), but each batch is POSTed through DRF's test client in
this process, one after the other, and its wall time is split into:

- ``before``: everything before the view hands the validated batch to ``trades_ingest``
  (authentication, JSON parsing, permission checks, lookups, validation of every row);
- ``db``: ``trades_ingest`` up to the commit (idempotency read, accounts, windows, the writes);
- ``commit``: the COMMIT itself (deferred foreign-key checks run here);
- ``dispatch``: the on-commit hand-over of the crypto T+0 trades to the broker;
- ``after``: building and rendering the response.

Per-batch figures are less sensitive to a loaded machine than a throughput over HTTP. With
``--cprofile N`` it also prints the top N functions (cumulative) of the last batch.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import children, scratch_database, scratch_redis  # noqa: E402
from bench.ingest import prepare  # noqa: E402

PHASES = ("before", "db", "commit", "dispatch", "after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_profile")
    parser.add_argument("--cprofile", type=int, default=0, help="print the top N functions of the last batch")
    args = parser.parse_args()
    with children() as kids:
        broker = scratch_redis(kids)
        scratch_database(
            server=args.server, db=args.db, env={"CELERY_BROKER_URL": broker, "CELERY_TASK_ALWAYS_EAGER": "0"}
        )
        print(f"broker: own redis-server at {broker}, no worker (queue-only)")
        token, bodies = prepare(participants=args.participants, trades=args.trades, batch=args.batch)
        last = len(bodies) - 1
        rows = [profile_batch(token, body, profile=args.cprofile if n == last else 0) for n, body in enumerate(bodies)]
    print(f"{len(bodies)} batches of {args.batch} trades, seconds per batch (first batch creates accounts):")
    print("batch " + " ".join(f"{p:>9}" for p in (*PHASES, "total")))
    for n, row in enumerate(rows):
        print(f"{n:>5} " + " ".join(f"{row[p]:9.3f}" for p in (*PHASES, "total")))
    warm = rows[1:] or rows
    print("median" + " ".join(f"{statistics.median(r[p] for r in warm):9.3f}" for p in (*PHASES, "total")))
    total = statistics.median(r["total"] for r in warm)
    print(f"in-process: {args.batch / total:,.0f} trades/s per batch (one process, median of the warm batches)")


def profile_batch(token: str, body: bytes, *, profile: int) -> dict[str, float]:
    from django.db.backends.postgresql.base import DatabaseWrapper
    from rest_framework.test import APIClient

    from settlement.api import views
    from settlement.services import trades

    spent: dict[str, float] = defaultdict(float)
    marks: dict[str, float] = {}

    def timed(phase: str, function):
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[phase] += time.perf_counter() - began

        return wrapper

    original_ingest = views.trades_ingest

    def ingest(*args, **kwargs):
        marks["ingest_in"] = time.perf_counter()
        try:
            return original_ingest(*args, **kwargs)
        finally:
            marks["ingest_out"] = time.perf_counter()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    profiler = cProfile.Profile() if profile else None
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(views, "trades_ingest", ingest))
        stack.enter_context(mock.patch.object(DatabaseWrapper, "commit", timed("commit", DatabaseWrapper.commit)))
        stack.enter_context(
            mock.patch.object(trades, "dispatch_crypto_trades", timed("dispatch", trades.dispatch_crypto_trades))
        )
        began = time.perf_counter()
        if profiler:
            profiler.enable()
        response = client.post("/api/v1/trades/", body, content_type="application/json")
        if profiler:
            profiler.disable()
        ended = time.perf_counter()
    if response.status_code != 201:
        raise SystemExit(f"batch refused: {response.status_code} {response.content[:500]!r}")
    inside = marks["ingest_out"] - marks["ingest_in"]
    row = {
        "before": marks["ingest_in"] - began,
        "db": inside - spent["commit"] - spent["dispatch"],
        "commit": spent["commit"],
        "dispatch": spent["dispatch"],
        "after": ended - marks["ingest_out"],
        "total": ended - began,
    }
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(profile)
    return row


if __name__ == "__main__":
    main()
