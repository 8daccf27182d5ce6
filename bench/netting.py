#!/usr/bin/env python
"""Netting benchmark: close a window holding N trades (2N legs) over P participants and A assets.

Run by hand (not part of `make test`):

    .venv/bin/python bench/netting.py --trades 100000 --trades 1000000

For each size it creates the legs in a fresh window of a scratch database (default
`clearhouse_bench_netting`, dropped first) with one set-based INSERT ... SELECT (data generation is
not timed), then times `window_close` (net obligations, plan totals, caps) and prints seconds per
window, obligations, the reduction gross legs -> net payments, and peak memory of this process
and of the PostgreSQL backend that did the work.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import backend_peak, scratch_database  # noqa: E402

_TRADES_SQL = """
INSERT INTO settlement_trade (source, external_id, instrument_id, buyer_id, seller_id, quantity, price, notional,
                              executed_at, settlement_date, payload_hash, received_at)
SELECT 'bench', %(prefix)s || g, ins[1 + (g %% array_length(ins, 1))],
       p[1 + (g %% np)], p[1 + ((g + 1 + (g / np) %% (np - 1)) %% np)],
       1 + (g %% 97), 10.25, (1 + (g %% 97)) * 10.25, now(), current_date + 1, '', now()
FROM generate_series(1, %(n)s) AS g,
     (SELECT array_agg(id ORDER BY id) AS p, count(*) AS np FROM settlement_participant WHERE code LIKE 'N%%') AS ps,
     (SELECT array_agg(id ORDER BY id) AS ins FROM settlement_instrument WHERE symbol LIKE 'NB%%') AS i
"""

_LEGS_SQL = """
INSERT INTO settlement_settlementinstruction (trade_id, leg, asset_id, payer_id, payee_id, amount, settlement_date,
    status, attempt, failure_reason, created_at, updated_at, netting_window_id)
SELECT t.id, 'delivery', i.base_id, t.seller_id, t.buyer_id, t.quantity, t.settlement_date, 'pending', 1, '',
       now(), now(), %(window)s
FROM settlement_trade t JOIN settlement_instrument i ON i.id = t.instrument_id WHERE t.external_id LIKE %(like)s
UNION ALL
SELECT t.id, 'payment', i.quote_id, t.buyer_id, t.seller_id, t.notional, t.settlement_date, 'pending', 1, '',
       now(), now(), %(window)s
FROM settlement_trade t JOIN settlement_instrument i ON i.id = t.instrument_id WHERE t.external_id LIKE %(like)s
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, action="append", help="window sizes (repeatable)")
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--assets", type=int, default=50)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_netting")
    parser.add_argument("--profile", action="store_true", help="print the slowest SQL statements of each close")
    args = parser.parse_args()
    sizes = args.trades or [100_000, 1_000_000]

    # A broker that only queues: closing dispatches the plan's pay-ins after commit, and the bench
    # times the close itself (obligations, totals, the plan), not the payments that follow.
    scratch_database(
        server=args.server, db=args.db, env={"CELERY_BROKER_URL": "memory://", "CELERY_TASK_ALWAYS_EAGER": "0"}
    )
    from django.db import connection, transaction
    from django.utils import timezone

    from common.choices import AssetKind
    from netting.models import NetObligation, NettingWindow
    from netting.services import window_close
    from reference.models import Asset, Instrument, Participant

    # 50 assets: 10 currencies and 40 securities; instruments pair each security with a currency
    currencies = [
        Asset.objects.create(code=f"C{n:02d}", name=f"Cur {n}", kind=AssetKind.FIAT, precision=2, settlement_cycle=1)
        for n in range(10)
    ]
    securities = [
        Asset.objects.create(
            code=f"S{n:02d}", name=f"Sec {n}", kind=AssetKind.SECURITY, precision=0, settlement_cycle=2
        )
        for n in range(args.assets - len(currencies))
    ]
    for n, security in enumerate(securities):
        Instrument.objects.create(
            symbol=f"NB{n:02d}", base=security, quote=currencies[n % len(currencies)], price_precision=2
        )
    Participant.objects.bulk_create(
        [Participant(code=f"N{n:04d}", name=f"Netting bench {n}") for n in range(args.participants)]
    )

    print(f"participants={args.participants} assets={args.assets} (10 currencies, {len(securities)} securities)")
    for size in sizes:
        window = NettingWindow.objects.filter(asset_class="security", status="open").first()
        if window is None:
            now = timezone.now()
            window = NettingWindow.objects.create(asset_class="security", opened_at=now, closes_at=now)
        prefix = f"W{window.pk}-"
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(_TRADES_SQL, {"prefix": prefix, "n": size})
            cursor.execute(_LEGS_SQL, {"window": window.pk, "like": prefix + "%"})
            cursor.execute("ANALYZE settlement_settlementinstruction")
            cursor.execute("SELECT pg_backend_pid()")
            (backend,) = cursor.fetchone()
        generated = time.perf_counter() - started
        statements: list[tuple[float, str]] = []

        def timed(execute, sql, params, many, context, log=statements):
            began = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                log.append((time.perf_counter() - began, " ".join(sql.split())[:90]))

        started = time.perf_counter()
        with connection.execute_wrapper(timed), transaction.atomic():
            closed = window_close(window=window)
            work = time.perf_counter() - started
        seconds = time.perf_counter() - started
        obligations = NetObligation.objects.filter(window=closed).count()
        peak = backend_peak(backend)
        print(
            f"{size:>9,} trades ({closed.gross_legs:,} legs): window closed in {seconds:.2f} s; "
            f"{obligations:,} obligations, {closed.net_payments:,} net payments "
            f"(reduction {closed.reduction:.1%}); data generation {generated:.1f} s (untimed); "
            f"python peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
            f"postgres backend peak {peak}"
        )
        if args.profile:
            print(
                f"  {len(statements)} statements took {sum(t for t, _ in statements):.2f} s, the commit "
                f"(deferred foreign-key checks, on-commit enqueue) {seconds - work:.2f} s; the slowest:"
            )
            for took, sql in sorted(statements, reverse=True)[:6]:
                print(f"    {took:6.3f} s  {sql}")


if __name__ == "__main__":
    main()
