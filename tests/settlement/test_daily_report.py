"""The daily settlement report: its figures equal the database's, it is regenerated in place,
and it renders in the admin with its chart."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from ops.daily_report import daily_report_build
from ops.models import DailyReport
from ops.tasks import daily_report_task
from settlement.models import FeeCharge, FeeRule, SettlementInstruction
from settlement.services.instructions import instruction_fail, trade_settle_internal
from tests import factories
from tests.factories import ACTOR
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db


def test_daily_report_figures_equal_the_database(usd, btc, alice, bob, client, django_user_model):
    FeeRule.objects.create(name="all", bps=Decimal("10"), valid_from=datetime(2000, 1, 1, tzinfo=UTC))
    factories.fund(alice, usd, Decimal("10000.00"))
    factories.fund(bob, btc, Decimal("10"))
    instrument = factories.instrument(btc, usd)
    for n, price in enumerate(("1000.00", "250.00", "40.00")):
        trade = factories.trade(instrument=instrument, buyer=alice, seller=bob, quantity="1", price=price,
                                external_id=f"D{n}")  # fmt: skip
        trade_settle_internal(trade=trade, actor=ACTOR)
    broken = factories.trade(instrument=instrument, buyer=alice, seller=bob, quantity="1", price="5", external_id="F")
    instruction_fail(instruction=broken.instructions.get(leg="payment"), actor=ACTOR, reason="insufficient funds")

    today = timezone.now().date()
    report = daily_report_build(day=today, actor=ACTOR)
    f = report.figures
    settled = SettlementInstruction.objects.filter(status="settled")
    assert f["settled_count"] == settled.count() == 6
    rows = {(r["rail"], r["asset"]): r for r in f["settled"]}
    assert rows[("ledger", "USD")]["value"] == "1290.00" and rows[("ledger", "USD")]["count"] == 3
    assert rows[("ledger", "BTC")]["value"] == "3.00000000"
    assert f["failures"] == [{"reason": "insufficient funds", "count": 1}] and f["failed_count"] == 1
    earned = FeeCharge.objects.filter(status="posted").aggregate(t=Sum("fee"))["t"]
    assert f["fees"] == [{"asset": "USD", "charges": 6, "earned": f"{earned:.2f}", "passed_on": "0.00"}]
    assert sum(s for _, s, _ in f["per_hour"]) == 6 and "<svg" in report.chart_svg

    daily_report_task(day=today.isoformat())  # beat again: regenerated in place
    assert DailyReport.objects.count() == 1

    client.force_login(staff_user(django_user_model, "aud", "auditor"))
    page = client.get(reverse("admin:ops_dailyreport_change", args=[report.pk])).content.decode()
    assert "Settled per rail and asset" in page and "insufficient funds" in page and "<svg" in page
