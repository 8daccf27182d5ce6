"""Ledger integrity: every balance equals the sum of its postings.

``journal_write`` changes a balance only together with the postings that explain it, and the
database refuses unbalanced journals and edits of postings. This check catches what those guards
cannot see: a balance changed outside the ledger services (a manual UPDATE, a restore of one
table, a bug in a set-based path). It runs hourly (beat) and alerts; ``manage.py
ledger_verify_balances`` runs it on demand. Set-based: three aggregate queries, one snapshot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection, transaction

from common.choices import AlertLevel
from common.ports import ops_alert

BALANCE_MISMATCH_SQL = """
SELECT a.id, a.balance, COALESCE(p.total, 0)
  FROM settlement_ledgeraccount a
  LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM settlement_posting GROUP BY account_id) p
         ON p.account_id = a.id
 WHERE a.balance <> COALESCE(p.total, 0)
 ORDER BY a.id
 LIMIT %s
"""
UNBALANCED_JOURNALS_SQL = """
SELECT journal_id, asset_id, SUM(amount)
  FROM settlement_posting
 GROUP BY journal_id, asset_id
HAVING SUM(amount) <> 0
 ORDER BY journal_id, asset_id
 LIMIT %s
"""
FOREIGN_ASSET_SQL = """
SELECT p.id, p.account_id
  FROM settlement_posting p JOIN settlement_ledgeraccount a ON a.id = p.account_id
 WHERE p.asset_id <> a.asset_id
 ORDER BY p.id
 LIMIT %s
"""
ACCOUNTS_SQL = "SELECT COUNT(*) FROM settlement_ledgeraccount"


@dataclass
class LedgerReport:
    accounts: int = 0
    # (account id, balance, sum of postings)
    mismatches: list[tuple[int, Decimal, Decimal]] = field(default_factory=list)
    # (journal id, asset id, sum)
    unbalanced: list[tuple[int, int, Decimal]] = field(default_factory=list)
    # (posting id, account id)
    foreign_asset: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.mismatches or self.unbalanced or self.foreign_asset)

    def problems(self) -> list[str]:
        return (
            [
                f"account {pk}: balance {balance} but its postings sum to {posted}"
                for pk, balance, posted in self.mismatches
            ]
            + [f"journal {pk}: asset {asset} postings sum to {total}, not 0" for pk, asset, total in self.unbalanced]
            + [f"posting {pk}: asset differs from its account {account}'s" for pk, account in self.foreign_asset]
        )


def ledger_verify_balances(*, limit: int = 100) -> LedgerReport:
    """Compare every account's balance with the sum of its postings (and re-check that journals
    balance and postings match their account's asset), in one REPEATABLE READ snapshot so a
    journal committing meanwhile is seen whole or not at all. Reads only."""
    report = LedgerReport()
    outermost = not connection.in_atomic_block  # inside a caller's transaction, the snapshot is the caller's
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute(ACCOUNTS_SQL)
        report.accounts = cursor.fetchone()[0]
        cursor.execute(BALANCE_MISMATCH_SQL, [limit])
        report.mismatches = [(pk, Decimal(b), Decimal(p)) for pk, b, p in cursor.fetchall()]
        cursor.execute(UNBALANCED_JOURNALS_SQL, [limit])
        report.unbalanced = [(pk, asset, Decimal(total)) for pk, asset, total in cursor.fetchall()]
        cursor.execute(FOREIGN_ASSET_SQL, [limit])
        report.foreign_asset = list(cursor.fetchall())
    return report


def ledger_verify_balances_alert(*, report: LedgerReport) -> None:
    """One critical alert to operators and auditors per distinct set of problems."""
    problems = report.problems()
    if not problems:
        return
    ops_alert(
        title=f"Ledger integrity check FAILED ({len(problems)} problem(s))",
        body="\n".join(problems[:50]),
        level=AlertLevel.CRITICAL,
        roles=("operator", "auditor"),
        dedupe_key="ledger-integrity:" + hashlib.sha256("\n".join(problems).encode()).hexdigest()[:32],
    )
