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
def test_set_based_and_orm_writes_store_the_same_rows(alice, bob, btc_usd, monkeypatch):
    from settlement.services import trades as trades_module

    def batch(source: str) -> list[TradeInput]:
        return [
            TradeInput(
                source=source,
                external_id=f"X{n}",
                instrument=btc_usd,
                buyer=alice if n % 2 else bob,
                seller=bob if n % 2 else alice,
                quantity=Decimal("0.3"),
                price=Decimal("10.05"),
                executed_at=EXECUTED,
            )
            for n in range(5)
        ]

    trades_ingest(items=batch("copy"), actor=ACTOR)
    monkeypatch.setattr(trades_module, "_set_based", lambda: False)
    trades_ingest(items=batch("orm"), actor=ACTOR)
    assert _legs("copy") == _legs("orm")
    assert len(_legs("copy")) == 10
    assert Trade.history.filter(source="copy").count() == Trade.history.filter(source="orm").count() == 5
    copied = SettlementInstruction.history.filter(trade__source="copy")
    assert copied.count() == 10 and set(copied.values_list("history_type", flat=True)) == {"+"}
