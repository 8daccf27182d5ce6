"""Run reports: the breaks CSV neutralises spreadsheet formulas in text that came from outside."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from reconciliation.models import Break, BreakKind, ReconciliationRun, Severity
from reconciliation.reports import run_breaks_csv

pytestmark = pytest.mark.django_db


def test_run_breaks_csv_neutralises_formulas_in_external_fields():
    # given a break whose reference and account came from an imported file
    run = ReconciliationRun.objects.create(started_by="test")
    Break.objects.create(
        dedupe_key="b1",
        kind=BreakKind.AMOUNT,
        severity=Severity.LOW,
        reference="=cmd|' /C calc'!A0",
        account="+41 22 000",
        asset_code="USD",
        difference=Decimal("-5.00"),
        first_run=run,
        last_run=run,
        resolution="-see ticket",
    )
    # when
    rows = list(csv.DictReader(io.StringIO(run_breaks_csv(run))))
    # then
    assert rows[0]["reference"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["account"] == "'+41 22 000"
    assert rows[0]["resolution"] == "'-see ticket"
    assert Decimal(rows[0]["difference"]) == Decimal("-5.00")  # a number, untouched
