"""Netted settlement end to end: windows close, the plan pays through the central settlement
account over the bank and custodian simulators (real message formats, validated), at T+1/T+2,
and every failure path: rejection → next method → review, timeouts, duplicates, custody fails."""

from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

import pytest
from django.utils import timezone

from common.choices import InstructionStatus
from common.exceptions import NotPermitted
from ledger.models import LedgerAccount, TransitionLog
from netting.models import (
    AttemptStatus,
    Direction,
    NetDebitCap,
    NettedInstruction,
    NettedStatus,
    NettingWindow,
    RailAttempt,
    RailReport,
    WindowStatus,
)
from netting.pipeline import CSA, custody_buy_in_check, custody_fails, netted_release, netted_retry
from netting.selectors import netted_instructions_for_leg
from netting.services import window_close
from ops.models import ApprovalRequest, ReviewCase
from rails.formats import iso20022, nacha
from settlement.models import SettlementInstruction
from settlement.services.trades import TradeInput, trades_ingest
from tests.factories import ACTOR
from tests.helpers import assert_admin_pages_render
from tests.netting.conftest import START, FiatMarket, balances, pump, settle_day

pytestmark = pytest.mark.django_db
_seq = iter(range(1, 1_000_000))


def ingest(instrument, rows) -> list:
    items = [
        TradeInput(
            source="fiat-tests",
            external_id=f"F{next(_seq)}",
            instrument=instrument,
            buyer=buyer,
            seller=seller,
            quantity=Decimal(quantity),
            price=Decimal(price),
            executed_at=timezone.now(),
        )
        for buyer, seller, quantity, price in rows
    ]
    return trades_ingest(items=items, actor=ACTOR).trades


def close_all() -> list[NettingWindow]:
    return [window_close(window=w, actor=ACTOR) for w in NettingWindow.objects.filter(status=WindowStatus.OPEN)]


def expected_gross(parties, trades) -> dict[tuple[str, str], Decimal]:
    """Every participant's balance if each leg were settled gross."""
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for party in parties:
        for code in ("USD", "EUR", "AAPL"):
            expected[(party.code, code)] = Decimal(START[code])
    for trade in trades:
        for leg in SettlementInstruction.objects.filter(trade=trade).select_related("asset", "payer", "payee"):
            expected[(leg.payer.code, leg.asset.code)] -= leg.amount
            expected[(leg.payee.code, leg.asset.code)] += leg.amount
    return dict(expected)


def validate_payload(attempt: RailAttempt) -> None:
    if attempt.message_type == "nacha":
        nacha.parse_ach_file(attempt.payload)
    else:
        iso20022.validate(attempt.payload.encode(), attempt.message_type)


