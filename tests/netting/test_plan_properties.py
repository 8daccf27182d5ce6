"""Property: netting then settling through the central settlement account leaves every
participant with the same balances as settling every leg gross, for any set of trades; the CSA
ends empty and every leg is settled exactly once.

Runs on a T+1 crypto asset, whose plan is a book transfer on the internal ledger, so hypothesis
can try many trade sets quickly; the same plan code pays fiat and securities over the rails
(tests/netting/test_payments.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.choices import AssetKind, InstructionStatus, MarketCalendar
from ledger.models import LedgerAccount, TransitionLog
from netting.models import NettedInstruction, NettedStatus, NettingWindow, WindowStatus
from netting.pipeline import CSA, netted_advance
from netting.services import window_close
from settlement.models import SettlementInstruction
from settlement.services.trades import TradeInput, trades_ingest
from tests import factories
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db
FUNDS = {"XTN": Decimal("1000.00000000"), "XUS": Decimal("10000000.00")}


@pytest.fixture
def book(db):
    xtn = factories.AssetFactory(
        code="XTN",
        kind=AssetKind.CRYPTO,
        precision=8,
        settlement_cycle=1,
        calendar=MarketCalendar.ALWAYS,
        chain="ethereum",
    )
    usd = factories.AssetFactory(  # a cash token: its plan is a book transfer too (no bank account needed)
        code="XUS",
        kind=AssetKind.CRYPTO,
        precision=2,
        settlement_cycle=1,
        calendar=MarketCalendar.ALWAYS,
        chain="ethereum",
    )
    parties = [factories.ParticipantFactory(code=f"H{i}") for i in range(5)]
    for party in parties:
        factories.fund(party, xtn, str(FUNDS["XTN"]))
        factories.fund(party, usd, str(FUNDS["XUS"]))
    return {"xtn": xtn, "usd": usd, "instrument": factories.instrument(xtn, usd), "parties": parties}


_seq = iter(range(1, 10_000_000))
trade_rows = st.lists(
    st.tuples(
        st.integers(0, 4),
        st.integers(0, 4),
        st.integers(1, 500).map(lambda n: Decimal(n) / 100),
        st.integers(100, 90000).map(lambda n: Decimal(n) / 100),
    ).filter(lambda r: r[0] != r[1]),
    min_size=1,
    max_size=25,
)


def _balances(parties, assets) -> dict:
    return {
        (p.code, a.code): LedgerAccount.objects.get(owner=p, asset=a, kind="available").balance
        for p in parties
        for a in assets
    }


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=trade_rows)
def test_netting_then_settling_equals_gross_settlement(book, rows):
    parties, xtn, usd = book["parties"], book["xtn"], book["usd"]
    before = _balances(parties, [xtn, usd])
    trades = trades_ingest(
        items=[
            TradeInput(
                source="prop",
                external_id=f"P{next(_seq)}",
                instrument=book["instrument"],
                buyer=parties[b],
                seller=parties[s],
                quantity=q,
                price=p,
                executed_at=timezone.now(),
            )
            for b, s, q, p in rows
        ],
        actor=ACTOR,
    ).trades
    expected = dict(before)
    legs = SettlementInstruction.objects.filter(trade__in=trades).select_related("asset", "payer", "payee")
    for leg in legs:
        expected[(leg.payer.code, leg.asset.code)] -= leg.amount
        expected[(leg.payee.code, leg.asset.code)] += leg.amount
    window = window_close(window=NettingWindow.objects.get(status=WindowStatus.OPEN, asset_class="crypto"), actor=ACTOR)
    plan = NettedInstruction.objects.filter(window=window)
    for _ in range(3):  # pay-ins, then the pay-outs they release
        netted_advance(ids=list(plan.values_list("pk", flat=True)), actor=ACTOR)

    assert set(plan.values_list("status", flat=True)) <= {NettedStatus.SETTLED}
    assert _balances(parties, [xtn, usd]) == expected
    for csa in LedgerAccount.objects.filter(system_code__in=[CSA, f"{CSA}:locked"]):
        assert csa.balance == 0
    assert set(legs.values_list("status", flat=True)) == {InstructionStatus.SETTLED}
    settled_entries = TransitionLog.objects.filter(
        entity_type="instruction", entity_id__in=[leg.pk for leg in legs], to_status="settled"
    )
    assert settled_entries.count() == len(legs)  # each leg settled exactly once
