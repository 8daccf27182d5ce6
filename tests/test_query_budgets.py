"""Query budgets of the hot paths (issue 19): a change that adds queries to one of them fails
here, where a timing would only be noise. Each budget is what the path does today, plus at most
one or two of headroom; when a budget has to grow, say why in the commit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from settlement.choices import Leg
from settlement.models import FeeRule
from settlement.services.instructions import instruction_lock, instruction_settle, instruction_start_processing
from tests.factories import ACTOR, fund, trade

pytestmark = pytest.mark.django_db


@pytest.fixture
def funded_trade(alice, bob, btc_usd, usd, btc):
    fund(alice, usd, "1000000")
    fund(bob, btc, "100")
    return trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")


@pytest.fixture
def fee_rules(usd):
    FeeRule.objects.create(name="house", bps=Decimal("10"), valid_from="2020-01-01T00:00:00Z")
    FeeRule.objects.create(name="usd", asset=usd, bps=Decimal("20"), valid_from="2020-01-01T00:00:00Z")


# --- one status update ---------------------------------------------------------------------------
# lock: instruction row, fee charges and rules (payment leg), both owner accounts, lock by
# reference, lock row and its history, accounts locked, journal, postings, balances in one
# statement, instruction row and its history, log head, log row, head update (+ savepoints).
# Counted inside the test's transaction, so each nested atomic block adds a SAVEPOINT/RELEASE pair.
# Issue 19 found lock 24-27, processing 8, settle 27 (+ per-charge lookups) before the fixes.
LOCK_DELIVERY, LOCK_PAYMENT, LOCK_PAYMENT_FEES = 20 + 1, 22 + 1, 24 + 1
PROCESSING = 8
SETTLE_DELIVERY, SETTLE_PAYMENT, SETTLE_PAYMENT_FEES = 20 + 1, 21 + 1, 30 + 1


def _run(django_assert_max_num_queries, instruction, service, budget):
    with django_assert_max_num_queries(budget):
        return service(instruction=instruction, actor=ACTOR)


@pytest.mark.parametrize("leg", [Leg.DELIVERY, Leg.PAYMENT])
def test_instruction_status_updates_stay_within_their_query_budgets(funded_trade, leg, django_assert_max_num_queries):
    # given a pending leg of a funded trade, no fee rules
    instruction = funded_trade.instructions.get(leg=leg)
    lock_budget, settle_budget = (
        (LOCK_DELIVERY, SETTLE_DELIVERY) if leg == Leg.DELIVERY else (LOCK_PAYMENT, SETTLE_PAYMENT)
    )
    # when it is locked, handed to the rail and settled, one transaction each
    # then each step stays within its budget
    instruction = _run(django_assert_max_num_queries, instruction, instruction_lock, lock_budget)
    instruction = _run(django_assert_max_num_queries, instruction, instruction_start_processing, PROCESSING)
    instruction = _run(django_assert_max_num_queries, instruction, instruction_settle, settle_budget)
    assert instruction.status == "settled"


def test_instruction_status_updates_with_fees_stay_within_their_query_budgets(
    funded_trade, fee_rules, django_assert_max_num_queries
):
    # given the cash leg of a funded trade and fee rules for both parties
    instruction = funded_trade.instructions.get(leg=Leg.PAYMENT)
    # when it is locked (fees computed), handed to the rail and settled (fees posted)
    instruction = _run(django_assert_max_num_queries, instruction, instruction_lock, LOCK_PAYMENT_FEES)
    instruction = _run(django_assert_max_num_queries, instruction, instruction_start_processing, PROCESSING)
    instruction = _run(django_assert_max_num_queries, instruction, instruction_settle, SETTLE_PAYMENT_FEES)
    # then each step stays within its budget and both fees were posted
    assert instruction.status == "settled"
    assert instruction.fee_charges.filter(status="posted").count() == 2


# --- helpers for the paths whose cost must not grow with their input ---------------------------


def _queries(action) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured)


def _assert_constant(counts: dict[int, int], budget: int, what: str) -> None:
    """The same number of queries for every size, and within the budget."""
    assert len(set(counts.values())) == 1, f"{what}: queries grow with the size: {counts}"
    assert max(counts.values()) <= budget, f"{what}: {counts} over the budget of {budget}"


# --- one ingest batch over HTTP ------------------------------------------------------------------
INGEST_BATCH = 15 + 1  # token, participants, instruments, trades, legs, accounts, windows, history, log


def _batch(start: int, size: int) -> dict:
    from datetime import timedelta

    from django.utils import timezone

    executed = (timezone.now() - timedelta(minutes=5)).replace(microsecond=0).isoformat()
    symbols = ("BTC/USD", "AAPL/USD")
    return {
        "trades": [
            {
                "external_id": f"Q{start + i}",
                "symbol": symbols[i % 2],
                "buyer": "ALICE" if i % 3 else "BOB",
                "seller": "BOB" if i % 3 else "ALICE",
                "quantity": "0.25" if i % 2 == 0 else "3",
                "price": "64000.50" if i % 2 == 0 else "190.00",
                "executed_at": executed,
            }
            for i in range(size)
        ]
    }


def test_trades_ingest_batch_queries_do_not_grow_with_the_batch(staff_client, alice, bob, btc_usd, usd):
    # given a market with a crypto T+0 and a netted instrument, and one batch already in (warm)
    from tests import factories

    factories.instrument(factories.aapl(), usd)
    assert staff_client.post("/api/v1/trades/", _batch(0, 4), format="json").status_code == 201
    # when batches of 10 and of 100 new trades are posted
    counts = {}
    for start, size in ((1000, 10), (2000, 100)):

        def post(start=start, size=size):
            response = staff_client.post("/api/v1/trades/", _batch(start, size), format="json")
            assert response.status_code == 201, response.content[:300]

        counts[size] = _queries(post)
    # then both cost the same queries, within the budget
    _assert_constant(counts, INGEST_BATCH, "ingest batch")