def test_day_of_fiat_and_equity_trades_settles_net_at_t1_t2_with_the_gross_ledger(fiat_market: FiatMarket):
    m = fiat_market
    rng = random.Random(7)
    rows_aapl, rows_fx = [], []
    for _ in range(40):
        buyer, seller = rng.sample(m.parties, 2)
        rows_aapl.append((buyer, seller, str(rng.randint(1, 50)), f"{rng.randint(15000, 25000) / 100:.2f}"))
    for _ in range(20):
        buyer, seller = rng.sample(m.parties, 2)
        rows_fx.append((buyer, seller, f"{rng.randint(100, 50000)}.00", f"1.{rng.randint(500, 1500):04d}"))
    trades = ingest(m.aapl_usd, rows_aapl) + ingest(m.eur_usd, rows_fx)
    expected = expected_gross(m.parties, trades)
    windows = close_all()
    assert {w.asset_class for w in windows} == {"fiat", "security"}
    assert all(w.net_payments < w.gross_legs for w in windows)

    pump()
    # Pay-ins are out (validated messages, stored before sending); nothing settles before T+1.
    attempts = list(RailAttempt.objects.all())
    assert attempts and {a.method for a in attempts} >= {"ach", "sepa", "custody"}
    for attempt in attempts:
        validate_payload(attempt)
    assert not SettlementInstruction.objects.filter(status=InstructionStatus.SETTLED).exists()
    assert not NettedInstruction.objects.filter(status=NettedStatus.SETTLED).exists()

    usd_date = SettlementInstruction.objects.filter(asset=m.aapl).values_list("settlement_date", flat=True)[0]
    eur_date = SettlementInstruction.objects.filter(asset=m.eur).values_list("settlement_date", flat=True)[0]
    assert eur_date > usd_date  # EUR/USD is T+2 on TARGET, AAPL/USD T+1 on NYSE
    settle_day(m, usd_date)
    # The equity window settled (securities and its USD); the FX window waits for its T+2.
    aapl_legs = SettlementInstruction.objects.filter(trade__instrument=m.aapl_usd)
    assert set(aapl_legs.values_list("status", flat=True)) == {InstructionStatus.SETTLED}
    fx_legs = SettlementInstruction.objects.filter(trade__instrument=m.eur_usd)
    assert set(fx_legs.values_list("status", flat=True)) == {InstructionStatus.PENDING}
    settle_day(m, eur_date)
    assert set(fx_legs.values_list("status", flat=True)) == {InstructionStatus.SETTLED}
    assert set(NettedInstruction.objects.values_list("status", flat=True)) == {NettedStatus.SETTLED}

    # Final ledger equals gross settlement; the central settlement account is empty again.
    assert balances(m.parties, [m.usd, m.eur, m.aapl]) == expected
    for csa in LedgerAccount.objects.filter(system_code__startswith=CSA):
        assert csa.balance == 0, csa
    # Ledger equals the outside world: bank balances and custody positions.
    for party in m.parties:
        assert m.bank.balance(m.bank_key(party, "USD")) == expected[(party.code, "USD")]
        assert m.bank.balance(m.bank_key(party, "EUR")) == expected[(party.code, "EUR")]
        assert m.custodian.position(m.safekeeping(party), m.aapl.isin) == expected[(party.code, "AAPL")]
    # Trace: a netted instruction to its legs, a leg to its two netted instructions.
    ni = NettedInstruction.objects.filter(asset=m.usd).first()
    assert ni.legs().exists()
    leg = aapl_legs.filter(leg="payment").first()
    covering = netted_instructions_for_leg(leg)
    assert covering.count() == 2  # the payer's pay-in and the payee's pay-out of USD
    assert all(leg in n.legs() for n in covering)
    # Every leg's settlement is in the transition log, and every report is stored raw once.
    assert (
        TransitionLog.objects.filter(entity_type="instruction", to_status="settled").count()
        == aapl_legs.count() + fx_legs.count()
    )
    assert RailReport.objects.filter(applied=False).count() == 0


def _one_usd_trade(m: FiatMarket, quantity: str = "10", price: str = "100.00"):
    """F0 buys AAPL from F1: F0 pays USD in, F1 delivers AAPL in; then pay-outs."""
    trades = ingest(m.aapl_usd, [(m.parties[0], m.parties[1], quantity, price)])
    close_all()
    return trades, SettlementInstruction.objects.filter(trade=trades[0]).first().settlement_date


def _pay_in(m: FiatMarket, code: str = "USD") -> NettedInstruction:
    return NettedInstruction.objects.get(asset__code=code, direction=Direction.PAY_IN)


def test_ach_rejected_for_the_method_is_rerouted_to_wire_and_settles(fiat_market: FiatMarket):
    m = fiat_market
    m.bank.inject("reject", code="AM02")  # amount not allowed for ACH
    _, day = _one_usd_trade(m)
    pump()
    ni = _pay_in(m)
    attempts = list(ni.rail_attempts.order_by("number"))
    assert [(a.method, a.status, a.reason_code) for a in attempts] == [
        ("ach", AttemptStatus.REJECTED, "AM02"),
        ("wire", AttemptStatus.ACCEPTED, ""),
    ]
    validate_payload(attempts[1])
    settle_day(m, day)
    ni.refresh_from_db()
    assert ni.status == NettedStatus.SETTLED and ni.method == "wire"
    assert m.bank.balance(m.bank_key(m.parties[0], "USD")) == Decimal("999000.00")


