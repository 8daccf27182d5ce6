"""Bank charges reported in camt.054/053 (Chrgs) are passed on to the participant of the netted
payment they were taken on: once per booking, in a balanced fee journal, retried when the
participant is short; the booking still matches its payment (its amount counts without them)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command

from ledger.models import LedgerAccount, Posting
from ledger.services.ledger import ledger_adjust, ledger_deposit, system_account_for
from netting.models import Direction, NettedInstruction
from ops.daily_report import daily_report_build
from ops.models import OpsAlert
from rails.formats import iso20022
from reconciliation.engine import reconciliation_run
from reconciliation.models import ExternalRecord, Source
from reconciliation.services import (
    bank_charges_pass_on,
    bank_statements_fetch,
    rail_reports_record,
    reconciliation_inputs_gather,
)
from settlement.models import FeeCharge
from settlement.services.fees import BANK_CHARGES
from settlement.statements import statement_read
from tests.factories import ACTOR
from tests.netting.conftest import START, FiatMarket, fiat_market, trades_settle  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "conformance" / "iso20022" / "samples"
WIRE_FEE = Decimal("15.00")
HOUSE_USD = "4400123456"


def test_charges_are_read_from_the_public_samples():
    # FI camt.054 (.001.02): a batch debit of 1000.00 EUR whose two transfers carry 20.00 each;
    # .001.02 has no "included" indicator, so the entry amount is taken as it stands
    bookings = iso20022.parse_camt054((SAMPLES / "camt054" / "moov_FI_camt_054_sample.xml").read_bytes())
    charged = [b for b in bookings if b.charges]
    assert [(b.amount, b.charges, b.charges_included, b.charge_type) for b in charged] == [
        (Decimal("1000.00"), Decimal("40.00"), False, "COMM")
    ]
    assert charged[0].principal == Decimal("-1000.00")
    assert sum(b.charges for b in bookings) == Decimal("40.00")
    statement = iso20022.parse_camt053((SAMPLES / "camt053" / "moov_FI_camt_053_sample.xml").read_bytes())[0]
    assert sorted(b.charges for b in statement.entries if b.charges) == [Decimal("20.00"), Decimal("45.00")]


def test_charges_round_trip_through_a_schema_valid_notification():
    booking = iso20022.Booking(
        entry_ref="E1",
        account=HOUSE_USD,
        amount=Decimal("1015.00"),
        currency="USD",
        credit_debit="DBIT",
        booking_date=date(2026, 11, 25),
        value_date=date(2026, 11, 25),
        end_to_end_id="E2E-1",
        charges=WIRE_FEE,
        charges_included=True,
        charge_type="COMM",
    )
    xml = iso20022.build_camt054(
        message_id="N1", created_at=datetime(2026, 11, 25, 12, tzinfo=UTC), account=HOUSE_USD, currency="USD",
        bookings=[booking],
    )  # fmt: skip
    iso20022.validate(xml, "camt.054.001.08")
    (parsed,) = iso20022.parse_camt054(xml)
    assert (parsed.charges, parsed.charges_included, parsed.charge_type) == (WIRE_FEE, True, "COMM")
    assert parsed.principal == Decimal("-1000.00")
    with pytest.raises(iso20022.FormatError, match="charges"):
        iso20022.build_camt054(
            message_id="N2", created_at=datetime(2026, 11, 25, 12, tzinfo=UTC), account=HOUSE_USD,
            currency="USD", bookings=[iso20022.Booking(**{**booking.__dict__, "charges": Decimal("0.001")})],
        )  # fmt: skip
    # a charge in another currency than the entry cannot be passed on: the file is refused
    foreign = xml.replace(b'<Amt Ccy="USD">15.00</Amt>', b'<Amt Ccy="EUR">15.00</Amt>')
    with pytest.raises(iso20022.FormatError, match="charges in EUR"):
        iso20022.parse_camt054(foreign)


def _settle_one_trade(m: FiatMarket) -> tuple[NettedInstruction, date]:
    """F0 buys 10 AAPL at 100.00 from F1: F1's USD pay-out (1,000.00) goes by wire. The house
    keeps a buffer at the bank for charges (they are taken on top of the payment)."""
    m.bank.control("set_charges", {"message_type": "pacs.008.001.08", "amount": str(WIRE_FEE)})
    m.bank.open_account(HOUSE_USD, currency="USD", balance="100.00")
    day = trades_settle(m, [(m.parties[0], m.parties[1], "10", "100.00")], source="bc")
    return NettedInstruction.objects.get(asset=m.usd, direction=Direction.PAY_OUT), day


def _available(party, asset) -> Decimal:
    return LedgerAccount.objects.get(owner=party, asset=asset, kind="available").balance


def test_wire_charges_are_passed_on_once_and_the_booking_still_matches(fiat_market: FiatMarket):  # noqa: F811
    m = fiat_market
    payout, day = _settle_one_trade(m)
    assert payout.rail_attempts.get().method == "wire" and payout.participant == m.parties[1]
    assert m.bank.balance(HOUSE_USD) == Decimal("100.00") - WIRE_FEE  # 1,000.00 in, 1,000.00 + charges out

    rail_reports_record()  # the camt.054 of the wire: DBIT 1,015.00 with 15.00 charges included
    booking = ExternalRecord.objects.get(
        source=Source.CAMT054, account=HOUSE_USD, reference=payout.rail_attempts.get().end_to_end_id
    )
    assert (booking.amount, booking.charges, booking.charges_included) == (Decimal("-1015.00"), WIRE_FEE, True)
    charge = FeeCharge.objects.get(kind="pass_through")
    assert (charge.netted, charge.participant, charge.fee, charge.status) == (payout, m.parties[1], WIRE_FEE, "posted")
    assert charge.external_key == booking.natural_key and "camt054" in charge.cost_source
    legs = list(Posting.objects.filter(journal=charge.journal).values_list("account__system_code", "amount"))
    assert sorted(legs) == [("", -WIRE_FEE), (BANK_CHARGES, WIRE_FEE)] and charge.journal.kind == "fee"
    assert _available(m.parties[1], m.usd) == Decimal(START["USD"]) + Decimal("1000.00") - WIRE_FEE
    assert system_account_for(code=BANK_CHARGES, asset=m.usd).balance == WIRE_FEE

    # the end-of-day statement reports the same booking: charged once, whichever report came first
    bank_statements_fetch(on=day)
    assert ExternalRecord.objects.filter(natural_key=booking.natural_key).count() == 2  # in 054 and 053
    assert bank_charges_pass_on() == {}
    assert reconciliation_inputs_gather()["bank_charges"] == {}
    assert FeeCharge.objects.filter(kind="pass_through").count() == 1
    assert _available(m.parties[1], m.usd) == Decimal(START["USD"]) + Decimal("1000.00") - WIRE_FEE

    # the booking's amount without its charges matches the payment: no amount break
    run = reconciliation_run(actor=ACTOR, as_of=datetime.combine(day + timedelta(days=3), time(), UTC))
    assert run.totals["breaks"] == {}, run.totals

    # the participant's statement shows the charge as a fee on its own line
    start = datetime.combine(day - timedelta(days=7), time(), UTC)
    (usd,) = [s for s in statement_read(participant=m.parties[1], start=start, end=start + timedelta(days=30)).assets
              if s.asset == m.usd]  # fmt: skip
    fee_lines = [line for line in usd.lines if line.kind == "fee"]
    assert [(line.amount, line.fee) for line in fee_lines] == [(-WIRE_FEE, WIRE_FEE)]
    assert usd.closing == _available(m.parties[1], m.usd)

    # the daily report counts it as a cost passed on, not as fee revenue
    fees = daily_report_build(day=charge.posted_at.date(), actor=ACTOR).figures["fees"]
    assert fees == [{"asset": "USD", "charges": 0, "earned": "0.00", "passed_on": "15.00"}]
    out = io.StringIO()
    call_command("daily_report", day=charge.posted_at.date(), stdout=out)
    assert "costs passed on [('USD', '15.00')]" in out.getvalue()


def test_a_participant_short_of_the_charges_is_charged_when_funds_arrive(fiat_market: FiatMarket):  # noqa: F811
    m = fiat_market
    _settle_one_trade(m)
    seller = m.parties[1]
    everything = _available(seller, m.usd)
    ledger_adjust(
        debit=LedgerAccount.objects.get(owner=seller, asset=m.usd, kind="available"),
        credit=system_account_for(code="test-withdrawals", asset=m.usd),
        amount=everything - Decimal("10.00"),
        reference="test:drain",
        actor=ACTOR,
        memo="withdrawn",
    )
    rail_reports_record()
    charge = FeeCharge.objects.get(kind="pass_through")
    assert charge.status == "pending" and charge.journal is None
    assert _available(seller, m.usd) == Decimal("10.00")  # nothing taken, nothing negative
    alert = OpsAlert.objects.get(dedupe_key=f"bank-charges-short:{charge.external_key}")
    assert "wait for funds" in alert.title
    assert bank_charges_pass_on() == {"short": 1}  # the sweep tries again; one alert only
    assert OpsAlert.objects.filter(dedupe_key__startswith="bank-charges-short").count() == 1

    ledger_deposit(owner=seller, asset=m.usd, amount=Decimal("100.00"), reference="test:topup", actor=ACTOR)
    out = io.StringIO()
    call_command("reconcile", stdout=out)  # what beat runs hourly: the sweep posts it now
    assert "bank charges passed on: 1." in out.getvalue()
    charge.refresh_from_db()
    assert charge.status == "posted" and _available(seller, m.usd) == Decimal("110.00") - WIRE_FEE
    assert bank_charges_pass_on() == {}
