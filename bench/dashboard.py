#!/usr/bin/env python
"""Dashboard benchmark: the operations dashboard rendered with N settlement instructions in
the database (target: under 500 ms with 1,000,000).

    .venv/bin/python bench/dashboard.py --instructions 1000000

Creates a scratch database (default `clearhouse_bench_dashboard`), writes N/2 trades and N
instructions with INSERT ... SELECT (untimed; statuses spread like a busy day: mostly settled,
some failed, a tail in flight, updated over the last two days), VACUUM ANALYZE, then renders
/admin/dashboard/ as a logged-in operator through Django's test client (view, queries and
template) and prints the timings and the number of SQL queries.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import percentile, scratch_database  # noqa: E402

_TRADES_SQL = """
INSERT INTO settlement_trade
    (source, external_id, instrument_id, buyer_id, seller_id, quantity, price, notional, executed_at,
     settlement_date, payload_hash, received_at)
SELECT 'bench', 'B' || i, %(instrument)s, %(buyer)s, %(seller)s, 1, 100, 100, now(), CURRENT_DATE, md5(i::text), now()
FROM generate_series(1, %(n)s) AS i
"""

# i mod 100: 0-1 failed, 2-4 in flight (pending/locked/processing), 5 reversed, the rest settled
_INSTRUCTIONS_SQL = """
INSERT INTO settlement_settlementinstruction
    (trade_id, leg, asset_id, payer_id, payee_id, amount, settlement_date, status, attempt, failure_reason,
     created_at, updated_at)
SELECT t.id, leg.name, CASE WHEN leg.name = 'delivery' THEN %(base)s ELSE %(quote)s END,
       CASE WHEN leg.name = 'delivery' THEN %(seller)s ELSE %(buyer)s END,
       CASE WHEN leg.name = 'delivery' THEN %(buyer)s ELSE %(seller)s END,
       100, CURRENT_DATE,
       CASE WHEN t.id %% 100 < 2 THEN 'failed' WHEN t.id %% 100 = 2 THEN 'pending'
            WHEN t.id %% 100 = 3 THEN 'locked' WHEN t.id %% 100 = 4 THEN 'processing'
            WHEN t.id %% 100 = 5 THEN 'reversed' ELSE 'settled' END,
       1, CASE WHEN t.id %% 100 < 2 THEN 'insufficient funds (' || (t.id %% 7) || ')' ELSE '' END,
       now() - interval '2 days', now() - (t.id %% %(spread)s) * interval '1 minute'
FROM settlement_trade t CROSS JOIN (VALUES ('delivery'), ('payment')) AS leg(name)
"""


def seed_instructions(n: int, *, spread_minutes: int = 2880) -> int:
    """N instructions (N/2 trades) of a busy day, updated over the last ``spread_minutes``,
    written set-based; returns the count."""
    from django.db import connection

    from common.choices import AssetKind, MarketCalendar
    from reference.models import Asset, Instrument, Participant

    usd = Asset.objects.create(code="USD", name="US dollar", kind=AssetKind.FIAT, precision=2)
    btc = Asset.objects.create(
        code="BTC", name="Bitcoin", kind=AssetKind.CRYPTO, precision=8, calendar=MarketCalendar.ALWAYS
    )
    instrument = Instrument.objects.create(symbol="BTC/USD", base=btc, quote=usd, price_precision=2)
    buyer = Participant.objects.create(code="BUY", name="Buyer")
    seller = Participant.objects.create(code="SELL", name="Seller")
    params = {
        "n": n // 2,
        "instrument": instrument.pk,
        "buyer": buyer.pk,
        "seller": seller.pk,
        "base": btc.pk,
        "quote": usd.pk,
        "spread": max(1, spread_minutes),
    }
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(_TRADES_SQL, params)
        cursor.execute(_INSTRUCTIONS_SQL, params)
        cursor.execute("SELECT COUNT(*) FROM settlement_settlementinstruction")
        (count,) = cursor.fetchone()
    with connection.cursor() as cursor:  # outside a transaction: autocommit
        cursor.execute("VACUUM ANALYZE settlement_settlementinstruction")
    print(f"generated {count:,} instructions in {time.perf_counter() - started:.1f} s (untimed)")

    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instructions", type=int, default=1_000_000)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_dashboard")
    args = parser.parse_args()

    scratch_database(server=args.server, db=args.db, env={"ALLOWED_HOSTS": "testserver,localhost"})
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    count = seed_instructions(args.instructions)

    operator = User.objects.create_user("bench-ops", is_staff=True)
    operator.groups.set(Group.objects.filter(name="operator"))
    client = Client()
    client.force_login(operator)
    timings = []
    for _ in range(args.renders):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get("/admin/dashboard/")
            timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"dashboard answered {response.status_code}")
    if f'id="total">{count}<' not in response.content.decode():
        raise SystemExit("the dashboard does not show the total")
    print(
        f"dashboard with {count:,} instructions: first {timings[0]:.0f} ms, p50 {statistics.median(timings):.0f} ms, "
        f"p95 {percentile(timings, 95):.0f} ms, max {max(timings):.0f} ms over {args.renders} renders; "
        f"{len(queries)} SQL queries per render"
    )


if __name__ == "__main__":
    main()
