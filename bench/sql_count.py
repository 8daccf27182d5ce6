#!/usr/bin/env python
"""Count the SQL a bench's measured phase sends, at the driver (psycopg), for any checkout.

    .venv/bin/python bench/sql_count.py [--stats FILE] [--top N] bench/fiat_settlement.py --profile ...

Runs the bench script in this process. The phase a ``--profile`` bench runs under cProfile (from
``Profile.enable`` to ``Profile.disable``: for the fiat bench, window close to the last settled
payment, every task run inline) is the one counted: statements (savepoints apart), explicit
commits, statements run in autocommit (each its own transaction) and the most frequent statement
templates (Django binds parameters client-side, so a template is one query shape). ``--stats``
keeps the cProfile data for ``pstats``. It patches the driver, not the project, so the same
counter measures an old commit's checkout and today's.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import re
import runpy
import sys
from collections import Counter
from pathlib import Path

import psycopg


class Tally:
    def __init__(self) -> None:
        self.active = False
        self.statements = 0
        self.savepoints = 0
        self.commits = 0
        self.rollbacks = 0
        self.autocommit = 0
        self.shapes: Counter[str] = Counter()

    def statement(self, cursor: psycopg.Cursor, query: object) -> None:
        if not self.active:
            return
        text = query.decode() if isinstance(query, bytes) else str(query)
        head = text.lstrip()[:20].upper()
        if head.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
            self.savepoints += 1
            return
        self.statements += 1
        if cursor.connection.autocommit:
            self.autocommit += 1
        self.shapes[_shape(text)] += 1


def _shape(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"IN \((%s, )*%s\)", "IN (...)", text)
    text = re.sub(r"VALUES (\([^)]*\), )+\([^)]*\)", "VALUES (...)", text)
    return text[:230]


TALLY = Tally()


def _patch() -> None:
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback

    def counted_execute(self, query, params=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        TALLY.statement(self, query)
        return execute(self, query, params, *args, **kwargs)

    def counted_executemany(self, query, params_seq, *args, **kwargs):  # type: ignore[no-untyped-def]
        TALLY.statement(self, query)
        return executemany(self, query, params_seq, *args, **kwargs)

    def counted_commit(self):  # type: ignore[no-untyped-def]
        if TALLY.active:
            TALLY.commits += 1
        return commit(self)

    def counted_rollback(self):  # type: ignore[no-untyped-def]
        if TALLY.active:
            TALLY.rollbacks += 1
        return rollback(self)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counted_executemany  # type: ignore[method-assign]
    psycopg.Connection.commit = counted_commit  # type: ignore[method-assign]
    psycopg.Connection.rollback = counted_rollback  # type: ignore[method-assign]

    enable, disable = cProfile.Profile.enable, cProfile.Profile.disable
    profiles: list[cProfile.Profile] = []

    def counted_enable(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        TALLY.active = True
        profiles.append(self)
        return enable(self, *args, **kwargs)

    def counted_disable(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        TALLY.active = False
        return disable(self, *args, **kwargs)

    cProfile.Profile.enable = counted_enable  # type: ignore[method-assign]
    cProfile.Profile.disable = counted_disable  # type: ignore[method-assign]
    return profiles


def _report(top: int, payments_sql: str | None) -> None:
    t = TALLY
    print("\n--- SQL sent in the profiled phase (bench/sql_count.py) ---")
    print(
        f"statements {t.statements} (+ {t.savepoints} savepoint statements), explicit commits {t.commits}, "
        f"rollbacks {t.rollbacks}, statements in autocommit {t.autocommit}"
    )
    payments = 0
    if payments_sql:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(payments_sql)
            payments = cursor.fetchone()[0]
    if payments:
        transactions = t.commits + t.autocommit
        print(
            f"per net payment ({payments}): {t.statements / payments:.1f} statements, "
            f"{t.savepoints / payments:.1f} savepoint statements, {transactions / payments:.2f} transactions "
            f"({t.commits / payments:.2f} commits + {t.autocommit / payments:.2f} autocommit statements)"
        )
    for shape, n in t.shapes.most_common(top):
        per = f" ({n / payments:.2f}/payment)" if payments else ""
        print(f"{n:8d}{per}  {shape}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stats", help="write the cProfile data here")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--payments-sql",
        default="SELECT COUNT(*) FROM netting_nettedinstruction WHERE status = 'settled'",
        help="how many items the counts are divided by",
    )
    parser.add_argument("script")
    args, rest = parser.parse_known_args()
    profiles = _patch()

    def at_exit() -> None:
        _report(args.top, args.payments_sql)
        if args.stats and profiles:
            profiles[-1].dump_stats(args.stats)

    atexit.register(at_exit)
    script = Path(args.script).resolve()
    sys.argv = [str(script), *rest]
    sys.path.insert(0, str(script.parent.parent))
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
