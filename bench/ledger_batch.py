#!/usr/bin/env python
"""Ledger batch benchmark: ``ledger_lock_many``, ``ledger_post_many`` and ``ledger_void_many`` over N
holds in one transaction each, against the one-by-one loop (a savepoint and ``ledger_lock`` per hold).

Run by hand (not part of `make test`):

    .venv/bin/python bench/ledger_batch.py --holds 1000 --holds 5000
    .venv/bin/python bench/ledger_batch.py --row-trigger     # with the old deferred per-row balance trigger

A scratch database (default `clearhouse_bench_ledger`, dropped first) is migrated; P participants
are funded (not timed). Each step is timed from the call to its commit (the commit runs the
deferred checks) and printed in µs per hold, with its statement count. ``--row-trigger`` puts back
the per-row deferred balanced-journal trigger of settlement migration 0002 instead of the
per-statement one of ledger migration 0002, to compare.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_database  # noqa: E402

_ROW_TRIGGER = """
DROP TRIGGER IF EXISTS settlement_posting_balanced ON settlement_posting;
CREATE CONSTRAINT TRIGGER settlement_posting_balanced AFTER INSERT ON settlement_posting
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION clearhouse_journal_balanced();
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holds", type=int, action="append", help="batch sizes (repeatable)")
    parser.add_argument("--participants", type=int, default=500)
    parser.add_argument("--loop-max", type=int, default=1000, help="largest size also run one by one")
    parser.add_argument("--row-trigger", action="store_true", help="the old per-row deferred balance trigger")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_ledger")
    args = parser.parse_args()
    sizes = args.holds or [1000, 5000]

    scratch_database(server=args.server, db=args.db, env={"CELERY_BROKER_URL": "memory://"})
    from django.db import connection, transaction
    from django.utils import timezone

    from common.actors import SystemActor
    from common.choices import AccountKind
    from ledger.services.batch import HoldRequest, PostRequest, ledger_lock_many, ledger_post_many, ledger_void_many
    from ledger.services.ledger import account_for, accounts_ensure, ledger_deposit, ledger_lock
    from reference.models import Asset, Participant

    if args.row_trigger:
        with connection.cursor() as cursor:
            cursor.execute(_ROW_TRIGGER)
    actor = SystemActor("bench")
    usd = Asset.objects.create(code="USD", name="USD", kind="fiat", precision=2, settlement_cycle=1)
    people = Participant.objects.bulk_create(
        [Participant(code=f"L{n:04d}", name=f"Ledger bench {n}") for n in range(args.participants)]
    )
    accounts_ensure(pairs=[(p.pk, usd.pk) for p in people])
    with transaction.atomic():
        for p in people:
            ledger_deposit(owner=p, asset=usd, amount=Decimal(10**9), reference=f"fund-{p.code}", actor=actor)
    payee = account_for(owner=people[0], asset=usd, kind=AccountKind.AVAILABLE)
    expires = timezone.now() + timedelta(days=1)
    trigger = "per-row deferred" if args.row_trigger else "per-statement"
    print(f"participants={args.participants}, balanced-journal trigger: {trigger}")

    def timed(label: str, size: int, run):
        count = [0]

        def counting(execute, sql, params, many, context):
            count[0] += 1
            return execute(sql, params, many, context)

        started = time.perf_counter()
        with connection.execute_wrapper(counting), transaction.atomic():
            result = run()
        seconds = time.perf_counter() - started
        print(
            f"  {label:<28} {size:>6,} holds: {seconds:7.3f} s, "
            f"{seconds / size * 1e6:8.1f} µs/hold, {count[0]} statements"
        )
        return result

    by_id = {p.pk: p for p in people}
    for round_, size in enumerate(sizes):
        requests = [
            HoldRequest(
                group=n,
                owner_id=people[n % len(people)].pk,
                asset_id=usd.pk,
                amount=Decimal("1.25"),
                reference=f"b{round_}-{n}",
                expires_at=expires,
            )
            for n in range(size)
        ]
        outcome = timed(
            "ledger_lock_many", size, lambda requests=requests: ledger_lock_many(requests=requests, actor=actor)
        )
        locks = [outcome.locks[r.reference] for r in requests]
        half = size // 2
        posts = [PostRequest(lock=lock, to_account_id=payee.pk, amount=Decimal("1.00")) for lock in locks[:half]]
        timed("ledger_post_many (partial)", half, lambda posts=posts: ledger_post_many(requests=posts, actor=actor))
        voids = locks[half:]
        timed(
            "ledger_void_many",
            size - half,
            lambda voids=voids: ledger_void_many(locks=voids, actor=actor, reason="bench"),
        )
        if size <= args.loop_max:

            def one_by_one(round_: int = round_, requests: list[HoldRequest] = requests) -> None:
                for r in requests:
                    with transaction.atomic():
                        ledger_lock(
                            owner=by_id[r.owner_id],
                            asset=usd,
                            amount=r.amount,
                            reference=f"o{round_}-{r.group}",
                            actor=actor,
                            expires_at=r.expires_at,
                        )

            timed("ledger_lock one by one", size, one_by_one)


if __name__ == "__main__":
    main()
