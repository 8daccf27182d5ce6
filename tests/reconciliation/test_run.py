"""The reconciliation run end to end: a day of netted settlements through the bank and custodian
simulators, with injected faults (missing confirmation, amount off by 0.02, unexpected credit,
duplicate statement line); the run finds exactly those, with their severities, once."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db.models import F

from netting.models import NettedInstruction, RailAttempt
from reconciliation.engine import reconciliation_run
from reconciliation.importers import external_import
from reconciliation.models import Break, ExternalRecord, Source
from reconciliation.services import rail_reports_record
from tests.factories import ACTOR
from tests.helpers import HOUSE_USD, assert_admin_pages_render, house_usd_credit
from tests.netting.conftest import FiatMarket, fiat_market, trades_settle  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def test_a_day_with_four_faults_gives_exactly_four_breaks_once(fiat_market: FiatMarket):  # noqa: F811
    m = fiat_market
    p = m.parties
    day = trades_settle(m, [(p[0], p[1], "10", "100.00"), (p[2], p[3], "5", "50.00")], source="rec")
    rail_reports_record()
    # measured after the rails' completion time (ACH: the value date's next day) has passed
    as_of = datetime.combine(day + timedelta(days=3), time(), UTC)
    clean = reconciliation_run(actor=ACTOR, as_of=as_of, grace=timedelta(0))
    assert clean.totals["breaks"] == {} and clean.totals["matched"] == RailAttempt.objects.count()

    usd = {
        ni.participant.code + ni.direction: ni.rail_attempts.get()
        for ni in NettedInstruction.objects.filter(asset=m.usd).select_related("participant")
    }
    # 1. the bank never confirmed F1's pay-out
    ExternalRecord.objects.filter(reference=usd["F1pay_out"].end_to_end_id).delete()
    # 2. F0's pay-in was booked 0.02 too high
    ExternalRecord.objects.filter(reference=usd["F0pay_in"].end_to_end_id, account=HOUSE_USD).update(
        amount=F("amount") + Decimal("0.02")
    )
    # 3. a credit nobody expected
    external_import(
        source=Source.CAMT054,
        name="x",
        content=house_usd_credit(reference="SOMEONE-ELSE", amount="250.00", entry_ref="UNEXP1"),
        actor=ACTOR,
    )
    # 4. F2's pay-in appears twice in the statement (a second entry for the same payment)
    external_import(
        source=Source.CAMT054,
        name="y",
        content=house_usd_credit(reference=usd["F2pay_in"].end_to_end_id, amount="250.00", entry_ref="DUP1"),
        actor=ACTOR,
    )

    run = reconciliation_run(actor=ACTOR, as_of=as_of, grace=timedelta(0))
    breaks = {(b.kind, b.reference): b for b in Break.objects.all()}
    assert set(breaks) == {
        ("missing", usd["F1pay_out"].end_to_end_id),
        ("amount", usd["F0pay_in"].end_to_end_id),
        ("unexpected", "SOMEONE-ELSE"),
        ("duplicate", usd["F2pay_in"].end_to_end_id),
    }
    assert breaks[("amount", usd["F0pay_in"].end_to_end_id)].difference == Decimal("0.02")
    assert breaks[("amount", usd["F0pay_in"].end_to_end_id)].severity == "low"
    assert breaks[("missing", usd["F1pay_out"].end_to_end_id)].severity == "medium"  # 1,000.00
    assert breaks[("unexpected", "SOMEONE-ELSE")].found == Decimal("250.00")
    assert run.totals["breaks"] == {"missing": 1, "amount": 1, "unexpected": 1, "duplicate": 1}

    again = reconciliation_run(actor=ACTOR, as_of=as_of, grace=timedelta(0))
    assert Break.objects.count() == 4  # found again, not opened twice
    assert set(Break.objects.values_list("last_run", flat=True)) == {again.pk}
    assert set(Break.objects.values_list("first_run", flat=True)) == {run.pk}


def test_run_and_break_pages_render(fiat_market: FiatMarket, client, django_user_model):  # noqa: F811

    from reconciliation.tasks import reconciliation_run_task

    external_import(
        source=Source.CAMT054,
        name="x",
        content=house_usd_credit(reference="NOBODY", amount="12.00", entry_ref="U1"),
        actor=ACTOR,
    )
    run_id = reconciliation_run_task()
    assert Break.objects.get().kind == "unexpected" and Break.objects.get().first_run_id == run_id
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw"))
    assert_admin_pages_render(client, "reconciliation")
