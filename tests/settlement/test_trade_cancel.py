"""Cancel is per trade (delivery versus payment): both legs or neither, and a netted trade only
while its window is open, under the window's row lock."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from common.choices import InstructionStatus as S
from common.choices import Leg, LockStatus
from common.exceptions import IllegalTransition, WindowNotOpen
from ledger.models import TransitionLog
from netting.models import NetObligation, NettingWindow, WindowStatus
from netting.services import window_close
from settlement.models import SettlementInstruction
from settlement.services.instructions import (
    instruction_cancel,
    instruction_lock,
    instruction_start_processing,
    trade_cancel,
)
from tests import factories
from tests.factories import ACTOR, fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def stock(usd):
    return factories.instrument(factories.aapl(), usd)


@pytest.fixture
def parties(db):
    return [factories.ParticipantFactory(code=f"D{n}") for n in range(2)]


def netted_trade(stock, parties, external_id: str):
    buyer, seller = parties
    return factories.trade(
        buyer=buyer, seller=seller, instrument=stock, quantity="5", price="200.00", external_id=external_id
    )


def statuses(trade) -> list[str]:
    return list(trade.instructions.order_by("leg").values_list("status", flat=True))


def test_trade_cancel_of_one_netted_leg_cancels_both_and_the_window_nets_neither(stock, parties):
    # given: two netted trades in the open window
    kept = netted_trade(stock, parties, "KEEP")
    cancelled = netted_trade(stock, parties, "GONE")
    window = NettingWindow.objects.get(asset_class="security", status=WindowStatus.OPEN)
    # when: ops cancel only the payment leg of one of them
    instruction_cancel(instruction=cancelled.instructions.get(leg=Leg.PAYMENT), actor=ACTOR, reason="client request")
    window = window_close(window=window)
    # then: both its legs are cancelled, and only the other trade is netted
    assert statuses(cancelled) == [S.CANCELLED, S.CANCELLED]
    assert statuses(kept) == [S.PENDING, S.PENDING]
    assert window.gross_legs == 2
    buyer_usd = NetObligation.objects.get(window=window, participant=parties[0], asset__code="USD")
    assert buyer_usd.net == Decimal("-1000.00")  # one trade's payment, not two
    logged = TransitionLog.objects.filter(entity_type="instruction", to_status=S.CANCELLED)
    legs = cancelled.instructions.values_list("pk", flat=True)
    assert sorted(logged.values_list("entity_id", flat=True)) == sorted(legs)


def test_trade_cancel_is_refused_once_the_window_is_closed(stock, parties):
    # given: a netted trade whose window has closed
    trade = netted_trade(stock, parties, "LATE")
    window = window_close(window=NettingWindow.objects.get(asset_class="security", status=WindowStatus.OPEN))
    logs = TransitionLog.objects.count()
    # when / then: refused with a stable code, nothing changed
    with pytest.raises(WindowNotOpen):
        instruction_cancel(instruction=trade.instructions.get(leg=Leg.DELIVERY), actor=ACTOR, reason="too late")
    assert WindowNotOpen.code == "netting_window_not_open"
    assert statuses(trade) == [S.PENDING, S.PENDING]
    assert TransitionLog.objects.count() == logs
    assert NettingWindow.objects.get(pk=window.pk).gross_legs == 2


def test_trade_cancel_is_refused_whole_when_a_leg_is_already_on_its_way(alice, bob, btc, btc_usd):
    # given: a gross trade whose delivery leg is processing (handed to the chain)
    fund(bob, btc, "1")
    trade = factories.trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")
    delivery = instruction_lock(instruction=trade.instructions.get(leg=Leg.DELIVERY), actor=ACTOR)
    instruction_start_processing(instruction=delivery, actor=ACTOR)
    # when / then: cancelling the other leg is refused, and it stays pending
    with pytest.raises(IllegalTransition, match="both legs go or neither"):
        instruction_cancel(instruction=trade.instructions.get(leg=Leg.PAYMENT), actor=ACTOR, reason="client request")
    assert statuses(trade) == [S.PROCESSING, S.PENDING]
    delivery.refresh_from_db()
    assert delivery.lock.status == LockStatus.PENDING


def test_trade_cancel_voids_both_legs_locks(alice, bob, btc, usd, btc_usd):
    # given: a gross trade with both legs locked
    fund(bob, btc, "1")
    fund(alice, usd, "100")
    trade = factories.trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")
    for leg in trade.instructions.all():
        instruction_lock(instruction=leg, actor=ACTOR)
    # when
    legs = trade_cancel(trade=trade, actor=ACTOR, reason="client request")
    # then: both cancelled, both locks voided; a second cancel is refused
    assert {leg.status for leg in legs} == {S.CANCELLED}
    assert {leg.lock.status for leg in SettlementInstruction.objects.filter(trade=trade)} == {LockStatus.VOIDED}
    with pytest.raises(IllegalTransition, match="already cancelled"):
        trade_cancel(trade=trade, actor=ACTOR, reason="again")


def _in_thread(target, *args) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = target(*args)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _held(service, hold: threading.Event, release: threading.Event):
    """Run ``service`` in a transaction that stays open (its locks held) until ``release``."""

    def run():
        with transaction.atomic():
            result = service()
            hold.set()
            release.wait(10)
        return result

    return run


def _window_agrees_with_legs(window_id: int, trade) -> None:
    """Never one leg netted and the other cancelled: both are in the window's totals, or neither."""
    window = NettingWindow.objects.get(pk=window_id)
    legs = statuses(trade)
    assert legs in ([S.PENDING, S.PENDING], [S.CANCELLED, S.CANCELLED])
    assert window.gross_legs == (2 if legs == [S.PENDING, S.PENDING] else 0)