def test_closed_account_goes_to_manual_review_and_releases_the_funds(fiat_market: FiatMarket):
    m = fiat_market
    _, day = _one_usd_trade(m)
    m.bank.close_account(m.bank_key(m.parties[0], "USD"))
    pump()
    settle_day(m, day)
    ni = _pay_in(m)
    assert ni.status == NettedStatus.REVIEW
    assert "AC04" in ni.failure_reason
    assert [a.status for a in ni.rail_attempts.all()] == [AttemptStatus.REJECTED]  # no point in another method
    assert ni.lock.status == "voided"
    assert ReviewCase.objects.filter(reason__contains="AC04").exists()
    # Nobody was paid out of a window whose pay-in failed to arrive for that asset.
    usd_out = NettedInstruction.objects.get(asset__code="USD", direction=Direction.PAY_OUT)
    assert usd_out.status == NettedStatus.PENDING
    assert SettlementInstruction.objects.filter(status=InstructionStatus.SETTLED).count() == 0
    # Ops reopen the account and retry: it settles, and so does the rest of the window.
    m.bank.accounts[m.bank_key(m.parties[0], "USD")].closed = False
    netted_retry(ni=ni, actor=ACTOR, reason="account reopened by the bank")
    pump()
    settle_day(m, m.bank.add_business_days(day, 1))  # a new ACH takes a business day
    ni.refresh_from_db()
    assert ni.status == NettedStatus.SETTLED
    assert set(SettlementInstruction.objects.values_list("status", flat=True)) == {InstructionStatus.SETTLED}


def test_insufficient_funds_at_the_bank_goes_to_review(fiat_market: FiatMarket):
    m = fiat_market
    key = m.bank_key(m.parties[0], "USD")
    m.bank.accounts[key].balance = Decimal("5.00")
    _, day = _one_usd_trade(m)
    pump()
    settle_day(m, day)
    ni = _pay_in(m)
    assert ni.status == NettedStatus.REVIEW and "AM04" in ni.failure_reason
    assert ni.rail_attempts.get().reason_code == "AM04"


def test_timeouts_are_retried_with_the_same_message_and_pay_once(fiat_market: FiatMarket):
    m = fiat_market
    m.bank.hang_seconds = 0.2
    from django.test import override_settings

    with override_settings(CLEARHOUSE_RAIL_TIMEOUT_SECONDS=0.1):
        m.bank.inject("timeout")  # first send: nothing received
        m.bank.inject("timeout_after_accept")  # second send: received, answer lost
        _, day = _one_usd_trade(m)
        from netting.pipeline import netted_advance

        netted_advance(ids=[_pay_in(m).pk])
        ni = _pay_in(m)
        attempt = ni.rail_attempts.get()
        assert attempt.status == AttemptStatus.TIMED_OUT and ni.status == NettedStatus.LOCKED
        assert ni.next_attempt_at is not None  # queued for retry with backoff
        pump()
    ni.refresh_from_db()
    attempt.refresh_from_db()
    assert attempt.sends == 2 and ni.rail_attempts.count() == 1  # resent once; the bank kept one
    assert ni.status == NettedStatus.SUBMITTED
    settle_day(m, day)
    ni.refresh_from_db()
    assert ni.status == NettedStatus.SETTLED
    assert m.bank.balance(m.bank_key(m.parties[0], "USD")) == Decimal("999000.00")  # debited once
    assert sum(1 for p in m.bank.payments if p.end_to_end_id == attempt.end_to_end_id) == 1


