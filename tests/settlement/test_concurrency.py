"""Many writers at once on shared accounts: no deadlock, no lost update, the ledger still adds up."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from common.choices import InstructionStatus
from settlement.models import SettlementInstruction
from settlement.services.instructions import trade_reverse, trade_settle_internal
from tests.factories import ACTOR, ParticipantFactory, fund, trade
from tests.settlement.test_ledger import assert_ledger_consistent


def run_in_threads(jobs, threads: int) -> list[BaseException]:
    errors: list[BaseException] = []
    queue = list(jobs)
    guard = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        try:
            while True:
                with guard:
                    if not queue:
                        return
                    job = queue.pop()
                try:
                    job()
                except BaseException as exc:
                    errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_concurrent_dvp_settlements_and_reversals_between_shared_participants(btc, usd, btc_usd):
    # given: four participants trading with each other in every direction
    people = [ParticipantFactory(code=f"C{n}") for n in range(4)]
    for p in people:
        fund(p, btc, "100")
        fund(p, usd, "1000000")
    trades = []
    for n in range(80):
        buyer, seller = people[n % 4], people[(n * 3 + 1) % 4]
        if buyer == seller:
            seller = people[(n + 1) % 4]
        trades.append(
            trade(buyer=buyer, seller=seller, instrument=btc_usd, quantity="0.5", price="1000", external_id=f"C{n}")
        )
    # when: eight threads settle them all at once, then reverse half of them at once
    errors = run_in_threads([lambda t=t: trade_settle_internal(trade=t, actor=ACTOR) for t in trades], threads=8)
    assert not errors, errors[:3]
    errors = run_in_threads(
        [lambda t=t: trade_reverse(trade=t, actor=ACTOR, reason="bulk correction") for t in trades[::2]], threads=8
    )
    # then
    assert not errors, errors[:3]
    statuses = list(SettlementInstruction.objects.values_list("status", flat=True))
    assert statuses.count(InstructionStatus.SETTLED) == 80
    assert statuses.count(InstructionStatus.REVERSED) == 80
    assert_ledger_consistent()
    total_btc = sum((a.balance for p in people for a in p.ledger_accounts.filter(asset=btc)), start=Decimal(0))
    assert total_btc == Decimal("400")
