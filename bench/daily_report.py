#!/usr/bin/env python
"""Daily report benchmark: the end-of-day settlement report over N instructions of one day
(target: under 10 s with 1,000,000).

    .venv/bin/python bench/daily_report.py --instructions 1000000

Creates a scratch database (default `clearhouse_bench_report`), writes N instructions updated
today (mostly settled, 2% failed with a reason, a tail in flight) and a fee charge for every
settled cash leg, all set-based and untimed, then times `daily_report_build` for today and
prints the seconds and the report's headline figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch_database  # noqa: E402
from bench.dashboard import seed_instructions  # noqa: E402

_FEES_SQL = """
INSERT INTO settlement_feecharge
    (instruction_id, attempt, kind, party, participant_id, asset_id, value, bps, from_bps, limited, flat, fee, status,
     cost_source, external_key, created_at, posted_at)
SELECT i.id, 1, 'schedule', 'payer', i.payer_id, i.asset_id, i.amount, 10, i.amount * 0.001, '', 0, 0.10, 'posted',
       '', '', i.updated_at, i.updated_at
FROM settlement_settlementinstruction i WHERE i.status = 'settled' AND i.leg = 'payment'
UNION ALL  -- every tenth also passes on a cost (gas, bank charges)
SELECT i.id, 1, 'pass_through', 'payer', i.payer_id, i.asset_id, i.amount, 0, 0, '', 0, 0.02, 'posted',
       'bench', '', i.updated_at, i.updated_at
FROM settlement_settlementinstruction i WHERE i.status = 'settled' AND i.leg = 'payment' AND i.id % 10 = 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instructions", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_report")
    args = parser.parse_args()

    scratch_database(server=args.server, db=args.db)
    from django.db import connection

    from common.actors import SystemActor
    from ops.daily_report import daily_report_build

    now = datetime.now(UTC)
    minutes_today = now.hour * 60 + now.minute  # every instruction falls on today (UTC)
    count = seed_instructions(args.instructions, spread_minutes=minutes_today)
    with connection.cursor() as cursor:
        cursor.execute(_FEES_SQL)
        cursor.execute("ANALYZE settlement_feecharge")

    started = time.perf_counter()
    report = daily_report_build(day=now.date(), actor=SystemActor("bench"))
    seconds = time.perf_counter() - started
    f = report.figures
    print(
        f"daily report over {count:,} instructions: {seconds:.2f} s; settled {f['settled_count']:,}, "
        f"failed {f['failed_count']:,} ({len(f['failures'])} reasons), fees {f['fees']}"
    )


if __name__ == "__main__":
    main()
