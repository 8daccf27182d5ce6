"""Query budgets of the hot paths (issue 19): a change that adds queries to one of them fails
here, where a timing would only be noise. Each budget is what the path does today, plus at most
one or two of headroom; when a budget has to grow, say why in the commit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.choices import Leg
from settlement.models import FeeRule
from settlement.services.instructions import instruction_lock, instruction_settle, instruction_start_processing
from tests.factories import ACTOR, fund, trade

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("transition_log_started")]


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
    # when batches of 10 and of 200 new trades are posted
    counts = {}
    for start, size in ((1000, 10), (2000, 200)):

        def post(start=start, size=size):
            response = staff_client.post("/api/v1/trades/", _batch(start, size), format="json")
            assert response.status_code == 201, response.content[:300]

        counts[size] = _queries(post)
    # then both cost the same queries, within the budget
    _assert_constant(counts, INGEST_BATCH, "ingest batch")


# --- one window close ----------------------------------------------------------------------------
WINDOW_CLOSE = 23 + 1  # window row, next window, 4 set-based statements, plan, history, log


def _netted_market(usd):
    from tests import factories

    aapl_usd = factories.instrument(factories.aapl(), usd)
    parties = [factories.ParticipantFactory(code=f"P{i}") for i in range(4)]
    for party in parties:
        fund(party, usd, "10000000")
    return aapl_usd, parties


def _ingest_netted(aapl_usd, parties, *, start: int, count: int) -> None:
    from django.utils import timezone

    from settlement.services.trades import TradeInput, trades_ingest

    items = [
        TradeInput(
            source="tests",
            external_id=f"W{start + i}",
            instrument=aapl_usd,
            buyer=parties[i % 4],
            seller=parties[(i + 1) % 4],
            quantity=Decimal(1 + i % 5),
            price=Decimal("190.00"),
            executed_at=timezone.now(),
        )
        for i in range(count)
    ]
    trades_ingest(items=items, actor=ACTOR)


def test_window_close_queries_do_not_grow_with_the_legs(usd, django_capture_on_commit_callbacks):
    # given four participants trading a netted instrument
    from netting.models import NettingWindow, WindowStatus
    from netting.services import window_close

    aapl_usd, parties = _netted_market(usd)
    counts = {}
    for start, trades in ((0, 8), (1000, 80)):
        # when a window holding that many trades (twice as many legs) closes
        _ingest_netted(aapl_usd, parties, start=start, count=trades)
        window = NettingWindow.objects.get(asset_class="security", status=WindowStatus.OPEN)
        with django_capture_on_commit_callbacks(execute=False):
            counts[trades] = _queries(lambda window=window: window_close(window=window, actor=ACTOR))
    # then both closes cost the same queries, within the budget
    _assert_constant(counts, WINDOW_CLOSE, "window close")


# --- one reconciliation run ----------------------------------------------------------------------
RECONCILIATION_RUN = 19 + 1  # run row, snapshots, one classifying statement, breaks' history and log


def test_reconciliation_run_queries_do_not_grow_with_the_records():
    # given unexpected credits on the house USD account (each becomes a break)
    from datetime import timedelta

    from reconciliation.engine import reconciliation_run
    from reconciliation.importers import external_import
    from reconciliation.models import Break, Source
    from tests import factories
    from tests.helpers import house_usd_credit

    factories.usd()
    counts = {}
    seq = 0
    for records in (2, 12):
        for _ in range(records):
            seq += 1
            content = house_usd_credit(reference=f"NOBODY{seq}", amount="250.00", entry_ref=f"U{seq}")
            external_import(source=Source.CAMT054, name=f"u{seq}", content=content, actor=ACTOR)
        # when a run finds them
        counts[records] = _queries(lambda: reconciliation_run(actor=ACTOR, grace=timedelta(0)))
    # then both runs cost the same queries, within the budget, and every credit is a break
    assert Break.objects.count() == 14
    _assert_constant(counts, RECONCILIATION_RUN, "reconciliation run")


# --- reads: the ops dashboard and the API lists --------------------------------------------------
DASHBOARD = 18 + 1  # session, user, roles, then aggregate counts
# token and its user, the page's count, the page (prefetches: legs of trades, 3 more)
API_LISTS = {"trades": 8 + 1, "instructions": 4 + 1, "balances": 4 + 1, "netting-windows": 4 + 1, "net-payments": 4 + 1}


def _settled_trades(alice, bob, btc_usd, usd, btc, *, start: int, count: int) -> None:
    from settlement.services.instructions import trade_settle_internal

    for i in range(start, start + count):
        t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="0.01", price="100", external_id=f"R{i}")
        trade_settle_internal(trade=t, actor=ACTOR)


def test_ops_dashboard_queries_do_not_grow_with_the_trades(client, django_user_model, alice, bob, btc_usd, usd, btc):
    # given an operator and settled trades
    from django.urls import reverse

    from tests.helpers import staff_user

    fund(alice, usd, "1000000")
    fund(bob, btc, "100")
    client.force_login(staff_user(django_user_model, "ops", "operator"))
    counts = {}
    for start, count in ((0, 2), (100, 12)):
        _settled_trades(alice, bob, btc_usd, usd, btc, start=start, count=count)
        # when the dashboard is shown
        counts[count] = _queries(lambda: client.get(reverse("ops-dashboard")))
    # then it costs the same queries, within the budget
    _assert_constant(counts, DASHBOARD, "dashboard")


@pytest.mark.parametrize("path", ["trades", "instructions", "balances", "netting-windows", "net-payments"])
def test_api_list_queries_do_not_grow_with_the_rows(staff_client, path, alice, bob, btc_usd, usd, btc):
    # given settled crypto trades and netted trades in a closed window with its plan
    from netting.models import NettingWindow, WindowStatus
    from netting.services import window_close

    fund(alice, usd, "1000000")
    fund(bob, btc, "100")
    aapl_usd, parties = _netted_market(usd)
    staff_client.get(f"/api/v1/{path}/")  # warm: the token's first use is recorded once
    counts = {}
    for start, count in ((0, 2), (100, 12)):
        _settled_trades(alice, bob, btc_usd, usd, btc, start=start, count=count)
        _ingest_netted(aapl_usd, parties, start=start, count=count)
        window_close(window=NettingWindow.objects.get(asset_class="security", status=WindowStatus.OPEN), actor=ACTOR)
        # when the list is read
        responses = []
        counts[count] = _queries(lambda out=responses: out.append(staff_client.get(f"/api/v1/{path}/")))
        assert responses[0].status_code == 200 and responses[0].json()["results"], responses[0].content[:200]
    # then it costs the same queries, within the budget
    _assert_constant(counts, API_LISTS[path], f"GET /api/v1/{path}/")


# --- netted payments: a batch of pay-ins advanced (fiat) ----------------------------------------
# Per payment (lock step and message in one transaction, the send, the acceptance): the row under
# its lock, the ledger lock and its journal, the payment's and the attempt's rows and history, one
# log append per transaction. Per batch: the accounts on file and the fee book, read once. Issue 19
# found about 68 statements a payment end to end, among them a bank-account, fee-rule and
# fee-charge lookup per payment and per step, a report UPDATE per report and two or three pay-out
# queries per settled pay-in.
ADVANCE_PER_PAYMENT, ADVANCE_BATCH = 37 + 1, 5 + 1  # savepoints included

from tests.netting.conftest import fiat_market  # noqa: E402, F401 - the fixture, for the tests below


def _fx_window(m, pairs: list[tuple[int, int]], start: int) -> list[int]:
    """Close a fiat window of EUR/USD trades between the given parties; the ids of its pay-ins."""
    from django.utils import timezone

    from netting.models import Direction, NettedInstruction, NettingWindow, WindowStatus
    from netting.services import window_close
    from settlement.services.trades import TradeInput, trades_ingest

    items = [
        TradeInput("tests", f"FXQ{start + n}", m.eur_usd, m.parties[b], m.parties[s], Decimal("100"),
                   Decimal("1.1000"), timezone.now())
        for n, (b, s) in enumerate(pairs)
    ]  # fmt: skip
    trades_ingest(items=items, actor=ACTOR)
    window = window_close(window=NettingWindow.objects.get(asset_class="fiat", status=WindowStatus.OPEN), actor=ACTOR)
    return list(
        NettedInstruction.objects.filter(window=window, direction=Direction.PAY_IN)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _linear(counts: dict[int, int]) -> tuple[float, float]:
    """(queries per item, fixed queries) of two measurements {items: queries}."""
    (n1, q1), (n2, q2) = sorted(counts.items())
    per = (q2 - q1) / (n2 - n1)
    return per, q1 - per * n1


def test_netted_payments_cost_a_fixed_number_of_queries_each(fiat_market, django_capture_on_commit_callbacks):  # noqa: F811
    # given two closed fiat windows: one EUR/USD trade, then two (twice the pay-ins)
    from netting.models import NettedInstruction
    from netting.pipeline import netted_advance

    m = fiat_market
    advance = {}
    for start, pairs in ((0, [(0, 1)]), (10, [(0, 1), (2, 3)])):
        ids = _fx_window(m, pairs, start)
        # when the pay-ins are advanced as one batch (lock, message, send, acceptance)
        with django_capture_on_commit_callbacks(execute=False):
            advance[len(ids)] = _queries(lambda ids=ids: netted_advance(ids=ids))
        assert set(NettedInstruction.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"submitted"}
    # then each payment costs the same fixed number of queries, and a batch a fixed overhead
    for what, counts, per_budget, fixed_budget in (("advance", advance, ADVANCE_PER_PAYMENT, ADVANCE_BATCH),):
        per, fixed = _linear(counts)
        assert per <= per_budget, f"{what}: {per} queries per payment ({counts}) over {per_budget}"
        assert fixed <= fixed_budget, f"{what}: {fixed} queries per batch ({counts}) over {fixed_budget}"
