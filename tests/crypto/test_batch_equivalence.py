"""Property: locking a batch gives exactly what locking its trades one by one in pk order gives
(the same trades fail for short funds, the same balances), whatever the mix of participants."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.choices import AccountKind
from common.choices import InstructionStatus as S
from ledger.models import LedgerAccount
from settlement.crypto.batch_form import batches_form
from settlement.crypto.batch_lock import batch_lock
from settlement.crypto.pipeline import crypto_trade_lock
from settlement.models import Trade
from settlement.services.trades import TradeInput, trades_ingest
from tests import factories
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db

RESERVE = Decimal("0.01")


class Rollback(Exception):
    pass


trade_rows = st.lists(
    st.tuples(
        st.integers(0, 3),  # seller
        st.integers(0, 3),  # buyer
        st.sampled_from(["0.1", "0.5", "1", "2.5"]),  # quantity (ETH)
        st.sampled_from(["100.00", "1500.00", "3000.00"]),  # price (USD)
    ).filter(lambda r: r[0] != r[1]),
    min_size=1,
    max_size=12,
)
balances = st.lists(st.sampled_from(["0", "0.6", "2", "5"]), min_size=4, max_size=4)
cash = st.lists(st.sampled_from(["0", "500.00", "5000.00"]), min_size=4, max_size=4)


def _run(people, instrument, rows, *, batched: bool, eth) -> dict:
    outcome: dict = {}
    try:
        with transaction.atomic():
            items = [
                TradeInput(
                    source="prop",
                    external_id=f"P{n}",
                    instrument=instrument,
                    buyer=people[b],
                    seller=people[s],
                    quantity=Decimal(q),
                    price=Decimal(p),
                    executed_at=factories.timezone.now(),
                )
                for n, (s, b, q, p) in enumerate(rows)
            ]
            trades_ingest(items=items, actor=ACTOR)
            if batched:
                for batch_id in batches_form().batches:
                    batch_lock(batch_id=batch_id, fee_reserves={eth.pk: RESERVE})
            else:
                for trade in Trade.objects.filter(source="prop").order_by("pk"):
                    crypto_trade_lock(trade=trade, fee_reserves={eth.pk: RESERVE}, actor=ACTOR)
            outcome["status"] = {
                t.external_id: sorted(t.instructions.values_list("status", flat=True))
                for t in Trade.objects.filter(source="prop")
            }
            outcome["balances"] = sorted(
                (a.owner.code, a.asset.code, a.kind, a.balance)
                for a in LedgerAccount.objects.filter(
                    owner__isnull=False, kind__in=[AccountKind.AVAILABLE, AccountKind.LOCKED]
                )
            )
            raise Rollback
    except Rollback:
        pass
    return outcome


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=trade_rows, eth_balances=balances, usd_balances=cash)
def test_batch_lock_equals_one_by_one_in_pk_order(settings_engine, eth, usd, eth_usd, rows, eth_balances, usd_balances):
    people = []
    with transaction.atomic():
        sid = transaction.savepoint()
        for n in range(4):
            participant = factories.ParticipantFactory(code=f"P{n}")
            if eth_balances[n] != "0":
                factories.fund(participant, eth, eth_balances[n])
            if usd_balances[n] != "0":
                factories.fund(participant, usd, usd_balances[n])
            people.append(participant)
        one_by_one = _run(people, eth_usd, rows, batched=False, eth=eth)
        batched = _run(people, eth_usd, rows, batched=True, eth=eth)
        transaction.savepoint_rollback(sid)
    assert batched == one_by_one
    assert any(v == [S.LOCKED, S.LOCKED] for v in batched["status"].values()) or all(
        v == [S.FAILED, S.FAILED] for v in batched["status"].values()
    )


@pytest.fixture
def settings_engine(settings, chain):
    settings.CLEARHOUSE_CRYPTO_ENGINE = "batch"
    return chain
