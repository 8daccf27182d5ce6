"""Netting windows on PostgreSQL: legs land in exactly one window at ingest, closing computes
obligations set-based, caps hold and escalate; hypothesis checks the netting invariants."""

from __future__ import annotations

import threading
from collections import defaultdict
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.models import TransitionLog
from netting.models import NetDebitCap, NetObligation, NettingWindow, WindowStatus
from netting.services import window_close, windows_close_due
from ops.models import ReviewCase
from settlement.models import SettlementInstruction
from settlement.services.trades import TradeInput, trades_ingest
from tests import factories
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db


@pytest.fixture
def market(db, usd):
    aapl = factories.aapl()
    eur = factories.AssetFactory(code="EUR", precision=2)
    parties = [factories.ParticipantFactory(code=f"P{i}") for i in range(4)]
    return {
        "usd": usd,
        "eur": eur,
        "aapl": aapl,
        "aapl_usd": factories.instrument(aapl, usd),
        "eur_usd": factories.instrument(eur, usd, price_precision=4),
        "parties": parties,
    }


_seq = iter(range(1, 1_000_000))


def ingest(instrument, rows) -> list:
    items = [
        TradeInput(
            source="tests",
            external_id=f"N{next(_seq)}",
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


def test_legs_go_to_the_open_window_of_their_class_and_crypto_t0_stays_gross(market, btc_usd, alice, bob):
    p0, p1 = market["parties"][:2]
    (stock,) = ingest(market["aapl_usd"], [(p0, p1, "10", "190.00")])
    (fx,) = ingest(market["eur_usd"], [(p0, p1, "1000", "1.0850")])
    crypto = factories.trade(instrument=btc_usd, buyer=alice, seller=bob, quantity="1", price="60000", external_id="C")
    security_window = NettingWindow.objects.get(asset_class="security", status=WindowStatus.OPEN)
    fiat_window = NettingWindow.objects.get(asset_class="fiat", status=WindowStatus.OPEN)
    assert set(stock.instructions.values_list("netting_window", flat=True)) == {security_window.pk}
    assert set(fx.instructions.values_list("netting_window", flat=True)) == {fiat_window.pk}
    assert set(crypto.instructions.values_list("netting_window", flat=True)) == {None}
    # the history row of each leg records its window
    leg = stock.instructions.first()
    assert leg.history.first().netting_window_id == security_window.pk


def test_closing_nets_per_participant_and_asset_and_reports_the_reduction(market):
    p0, p1, p2 = market["parties"][:3]
    ingest(
        market["aapl_usd"],
        [
            (p0, p1, "10", "100.00"),  # p0 buys 10 AAPL from p1 for 1000 USD
            (p1, p0, "4", "100.00"),  # p1 buys 4 back for 400
            (p2, p0, "6", "100.00"),  # p2 buys 6 from p0 for 600
        ],
    )
    window = NettingWindow.objects.get(asset_class="security", status=WindowStatus.OPEN)
    closed = window_close(window=window)
    assert closed.status == WindowStatus.CLOSED and closed.gross_legs == 6
    nets = {(o.participant.code, o.asset.code): o.net for o in NetObligation.objects.filter(window=closed)}
    assert nets == {
        ("P0", "AAPL"): Decimal("0"),  # +10 - 4 - 6
        ("P1", "AAPL"): Decimal("-6"),
        ("P2", "AAPL"): Decimal("6"),
        ("P0", "USD"): Decimal("0"),  # -1000 + 400 + 600
        ("P1", "USD"): Decimal("600"),
        ("P2", "USD"): Decimal("-600"),
    }
    assert closed.summary["AAPL"] == {"gross_legs": 3, "gross_value": "20", "net_payments": 2, "net_value": "6"}
    assert closed.summary["USD"] == {
        "gross_legs": 3,
        "gross_value": "2000.00",
        "net_payments": 2,
        "net_value": "600.00",
    }
    assert closed.net_payments == 4 and closed.reduction == pytest.approx(1 / 3)
    # a new window is open for what comes next; the closed one is not touched again
    assert NettingWindow.objects.filter(asset_class="security", status=WindowStatus.OPEN).exclude(pk=closed.pk).exists()
    again = window_close(window=closed)
    assert NetObligation.objects.filter(window=closed).count() == 6 and again.gross_legs == 6
    assert TransitionLog.objects.filter(entity_type="nettingwindow", to_status="closed").count() == 1


def test_beat_closes_only_windows_past_their_time(market):
    p0, p1 = market["parties"][:2]
    ingest(market["aapl_usd"], [(p0, p1, "1", "10.00")])
    window = NettingWindow.objects.get(status=WindowStatus.OPEN)
    assert windows_close_due() == []
    NettingWindow.objects.filter(pk=window.pk).update(closes_at=timezone.now() - timezone.timedelta(seconds=1))
    assert windows_close_due() == [window.pk]
    (later,) = ingest(market["aapl_usd"], [(p0, p1, "1", "10.00")])
    assert later.instructions.first().netting_window_id != window.pk


def test_net_debit_cap_holds_the_participants_payment_and_escalates(market):
    p0, p1 = market["parties"][:2]
    NetDebitCap.objects.create(participant=p0, asset=market["usd"], cap=Decimal("500.00"))
    NetDebitCap.objects.create(participant=p1, asset=market["usd"], cap=Decimal("500.00"))
    ingest(market["aapl_usd"], [(p0, p1, "10", "100.00")])  # p0 owes 1000 USD net
    window = window_close(window=NettingWindow.objects.get(status=WindowStatus.OPEN))
    held = NetObligation.objects.get(window=window, held=True)
    assert (held.participant, held.asset, held.net) == (p0, market["usd"], Decimal("-1000.00"))
    assert NetObligation.objects.filter(window=window, held=True).count() == 1  # p1 receives: no cap issue
    case = ReviewCase.objects.get(dedupe_key=f"netcap:{window.pk}:{p0.pk}")
    assert "net debit cap" in case.reason and "1000.00 USD" in case.reason


@pytest.mark.django_db(transaction=True)
def test_a_window_closes_only_after_an_ingest_adding_to_it_has_committed(usd):
    aapl = factories.aapl()
    inst = factories.instrument(aapl, usd)
    p0, p1 = factories.ParticipantFactory(code="Q0"), factories.ParticipantFactory(code="Q1")
    ingest(inst, [(p0, p1, "1", "10.00")])
    window = NettingWindow.objects.get(status=WindowStatus.OPEN)
    in_ingest, release = threading.Event(), threading.Event()

    def slow_ingest() -> None:
        try:
            with transaction.atomic():
                ingest(inst, [(p0, p1, "2", "10.00")])
                in_ingest.set()
                release.wait(10)
        finally:
            connection.close()

    worker = threading.Thread(target=slow_ingest)
    worker.start()
    assert in_ingest.wait(10)
    closer_done = threading.Event()

    def close() -> None:
        try:
            window_close(window=window)
            closer_done.set()
        finally:
            connection.close()

    closer = threading.Thread(target=close)
    closer.start()
    assert not closer_done.wait(0.5)  # blocked behind the uncommitted ingest
    release.set()
    worker.join(10)
    closer.join(10)
    assert closer_done.is_set()
    closed = NettingWindow.objects.get(pk=window.pk)
    assert closed.gross_legs == 4  # both trades, nothing lost to the race
    assert SettlementInstruction.objects.filter(netting_window=window).count() == 4


# --- invariants (hypothesis) -----------------------------------------------------------------------

trade_rows = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(1, 50),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999.99"), places=2),
        st.booleans(),
    ).filter(lambda r: r[0] != r[1]),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=trade_rows)