def test_duplicate_report_delivery_is_applied_once(fiat_market: FiatMarket):
    m = fiat_market
    m.bank.inject("duplicate", times=50)
    m.custodian.inject("duplicate", times=50)
    _, day = _one_usd_trade(m)
    pump()
    settle_day(m, day)
    assert RailReport.objects.filter(network="bank").count() > len(
        {r.content for r in RailReport.objects.filter(network="bank")}
    )
    assert "duplicate" in " ".join(RailReport.objects.values_list("outcome", flat=True))
    assert set(NettedInstruction.objects.values_list("status", flat=True)) == {NettedStatus.SETTLED}
    for csa in LedgerAccount.objects.filter(system_code__startswith=CSA):
        assert csa.balance == 0
    assert balances(m.parties[:2], [m.usd, m.aapl]) == {
        ("F0", "USD"): Decimal("999000.00"),
        ("F0", "AAPL"): Decimal("10010"),
        ("F1", "USD"): Decimal("1001000.00"),
        ("F1", "AAPL"): Decimal("9990"),
    }


def test_custody_fail_is_reported_escalated_for_buy_in_and_settles_when_securities_arrive(fiat_market: FiatMarket):
    m = fiat_market
    seller_account = m.safekeeping(m.parties[1])
    m.custodian.holdings[seller_account][m.aapl.isin] = Decimal("3")  # sells 10, holds 3 at the custodian
    _, day = _one_usd_trade(m)
    pump()
    settle_day(m, day)
    delivery = NettedInstruction.objects.get(asset=m.aapl, direction=Direction.PAY_IN)
    assert delivery.status == NettedStatus.SUBMITTED and delivery.failing_since == day
    assert delivery.rail_attempts.get().status == AttemptStatus.FAILING
    # The buyer paid, but receives nothing before the seller delivers (no partial: NPAR).
    assert NettedInstruction.objects.get(asset=m.aapl, direction=Direction.PAY_OUT).status == NettedStatus.PENDING
    assert m.custodian.position(seller_account, m.aapl.isin) == Decimal("3")
    report = custody_fails(today=day)
    assert [(r["participant"], r["quantity"], r["business_days"]) for r in report] == [("F1", "10", 0)]
    later = m.custodian.add_business_days(day, 5)
    assert custody_buy_in_check(today=later) == 1
    assert ReviewCase.objects.filter(reason__startswith="buy-in due: F1").exists()
    # The seller's securities arrive: the custodian settles at its next run, then the pay-out.
    m.custodian.holdings[seller_account][m.aapl.isin] = Decimal("10")
    pump()
    delivery.refresh_from_db()
    assert delivery.status == NettedStatus.SETTLED
    assert set(SettlementInstruction.objects.values_list("status", flat=True)) == {InstructionStatus.SETTLED}
    assert m.custodian.position(m.safekeeping(m.parties[0]), m.aapl.isin) == Decimal("10010")


def test_a_message_the_network_refuses_as_a_whole_goes_to_review(fiat_market: FiatMarket):
    from rails.base import RailRejected
    from rails.networks import network_client

    client = network_client("bank")
    with pytest.raises(RailRejected, match="FF01"):
        client.submit(message_id="BAD1", payload="<Document>not a payment</Document>", content_type="application/xml")
    with pytest.raises(RailRejected, match="FF01"):
        client.submit(message_id="BAD2", payload="101 not a nacha file", content_type="text/plain")
    assert "BAD1" not in fiat_market.bank.received and not fiat_market.bank.payments


