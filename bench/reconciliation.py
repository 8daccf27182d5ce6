#!/usr/bin/env python
"""Reconciliation benchmark: N internal expectations against N external lines (1% of them
broken: amount off, missing, unexpected, duplicated, a quarter each) in one run.

    .venv/bin/python bench/reconciliation.py --records 1000000

Creates a scratch database (default `clearhouse_bench_recon`, dropped first), generates the
records with INSERT ... SELECT (untimed), then times `reconciliation_run` (the snapshot of the
rails finds nothing to add here) and checks the breaks found are exactly the injected ones.
Prints seconds, breaks by kind, and peak memory of this process and of its PostgreSQL backend.
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

# i mod 400: 0 = amount off by 0.02, 1 = missing, 2 = duplicated, 3 = an unexpected line beside it
_INTERNAL_SQL = """
INSERT INTO reconciliation_internalrecord
    (natural_key, rail, reference, account, counterparty, asset_code, amount, value_date, state, since, due_at,
     updated_at)
SELECT 'bench:' || i, 'bank', 'R' || i, %(account)s, '', 'USD', ((i %% 9973) + 1) * 1.25, CURRENT_DATE, 'settled',
       now() - interval '1 day', now() - interval '6 hours', now()
FROM generate_series(1, %(n)s) AS i
"""

_FILE_SQL = """
INSERT INTO reconciliation_importedfile
    (source, name, sha256, content, records, repeated, imported_at, imported_by_label)
VALUES ('camt053', 'bench statement', md5(random()::text), '', 0, 0, now(), 'bench') RETURNING id
"""

_EXTERNAL_SQL = """
INSERT INTO reconciliation_externalrecord
    (source, natural_key, file_id, line, reference, account, counterparty, asset_code, amount, charges,
     charges_included, value_date, status, reason_code, detail)
SELECT 'camt053', %(account)s || ':E' || i || ':' || k, %(file)s, i, ref, %(account)s, '', 'USD', amount - charges,
       charges, charges > 0, CURRENT_DATE, 'BOOK', '', '{}'::jsonb
FROM (
    SELECT i, 1 AS k, 'R' || i AS ref,
           ((i %% 9973) + 1) * 1.25 + CASE WHEN i %% 400 = 0 THEN 0.02 ELSE 0 END AS amount,
           -- one booking in 1,000 arrives less bank charges the entry includes (matched all the same)
           CASE WHEN i %% 1000 = 500 THEN 0.50 ELSE 0 END AS charges
    FROM generate_series(1, %(n)s) AS i WHERE i %% 400 <> 1
    UNION ALL  -- the second entry of a duplicated booking
    SELECT i, 2, 'R' || i, ((i %% 9973) + 1) * 1.25, 0 FROM generate_series(1, %(n)s) AS i WHERE i %% 400 = 2
    UNION ALL  -- a credit nobody expected
    SELECT i, 3, 'X' || i, 999999.99, 0 FROM generate_series(1, %(n)s) AS i WHERE i %% 400 = 3
) lines
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_recon")
    args = parser.parse_args()

    scratch_database(server=args.server, db=args.db)
    from django.conf import settings
    from django.db import connection

    from common.actors import SystemActor
    from reconciliation.engine import reconciliation_run
    from reconciliation.models import Break

    account = settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS["USD"]["account"]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(_INTERNAL_SQL, {"n": args.records, "account": account})
        cursor.execute(_FILE_SQL)
        (file_id,) = cursor.fetchone()
        cursor.execute(_EXTERNAL_SQL, {"n": args.records, "account": account, "file": file_id})
        cursor.execute("ANALYZE reconciliation_internalrecord")
        cursor.execute("ANALYZE reconciliation_externalrecord")
        cursor.execute("SELECT COUNT(*) FROM reconciliation_externalrecord")
        (external,) = cursor.fetchone()
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    print(
        f"generated {args.records:,} internal and {external:,} external records "
        f"in {time.perf_counter() - started:.1f} s (untimed)"
    )

    started = time.perf_counter()
    run = reconciliation_run(actor=SystemActor("bench"))
    seconds = time.perf_counter() - started
    per_kind = run.totals["breaks"]
    residues = {"amount": 0, "missing": 1, "duplicate": 2, "unexpected": 3}
    expected = {kind: args.records // 400 + (1 if r and args.records % 400 >= r else 0) for kind, r in residues.items()}
    print(
        f"run {run.pk}: {seconds:.1f} s; matched {run.totals['matched']:,}; breaks {per_kind} "
        f"({'exactly the injected ones' if per_kind == expected else f'EXPECTED {expected}'}); "
        f"{Break.objects.count():,} break rows; python peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; postgres backend peak "
        f"{backend_peak(backend)}"
    )
    started = time.perf_counter()
    again = reconciliation_run(actor=SystemActor("bench"))
    print(
        f"second run of the same state {again.pk}: {time.perf_counter() - started:.1f} s; "
        f"break rows still {Break.objects.count():,}"
    )


if __name__ == "__main__":
    main()
