"""Query budgets of the batch engine: every stage costs the same number of statements for 4 or 16
trades (set-based: no statement per item), counted on the in-process chain."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from settlement.crypto.batch_chain import batch_broadcast, batch_sign
from settlement.crypto.batch_form import batches_form
from settlement.crypto.batch_lock import batch_lock
from settlement.crypto.batch_settle import batch_check
from settlement.models import CryptoBatch
from tests.crypto.test_batch_engine import engine, ingest, market  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def stage_queries(eth, eth_usd, people, n: int, tag: str) -> dict[str, int]:
    ingest(eth_usd, people, [("S1", "B1", "0.01"), ("S2", "B2", "0.01")] * (n // 2), tag=tag)
    counts = {}
    with CaptureQueriesContext(connection) as ctx:
        (batch_id,) = batches_form().batches
    counts["form"] = len(ctx)
    for name, run in (
        ("lock", lambda: batch_lock(batch_id=batch_id, fee_reserves={eth.pk: Decimal("0.001")})),
        ("sign", lambda: batch_sign(batch_id=batch_id)),
        ("broadcast", lambda: batch_broadcast(batch_id=batch_id)),
        ("check", lambda: batch_check(batch_id=batch_id)),
    ):
        with CaptureQueriesContext(connection) as ctx:
            run()
        counts[name] = len(ctx)
    assert CryptoBatch.objects.get(pk=batch_id).settled == n
    return counts


def test_each_stage_costs_the_same_for_4_and_16_trades(market, eth, eth_usd):  # noqa: F811
    stage_queries(eth, eth_usd, market, 2, "warm")  # house accounts created once, on first use
    small = stage_queries(eth, eth_usd, market, 4, "small")
    large = stage_queries(eth, eth_usd, market, 16, "large")
    assert small == large, (small, large)
    assert sum(large.values()) < 160, large