def test_cap_breach_holds_the_pay_in_until_released(fiat_market: FiatMarket, django_user_model):
    from ops.services.approvals import approval_decide, approval_propose
    from tests.helpers import staff_user

    m = fiat_market
    NetDebitCap.objects.create(participant=m.parties[0], asset=m.usd, cap=Decimal("500.00"))
    _, day = _one_usd_trade(m)
    ni = _pay_in(m)
    assert ni.status == NettedStatus.HELD
    pump()
    settle_day(m, day)
    ni.refresh_from_db()
    assert ni.status == NettedStatus.HELD and not ni.rail_attempts.exists()
    with pytest.raises(NotPermitted):  # past the cap only under four-eyes
        netted_release(ni=ni, actor=ACTOR, reason="limit raised by risk", approval=ApprovalRequest())
    operator = staff_user(django_user_model, "ops", "operator")
    request = approval_propose(kind="netted_release", target_id=ni.pk, actor=operator, reason="limit raised by risk")
    ni.refresh_from_db()
    assert ni.status == NettedStatus.HELD
    approver = staff_user(django_user_model, "risk", "approver")
    approval_decide(request=request, actor=approver, approve=True, reason="confirmed with risk")
    pump()
    settle_day(m, m.bank.add_business_days(day, 1))  # a new ACH takes a business day
    ni.refresh_from_db()
    assert ni.status == NettedStatus.SETTLED
    assert set(SettlementInstruction.objects.values_list("status", flat=True)) == {InstructionStatus.SETTLED}


def test_netting_admin_pages_render_and_release_needs_a_reason(fiat_market: FiatMarket, client, django_user_model):
    from django.urls import reverse

    from tests.helpers import staff_user

    m = fiat_market
    NetDebitCap.objects.create(participant=m.parties[0], asset=m.usd, cap=Decimal("500.00"))
    m.bank.inject("reject", code="AM02")
    _one_usd_trade(m)
    pump()
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    assert_admin_pages_render(client, "netting")
    held = _pay_in(m)
    url = reverse("admin:netting_nettedinstruction_changelist")
    form = {"action": "release_selected", "_selected_action": [held.pk], "apply": "1"}
    client.post(url, {**form, "reason": ""})
    held.refresh_from_db()
    assert held.status == NettedStatus.HELD  # no reason, no release
    client.post(url, {**form, "reason": "risk raised the cap"})
    held.refresh_from_db()
    assert held.status == NettedStatus.HELD  # proposed (four-eyes), not released
    request = ApprovalRequest.objects.get(kind="netted_release", target_id=held.pk, status="pending")
    client.force_login(staff_user(django_user_model, "risk", "approver"))
    approve = {"action": "approve_selected", "_selected_action": [request.pk], "apply": "1", "reason": "agreed"}
    client.post(reverse("admin:ops_approvalrequest_changelist"), approve)
    held.refresh_from_db()
    assert held.status == NettedStatus.PENDING
    entry = TransitionLog.objects.filter(entity_type="nettedinstruction", entity_id=held.pk).last()
    assert entry.reason == "risk raised the cap (approved: agreed)" and entry.actor_label == "risk"


class WorkerDied(BaseException):
    """A worker process killed between two steps (not an error the code may catch)."""


