from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from settlement.models import SettlementInstruction, Trade
from settlement.services.trades import TradeInput, trades_ingest
from tests.factories import ACTOR

EXECUTED = timezone.now() - timedelta(minutes=3)


def items(instrument, buyer, seller, count: int) -> list[TradeInput]:
    return [
        TradeInput(
            source="race",
            external_id=f"R{n}",
            instrument=instrument,
            buyer=buyer,
            seller=seller,
            quantity=Decimal("1"),
            price=Decimal("2.50"),
            executed_at=EXECUTED,
        )
        for n in range(count)
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_batches_store_each_trade_once(alice, bob, btc_usd):
    # given: four upstream retries of the same 300-trade batch arriving together
    batch = items(btc_usd, alice, bob, 300)
    barrier = threading.Barrier(4)
    created: list[int] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait()
            created.append(trades_ingest(items=batch, actor=ACTOR).created_count)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then: exactly one request created them all, the others saw replays
    assert not errors, errors
    assert sorted(created) == [0, 0, 0, 300]
    assert Trade.objects.count() == 300
    assert SettlementInstruction.objects.count() == 600


@pytest.mark.django_db
def test_ingest_records_who_submitted(alice, bob, btc_usd, staff_user):
    result = trades_ingest(items=items(btc_usd, alice, bob, 1), actor=staff_user)
    trade = result.trades[0]
    assert trade.submitted_by == staff_user
    record = trade.history.get()
    assert record.history_user == staff_user and record.history_type == "+"


def _legs(source: str) -> list[tuple]:
    return sorted(
        SettlementInstruction.objects.filter(trade__source=source).values_list(
            "trade__external_id",
            "leg",
            "asset__code",
            "payer__code",
            "payee__code",
            "amount",
            "settlement_date",
            "status",
            "attempt",
        )
    )


@pytest.mark.django_db
def test_set_based_write_stores_each_trades_two_legs_in_its_window_with_history(alice, bob, btc_usd, usd):
    # given a batch of T+0 crypto trades and netted equity trades
    from tests import factories

    aapl_usd = factories.instrument(factories.aapl(), usd)

    def item(n: int) -> TradeInput:
        crypto = n % 2 == 0
        return TradeInput(
            source="copy",
            external_id=f"X{n}",
            instrument=btc_usd if crypto else aapl_usd,
            buyer=alice if n % 3 else bob,
            seller=bob if n % 3 else alice,
            quantity=Decimal("0.3") if crypto else Decimal("7"),
            price=Decimal("10.05"),
            executed_at=EXECUTED,
        )

    batch = [item(n) for n in range(6)]
    # when it is ingested
    result = trades_ingest(items=batch, actor=ACTOR)
    # then every trade has its delivery leg (base, seller -> buyer, quantity) and its payment leg
    # (quote, buyer -> seller, notional), pending, on the trade's settlement date
    expected = []
    for given, trade in zip(batch, result.trades, strict=True):
        base, quote = given.instrument.base.code, given.instrument.quote.code
        buyer, seller = given.buyer.code, given.seller.code
        date = trade.settlement_date
        expected.append((given.external_id, "delivery", base, seller, buyer, given.quantity, date, "pending", 1))
        expected.append((given.external_id, "payment", quote, buyer, seller, given.payment_amount, date, "pending", 1))
    assert _legs("copy") == sorted(expected)
    # the netted trades' legs are in the open equity window, the crypto ones in none
    legs = SettlementInstruction.objects.filter(trade__source="copy")
    assert set(legs.filter(trade__instrument=btc_usd).values_list("netting_window", flat=True)) == {None}
    windows = set(legs.filter(trade__instrument=aapl_usd).values_list("netting_window__asset_class", flat=True))
    assert windows == {"security"}
    # and each trade and leg has its one creation record, which names the leg's window
    assert Trade.history.filter(source="copy", history_type="+").count() == 6
    records = SettlementInstruction.history.filter(trade__source="copy")
    assert records.count() == 12 and set(records.values_list("history_type", flat=True)) == {"+"}
    assert {(r.id, r.netting_window_id) for r in records} == set(legs.values_list("id", "netting_window_id"))
