#!/usr/bin/env python
"""Transition-log append benchmark: one transaction appends N entries (as the batch engine does)
and the bench times the whole append and how long the chain head row stays locked.

    .venv/bin/python bench/audit_append.py --entries 5000 --rounds 5

Creates a scratch database (default `clearhouse_bench_audit`), then per round: opens a
transaction, appends N entries inside ``transition_log_deferred`` and commits. "append" is the
time from the end of the caller's work to the end of the append; "head held" runs from the
statement that takes the head row to the end of the commit (the head lock is released there);
"commit" is the COMMIT itself. ``--user`` makes the actor a user (a foreign key per entry).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_database  # noqa: E402


def _head_watch(marks: dict[str, float]) -> Callable[..., Any]:
    """A database execute wrapper that notes when the first statement touching the head runs."""

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if "head" not in marks and "settlement_transitionloghead" in sql:
            marks["head"] = time.perf_counter()
        return execute(sql, params, many, context)

    return wrapper


def one_round(*, entries: int, actor: Any, offset: int) -> dict[str, float]:
    from django.db import connection, transaction

    from ledger.services.audit import LogEntry, transition_log_append, transition_log_deferred

    batch = [
        LogEntry("instruction", offset + n, "processing", "settled", "bench", {"batch": offset, "n": n})
        for n in range(entries)
    ]
    marks: dict[str, float] = {}
    with connection.execute_wrapper(_head_watch(marks)):
        atomic = transaction.atomic()
        atomic.__enter__()
        start = time.perf_counter()
        with transition_log_deferred():
            transition_log_append(entries=batch, actor=actor)
        appended = time.perf_counter()
        atomic.__exit__(None, None, None)
        done = time.perf_counter()
    return {
        "append": appended - start,
        "head held": done - marks["head"],
        "commit": done - appended,
        "total": done - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_audit")
    parser.add_argument("--user", action="store_true", help="a user actor (one foreign key per entry)")
    args = parser.parse_args()
    scratch_database(server=args.server, db=args.db)

    from django.contrib.auth.models import User

    from common.actors import SystemActor
    from ledger.services.audit import transition_log_verify

    actor: Any = User.objects.create(username="bench") if args.user else SystemActor("bench")
    one_round(entries=10, actor=actor, offset=0)  # warm up (connection, statements)
    results = [one_round(entries=args.entries, actor=actor, offset=(r + 1) * args.entries) for r in range(args.rounds)]
    print(f"{args.entries} entries per transaction, {args.rounds} rounds, actor={'user' if args.user else 'system'}")
    for name in ("append", "head held", "commit", "total"):
        values = [r[name] * 1000 for r in results]
        print(
            f"  {name:10s} median {statistics.median(values):8.2f} ms   min {min(values):8.2f}   max {max(values):8.2f}"
        )
    start = time.perf_counter()
    report = transition_log_verify()
    print(f"  verify: {report.checked} entries, ok={report.ok}, {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