@pytest.mark.parametrize("dies", ["before_send", "after_send"])
def test_a_worker_dying_around_the_send_is_recovered_by_the_sweeper_and_pays_once(
    fiat_market: FiatMarket, monkeypatch, dies
):
    from datetime import timedelta

    import netting.pipeline as payments
    import netting.pipeline.operations as operations
    from rails.messaging import NetworkClient

    m = fiat_market
    _, day = _one_usd_trade(m)
    ni = _pay_in(m)
    real_submit = NetworkClient.submit

    def dying_submit(self, **kwargs):
        if dies == "after_send":
            real_submit(self, **kwargs)
        raise WorkerDied

    monkeypatch.setattr(NetworkClient, "submit", dying_submit)
    with pytest.raises(WorkerDied):
        payments.netted_advance(ids=[ni.pk])
    monkeypatch.setattr(NetworkClient, "submit", real_submit)
    attempt = ni.rail_attempts.get()
    assert attempt.status == AttemptStatus.SENDING  # stored before the send, so nothing is lost
    assert len(m.bank.payments) == (1 if dies == "after_send" else 0)

    # The sweeper finds the stuck instruction and resends the same message.
    NettedInstruction.objects.filter(pk=ni.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    swept: list[int] = []
    monkeypatch.setattr(operations, "dispatch_netted", lambda ids: swept.extend(ids))
    payments.netted_sweep()
    assert ni.pk in swept
    payments.netted_advance(ids=swept)
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.ACCEPTED and attempt.sends == 2
    assert ni.rail_attempts.count() == 1
    settle_day(m, day)
    ni.refresh_from_db()
    assert ni.status == NettedStatus.SETTLED
    assert [p.end_to_end_id for p in m.bank.payments if p.message_id == attempt.message_id] == [attempt.end_to_end_id]
    assert m.bank.balance(m.bank_key(m.parties[0], "USD")) == Decimal("999000.00")  # debited once


def test_custodian_rejecting_an_unknown_safekeeping_account_goes_to_review(fiat_market: FiatMarket):
    m = fiat_market
    m.custodian.accounts.discard(m.safekeeping(m.parties[1]))  # the seller's account is unknown there
    _one_usd_trade(m)
    pump()
    delivery = NettedInstruction.objects.get(asset=m.aapl, direction=Direction.PAY_IN)
    assert delivery.status == NettedStatus.REVIEW and "SAFE" in delivery.failure_reason
    assert delivery.rail_attempts.get().status == AttemptStatus.REJECTED
    assert delivery.lock.status == "voided"  # the custodian said no for good: the securities are free again
    assert ReviewCase.objects.filter(reason__contains="SAFE").exists()


def test_confirmations_that_cannot_be_booked_open_an_investigation_and_move_nothing(fiat_market: FiatMarket):
    from datetime import datetime

    from netting.pipeline import attempts_settle, reports_apply

    m = fiat_market
    m.bank.inject("reject", code="AM02")
    _one_usd_trade(m)
    pump(rounds=2)
    ni = _pay_in(m)
    rejected, wire = ni.rail_attempts.order_by("number")
    assert (rejected.status, wire.status) == (AttemptStatus.REJECTED, AttemptStatus.ACCEPTED)
    # A booking for the right payment but the wrong amount is not booked.
    xml = iso20022.build_camt054(
        message_id="FAKE1",
        created_at=datetime.now(tz=timezone.get_current_timezone()),
        account="4400123456",
        currency="USD",
        bookings=[
            iso20022.Booking(
                entry_ref="X1",
                account="4400123456",
                amount=Decimal("999.00"),
                currency="USD",
                credit_debit="CRDT",
                booking_date=timezone.localdate(),
                value_date=timezone.localdate(),
                end_to_end_id=wire.end_to_end_id,
            )
        ],
    )
    report = RailReport.objects.create(network="bank", sequence=10_000, kind="camt.054", content=xml.decode())
    assert reports_apply(report_ids=[report.pk]) == {"investigate": 1}
    # The network says both the rejected ACH attempt and the wire were paid: only the wire books.
    assert attempts_settle(attempt_ids=[rejected.pk, wire.pk]) == {rejected.pk: "investigate", wire.pk: "settled"}
    ni.refresh_from_db()
    assert ni.status == NettedStatus.SETTLED and ni.lock.status == "posted"
    assert ReviewCase.objects.filter(kind="investigation").count() == 2
    assert LedgerAccount.objects.get(system_code=CSA, asset=m.usd).balance == Decimal("1000.00")  # once


def test_retry_from_review_after_timeouts_gets_a_new_send_budget_and_a_late_refusal_releases(
    fiat_market: FiatMarket, settings
):
    from netting.pipeline import attempt_event, netted_advance

    m = fiat_market
    settings.CLEARHOUSE_RAIL_MAX_SENDS = 2
    m.bank.inject("unavailable", times=2)
    _, day = _one_usd_trade(m)
    for _ in range(3):
        NettedInstruction.objects.update(next_attempt_at=None)
        netted_advance(ids=[_pay_in(m).pk])
    ni = _pay_in(m)
    assert ni.status == NettedStatus.REVIEW and ni.lock.status == "pending"  # unanswered: funds kept
    netted_retry(ni=ni, actor=ACTOR, reason="bank back up")
    netted_advance(ids=[ni.pk])
    ni.refresh_from_db()
    assert ni.status == NettedStatus.SUBMITTED  # resent, not straight back to review
    settle_day(m, day)
    ni.refresh_from_db()
    assert ni.status == NettedStatus.SETTLED

    # A refusal arriving for a payment already in review (after timeouts) releases its funds.
    m.bank.inject("unavailable", times=2)
    ingest(m.aapl_usd, [(m.parties[2], m.parties[3], "1", "50.00")])
    close_all()
    other = NettedInstruction.objects.get(participant=m.parties[2], asset=m.usd, direction=Direction.PAY_IN)
    for _ in range(3):
        NettedInstruction.objects.update(next_attempt_at=None)
        netted_advance(ids=[other.pk])
    other.refresh_from_db()
    assert other.status == NettedStatus.REVIEW
    attempt = other.rail_attempts.get()
    assert attempt_event(attempt_id=attempt.pk, event="rejected", code="AC04", text="closed") == "review"
    other.refresh_from_db()
    assert other.lock.status == "voided" and "AC04" in other.failure_reason


def test_end_of_day_bank_statements_are_fetched_and_imported_once(fiat_market: FiatMarket):
    from reconciliation.models import ExternalRecord, ImportedFile
    from reconciliation.services import bank_statements_fetch

    m = fiat_market
    _, day = _one_usd_trade(m)
    pump()
    settle_day(m, day)
    outcomes = bank_statements_fetch(on=day)
    usd = next(o for o in outcomes if "USD" in o.file.name)
    # the house USD account: the buyer's pay-in credited, the seller's pay-out debited
    rows = sorted(ExternalRecord.objects.filter(file=usd.file).values_list("amount", flat=True))
    assert rows == [Decimal("-1000.00"), Decimal("1000.00")]
    refs = set(ExternalRecord.objects.filter(file=usd.file).values_list("reference", flat=True))
    assert refs == set(RailAttempt.objects.filter(method__in=["ach", "wire"]).values_list("end_to_end_id", flat=True))
    records = ExternalRecord.objects.count()
    again = bank_statements_fetch(on=day)  # the bank generates the statement anew (new creation time)
    assert [o.created for o in again] == [0] * len(again)  # every line already known: nothing twice
    assert ExternalRecord.objects.count() == records
    assert ImportedFile.objects.count() == 2 * len(outcomes)  # both deliveries kept as received


def test_the_rails_reports_become_external_records_once(fiat_market: FiatMarket):
    from reconciliation.models import ExternalRecord, Source
    from reconciliation.services import rail_reports_record

    m = fiat_market
    m.bank.inject("duplicate", times=3)  # some reports delivered twice
    _, day = _one_usd_trade(m)
    pump()
    settle_day(m, day)
    first = rail_reports_record()
    assert first["refused"] == 0 and first["reports"] == RailReport.objects.exclude(kind="custody.fail").count()
    ours = set(RailAttempt.objects.values_list("end_to_end_id", flat=True))
    bookings = ExternalRecord.objects.filter(source=Source.CAMT054, account="4400123456")
    assert set(bookings.values_list("reference", flat=True)) == ours - set(
        RailAttempt.objects.filter(method="custody").values_list("end_to_end_id", flat=True)
    )
    assert set(ExternalRecord.objects.filter(source=Source.SESE025).values_list("reference", flat=True)) == set(
        RailAttempt.objects.filter(method="custody").values_list("end_to_end_id", flat=True)
    )
    records = ExternalRecord.objects.count()
    assert rail_reports_record() == {"records": 0, "reports": 0, "refused": 0}
    assert ExternalRecord.objects.count() == records