def test_netting_invariants(market, rows):
    with transaction.atomic():
        sid = transaction.savepoint()
        parties = market["parties"]
        stock_rows = [(parties[b], parties[s], str(q), str(p)) for b, s, q, p, fx in rows if not fx]
        fx_rows = [(parties[b], parties[s], str(q), str(p)) for b, s, q, p, fx in rows if fx]
        trades = []
        if stock_rows:
            trades += ingest(market["aapl_usd"], stock_rows)
        if fx_rows:
            trades += ingest(market["eur_usd"], fx_rows)
        windows = [window_close(window=w) for w in NettingWindow.objects.filter(status=WindowStatus.OPEN)]
        window_ids = [w.pk for w in windows]
        # every leg of every trade is in exactly one of the closed windows
        legs = SettlementInstruction.objects.filter(trade__in=trades)
        assert legs.count() == 2 * len(trades)
        assert set(legs.values_list("netting_window", flat=True)) <= set(window_ids)
        # obligations sum to zero per window, asset and date
        totals: dict = defaultdict(Decimal)
        netted: dict = defaultdict(Decimal)
        for o in NetObligation.objects.filter(window__in=window_ids):
            totals[(o.window_id, o.asset_id, o.settlement_date)] += o.net
            netted[(o.participant_id, o.asset_id)] += o.net
        assert all(v == 0 for v in totals.values())
        # settling the nets moves every participant exactly as settling every leg gross would
        gross: dict = defaultdict(Decimal)
        for leg in legs:
            gross[(leg.payee_id, leg.asset_id)] += leg.amount
            gross[(leg.payer_id, leg.asset_id)] -= leg.amount
        assert {k: v for k, v in netted.items() if v} == {k: v for k, v in gross.items() if v}
        transaction.savepoint_rollback(sid)