@pytest.mark.django_db(transaction=True)
def test_trade_cancel_waits_for_a_closing_window_and_is_then_refused(stock, parties):
    # given: a close of the trade's window in progress (its transaction not yet committed)
    trade = netted_trade(stock, parties, "RACE1")
    window = NettingWindow.objects.get(asset_class="security", status=WindowStatus.OPEN)
    hold, release = threading.Event(), threading.Event()
    closer, _ = _in_thread(_held(lambda: window_close(window=window), hold, release))
    assert hold.wait(10)
    # when: a cancel comes in meanwhile
    canceller, cancel = _in_thread(lambda: trade_cancel(trade=trade, actor=ACTOR, reason="race"))
    canceller.join(0.5)
    blocked = canceller.is_alive()
    release.set()
    closer.join(10)
    canceller.join(10)
    # then: it waited for the close and was refused; both legs are netted
    assert blocked
    assert isinstance(cancel.get("error"), WindowNotOpen)
    _window_agrees_with_legs(window.pk, trade)
    assert statuses(trade) == [S.PENDING, S.PENDING]


@pytest.mark.django_db(transaction=True)
def test_trade_cancel_in_progress_holds_the_window_close_back(stock, parties):
    # given: a cancel of a netted trade in progress (its transaction not yet committed)
    trade = netted_trade(stock, parties, "RACE2")
    window = NettingWindow.objects.get(asset_class="security", status=WindowStatus.OPEN)
    hold, release = threading.Event(), threading.Event()
    canceller, _ = _in_thread(_held(lambda: trade_cancel(trade=trade, actor=ACTOR, reason="race"), hold, release))
    assert hold.wait(10)
    # when: the window closes meanwhile
    closer, close = _in_thread(lambda: window_close(window=window))
    closer.join(0.5)
    blocked = closer.is_alive()
    release.set()
    canceller.join(10)
    closer.join(10)
    # then: the close waited and nets neither leg
    assert blocked and "error" not in close
    _window_agrees_with_legs(window.pk, trade)
    assert statuses(trade) == [S.CANCELLED, S.CANCELLED]


@pytest.mark.django_db(transaction=True)
def test_trade_cancel_racing_window_close_never_splits_a_trade(stock, parties):
    # given / when: cancel and close started together, several rounds
    for round_ in range(6):
        trade = netted_trade(stock, parties, f"RACE-{round_}")
        window = NettingWindow.objects.get(asset_class="security", status=WindowStatus.OPEN)
        barrier = threading.Barrier(2)

        def cancel(trade=trade, barrier=barrier):
            barrier.wait(10)
            return trade_cancel(trade=trade, actor=ACTOR, reason="race")

        def close(window=window, barrier=barrier):
            barrier.wait(10)
            return window_close(window=window)

        threads = [_in_thread(cancel), _in_thread(close)]
        for thread, _ in threads:
            thread.join(10)
        (_, cancelled), (_, closed) = threads
        # then: the close always succeeds; the cancel either won or was refused, never half-done
        assert "error" not in closed
        assert "error" not in cancelled or isinstance(cancelled["error"], WindowNotOpen)
        _window_agrees_with_legs(window.pk, trade)
