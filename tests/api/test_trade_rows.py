"""The plain-code fast path of batch validation accepts a row only as the serializer would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from settlement import selectors
from settlement.api.serializers import TradeInputSerializer
from settlement.api.trade_rows import trade_rows_validate

pytestmark = pytest.mark.django_db

NOW = timezone.now()
WHEN = (NOW - timedelta(minutes=5)).isoformat()


def _row(**changes):
    row = {
        "external_id": "T1",
        "symbol": "BTC/USD",
        "buyer": "ALICE",
        "seller": "BOB",
        "quantity": "0.25",
        "price": "64000.50",
        "executed_at": WHEN,
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


# Valid rows, unusual rows the serializer accepts (and may normalise), and invalid ones.
ROWS = [
    _row(),
    _row(source="engine"),
    _row(source="someone-else"),
    _row(extra="ignored"),
    _row(external_id=" T1 "),
    _row(external_id=""),
    _row(external_id="x" * 101),
    _row(external_id="T\x00"),
    _row(external_id="Tä"),
    _row(external_id=7),
    _row(external_id=None),
    _row(external_id=...),
    _row(symbol="NOPE/USD"),
    _row(buyer="BOB"),
    _row(seller="NOBODY"),
    _row(quantity=3),
    _row(quantity=True),
    _row(quantity=0.25),
    _row(quantity="0.123456789"),
    _row(quantity="-1"),
    _row(quantity="1e3"),
    _row(quantity="0.000000001", price="0.01"),
    _row(price="64000.505"),
    _row(price="99999999999999999999", quantity="99999999999999999999"),
    _row(executed_at=(NOW + timedelta(hours=1)).isoformat()),
    _row(executed_at=(NOW - timedelta(days=400)).isoformat()),
    _row(executed_at="2026-01-01T00:00:00"),
    _row(executed_at="yesterday"),
    "not a dict",
]


@pytest.mark.parametrize("row", ROWS, ids=[repr(r)[:60] for r in ROWS])
def test_fast_path_accepts_only_what_the_serializer_accepts_with_the_same_values(row, alice, bob, btc_usd):
    # given the lookups of a request by the engine
    participants, instruments = selectors.ingest_lookups()
    context = {"participants": participants, "instruments": instruments, "source": "engine"}
    # when the row goes through the fast path and through the serializer
    fast = trade_rows_validate([row], **context, now=timezone.now())
    serializer = TradeInputSerializer(data=[row], many=True, context=context)
    valid = serializer.is_valid()
    # then the fast path never accepts a row the serializer refuses, and gives the same input
    if fast is not None:
        assert valid, serializer.errors
        assert fast == [serializer.child.to_trade_input(attrs) for attrs in serializer.validated_data]
    # and a plain well-formed row takes the fast path
    if row is ROWS[0]:
        assert fast is not None


def test_a_batch_with_one_bad_row_still_lists_it_and_stores_nothing(staff_client, alice, bob, btc_usd):
    # given a batch of valid rows and one with a bad price
    rows = [_row(external_id=f"B{n}") for n in range(20)]
    rows[13] = _row(external_id="B13", price="1.001")
    # when it is posted
    response = staff_client.post("/api/v1/trades/", {"trades": rows}, format="json")
    # then the bad row is named with its field error and nothing is stored
    assert response.status_code == 400
    detail = response.json()["error"]["detail"]
    assert [(d["index"], d["external_id"], list(d["errors"])) for d in detail] == [(13, "B13", ["price"])]
    from settlement.models import Trade

    assert not Trade.objects.exists()
