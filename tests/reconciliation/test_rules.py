"""Matching rules of the run: status differences, counterparty, business-day windows on the
asset's calendar, and a missing confirmation only after the rail's completion time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from rails.formats import iso20022
from reconciliation.engine import reconciliation_run
from reconciliation.importers import external_import
from reconciliation.models import Break, InternalRecord, Source
from tests.factories import ACTOR
from tests.helpers import HOUSE_USD, house_usd_credit

pytestmark = pytest.mark.django_db


def expect(
    reference: str,
    amount: str,
    *,
    state: str = "settled",
    value_date: date | None = None,
    counterparty: str = "",
    due_at: datetime | None = None,
) -> InternalRecord:
    return InternalRecord.objects.create(
        natural_key=f"test:{reference}",
        rail="bank",
        reference=reference,
        account=HOUSE_USD,
        counterparty=counterparty,
        asset_code="USD",
        amount=Decimal(amount),
        value_date=value_date or timezone.localdate(),
        state=state,
        since=timezone.now() - timedelta(days=1),
        due_at=due_at,
        updated_at=timezone.now(),
    )


def book(reference: str, amount: str, entry_ref: str, **kwargs) -> None:
    xml = house_usd_credit(reference=reference, amount=amount, entry_ref=entry_ref, **kwargs)
    external_import(source=Source.CAMT054, name=entry_ref, content=xml, actor=ACTOR)


def rejection_report(reference: str) -> None:
    xml = iso20022.build_pain002(
        message_id=f"ST-{reference}",
        created_at=datetime.now(UTC),
        original_message_id=f"MSG-{reference}",
        original_message_type="pain.001.001.03",
        statuses=[iso20022.PaymentStatus(f"MSG-{reference}", reference, "RJCT", "AC04")],
    )
    external_import(source=Source.PAIN002, name=reference, content=xml, actor=ACTOR)


def breaks() -> dict[str, str]:
    return {b.reference or b.account: b.kind for b in Break.objects.all()}


def test_status_differences_and_payments_we_count_unpaid():
    expect("REJ-BOOKED", "100.00", state="rejected")
    book("REJ-BOOKED", "100.00", "B1")  # we count it rejected; the bank booked it
    expect("REJ-QUIET", "100.00", state="rejected")  # rejected and nothing booked: fine
    expect("PAID-REJECTED", "300.00")
    book("PAID-REJECTED", "300.00", "B2")
    rejection_report("PAID-REJECTED")  # booked, but a status report rejects it
    expect("PENDING-REJECTED", "50.00", state="accepted")
    rejection_report("PENDING-REJECTED")  # in flight for us, rejected by the bank
    expect("CP", "70.00", counterparty="770001")
    book("CP", "70.00", "B3", counterparty="990009")  # paid by someone else's account

    run = reconciliation_run(actor=ACTOR)
    assert breaks() == {
        "REJ-BOOKED": "status",
        "PAID-REJECTED": "status",
        "PENDING-REJECTED": "status",
        "CP": "counterparty",
    }
    assert run.totals["not_paid"] == 1 and run.totals["matched"] == 0


def test_lines_without_reference_match_within_business_days_of_the_calendar(usd):
    # Wed 25 Nov 2026 -> Mon 30 Nov: five calendar days but two Fed business days (Thanksgiving
    # on Thursday, the weekend): within the rule's 3 business days
    expect("OVER-HOLIDAY", "500.00", value_date=date(2026, 11, 25))
    book("", "500.00", "N1", value_date=date(2026, 11, 30))
    # Mon 2 Nov -> Mon 9 Nov: five business days, too far apart
    expect("TOO-LATE", "800.00", value_date=date(2026, 11, 2))
    book("", "800.00", "N2", value_date=date(2026, 11, 9))
    # same amount and day, but the line names another payer than ours: not our payment
    expect("OTHER-PAYER", "900.00", value_date=date(2026, 11, 10), counterparty="770001")
    book("", "900.00", "N3", value_date=date(2026, 11, 10), counterparty="990009")

    run = reconciliation_run(actor=ACTOR)
    kinds = sorted((b.kind, b.reference or f"{b.found:.2f}") for b in Break.objects.all())
    assert kinds == [
        ("missing", "OTHER-PAYER"),
        ("missing", "TOO-LATE"),
        ("unexpected", "800.00"),
        ("unexpected", "900.00"),
    ]
    assert run.totals["matched"] == 1


def test_missing_only_after_the_rails_completion_time_and_the_grace_period(settings):
    due = datetime(2026, 11, 25, tzinfo=UTC)
    expect("SLOW", "250.00", value_date=date(2026, 11, 24), due_at=due)
    settings.CLEARHOUSE_RECON_GRACE_MINUTES = 120
    early = reconciliation_run(actor=ACTOR, as_of=due + timedelta(minutes=90))
    assert early.totals["awaiting"] == 1 and not Break.objects.exists()
    late = reconciliation_run(actor=ACTOR, as_of=due + timedelta(minutes=150))
    assert late.totals["breaks"] == {"missing": 1}
    assert Break.objects.get().severity == "medium"  # 250.00, overdue less than 3 days
    book("SLOW", "250.00", "L1", value_date=date(2026, 11, 24))  # the confirmation arrives after all, as expected
    reconciliation_run(actor=ACTOR, as_of=due + timedelta(minutes=200))
    assert Break.objects.get().status == "resolved"
