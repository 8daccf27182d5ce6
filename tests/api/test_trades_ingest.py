from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from settlement.models import SettlementInstruction, Trade
from tests import factories
from tests.conftest import token_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/trades/"
EXECUTED_AT = (timezone.now() - timedelta(minutes=5)).replace(microsecond=0).isoformat()


@pytest.fixture
def market(alice, bob, btc_usd, usd):
    factories.instrument(factories.aapl(), usd)
    return btc_usd


def good(n: int = 1, **overrides):
    item = {
        "external_id": f"E{n}",
        "symbol": "BTC/USD",
        "buyer": "ALICE",
        "seller": "BOB",
        "quantity": "0.25",
        "price": "64000.50",
        "executed_at": EXECUTED_AT,
    }
    item.update(overrides)
    return item


def test_single_trade_is_created_with_two_legs(staff_client, market):
    response = staff_client.post(URL, good(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["result"] == "created"
    assert body["source"] == "engine"
    legs = {leg["leg"]: leg for leg in body["instructions"]}
    assert legs["delivery"]["asset"] == "BTC" and legs["delivery"]["payer"] == "BOB"
    assert legs["payment"]["asset"] == "USD" and legs["payment"]["payer"] == "ALICE"
    assert legs["payment"]["amount"] == "16000.12"  # 0.25 * 64000.50 = 16000.125 -> half-even
    assert legs["delivery"]["amount"] == "0.25000000"
    assert (body["quantity"], body["price"], body["notional"]) == ("0.25000000", "64000.50", "16000.12")


def test_replay_returns_existing_and_creates_nothing(staff_client, market):
    first = staff_client.post(URL, good(), format="json")
    again = staff_client.post(URL, good(), format="json")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["result"] == "existing" and again.json()["id"] == first.json()["id"]
    assert Trade.objects.count() == 1 and SettlementInstruction.objects.count() == 2


def test_replay_with_equivalent_decimal_spelling_is_still_a_replay(staff_client, market):
    staff_client.post(URL, good(quantity="0.25"), format="json")
    again = staff_client.post(URL, good(quantity="0.2500"), format="json")
    assert again.status_code == 200


def test_same_id_different_content_is_a_conflict(staff_client, market):
    staff_client.post(URL, good(), format="json")
    response = staff_client.post(URL, good(quantity="0.30"), format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    assert Trade.objects.count() == 1


def test_batch_with_replays_creates_only_the_new_trades(staff_client, market):
    staff_client.post(URL, {"trades": [good(1), good(2)]}, format="json")
    response = staff_client.post(URL, {"trades": [good(1), good(2), good(3)]}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["existing"]) == (1, 2)
    assert [r["result"] for r in body["results"]] == ["existing", "existing", "created"]
    assert Trade.objects.count() == 3


def test_bare_list_is_accepted_as_a_batch(staff_client, market):
    response = staff_client.post(URL, [good(1), good(2)], format="json")
    assert response.status_code == 201 and response.json()["created"] == 2


def test_batch_is_all_or_nothing(staff_client, market):
    # given: 99 good trades and one bad one in the middle
    trades = [good(n) for n in range(100)]
    trades[57]["buyer"] = "NOBODY"
    # when
    response = staff_client.post(URL, {"trades": trades}, format="json")
    # then
    assert response.status_code == 400
    detail = response.json()["error"]["detail"]
    assert detail == [{"index": 57, "external_id": "E57", "errors": {"buyer": ["Unknown participant 'NOBODY'."]}}]
    assert not Trade.objects.exists() and not SettlementInstruction.objects.exists()


def test_conflict_in_a_batch_stores_nothing(staff_client, market):
    staff_client.post(URL, good(1), format="json")
    response = staff_client.post(URL, {"trades": [good(2), good(1, price="1.00")]}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["detail"][0]["index"] == 1
    assert Trade.objects.count() == 1


def test_repeated_id_with_different_content_inside_one_batch_is_rejected(staff_client, market):
    response = staff_client.post(URL, {"trades": [good(1), good(1, quantity="2")]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["detail"][0]["index"] == 1
    assert not Trade.objects.exists()


def future() -> str:
    return (timezone.now() + timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"buyer": "NOBODY"}, "buyer", "Unknown participant 'NOBODY'."),
        ({"seller": "NOBODY"}, "seller", "Unknown participant 'NOBODY'."),
        ({"symbol": "DOGE/USD"}, "symbol", "Unknown symbol 'DOGE/USD'."),
        ({"seller": "ALICE"}, "seller", "Buyer and seller must be different participants."),
        ({"quantity": "0"}, "quantity", "Must be greater than zero."),
        ({"quantity": "-1"}, "quantity", "Must be greater than zero."),
        ({"price": "0"}, "price", "Must be greater than zero."),
        ({"price": "-3.5"}, "price", "Must be greater than zero."),
        ({"quantity": "abc"}, "quantity", "Must be a decimal number given as a string or a number."),
        ({"quantity": "NaN"}, "quantity", "Must be a decimal number given as a string or a number."),
        ({"quantity": "0.123456789"}, "quantity", "BTC allows at most 8 decimal places."),
        # more digits than the decimal context's 28: still counted exactly (normalize() would round them away)
        ({"quantity": "0.2500000000000000000000000000001"}, "quantity", "BTC allows at most 8 decimal places."),
        ({"price": "64000.001"}, "price", "BTC/USD prices allow at most 2 decimal places."),
        ({"quantity": "0.00000001", "price": "0.01"}, "quantity", "The payment rounds to zero USD."),
        ({"executed_at": "yesterday"}, "executed_at", "Must be an ISO 8601 timestamp such as 2026-11-24T14:30:00Z."),
        ({"executed_at": "2026-11-24T10:00:00"}, "executed_at", "Must carry a timezone offset (e.g. Z or +01:00)."),
        (
            {"executed_at": "2026-13-40T10:00:00Z"},
            "executed_at",
            "Must be an ISO 8601 timestamp such as 2026-11-24T14:30:00Z.",
        ),
        ({"executed_at": None}, "executed_at", "This field may not be null."),
        ({"external_id": ""}, "external_id", "This field may not be blank."),
    ],
)
def test_bad_input_gets_a_specific_field_error(staff_client, market, overrides, field, message):
    response = staff_client.post(URL, {"trades": [good(1), good(2, **overrides)]}, format="json")
    assert response.status_code == 400, response.json()
    [item] = response.json()["error"]["detail"]
    assert item["index"] == 1
    assert message in item["errors"][field]
    assert not Trade.objects.exists()


def test_future_timestamp_is_refused(staff_client, market):
    response = staff_client.post(URL, good(executed_at=future()), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["detail"]["executed_at"] == ["Must not be in the future."]


def test_missing_fields_are_each_named(staff_client, market):
    response = staff_client.post(URL, {"external_id": "X"}, format="json")
    assert response.status_code == 400
    errors = response.json()["error"]["detail"]
    assert set(errors) == {"symbol", "buyer", "seller", "quantity", "price", "executed_at"}


def test_equity_quantity_precision_is_whole_shares(staff_client, market):
    response = staff_client.post(URL, good(symbol="AAPL/USD", quantity="1.5", price="190.00"), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["detail"]["quantity"] == ["AAPL allows at most 0 decimal places."]


def test_malformed_json_is_a_400(staff_client, market):
    response = staff_client.post(URL, data='{"trades": [', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_json_numbers_keep_exact_decimal_value(staff_client, market):
    body = (
        '{"external_id": "N1", "symbol": "BTC/USD", "buyer": "ALICE", "seller": "BOB", "quantity": 0.1, '
        f'"price": 3, "executed_at": "{EXECUTED_AT}"}}'
    )
    response = staff_client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 201, response.json()
    assert str(Trade.objects.get().quantity.normalize()) == "0.1"


def test_empty_and_oversized_batches_are_refused(staff_client, market, settings):
    assert staff_client.post(URL, {"trades": []}, format="json").status_code == 400
    settings.CLEARHOUSE_MAX_BATCH = 3
    response = staff_client.post(URL, {"trades": [good(n) for n in range(4)]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "batch_too_large"


def test_unauthenticated_requests_are_refused(client, market):
    response = client.post(URL, good(), content_type="application/json")
    assert response.status_code == 401


def test_participant_may_not_report_trades_even_its_own(market, alice, carol):
    for party in (carol, alice):  # a stranger to the trade, then one of its parties
        response = token_client(factories.participant_user(party)).post(URL, good(), format="json")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "participant_cannot_report_trades"
    assert not Trade.objects.exists()


def test_user_without_participant_or_staff_cannot_submit(market):
    client = token_client(factories.UserFactory(username="nobody"))
    assert client.post(URL, good(), format="json").status_code == 403


def test_large_batch_is_ingested_in_one_request(staff_client, market):
    response = staff_client.post(URL, {"trades": [good(n) for n in range(2000)]}, format="json")
    assert response.status_code == 201
    assert Trade.objects.count() == 2000 and SettlementInstruction.objects.count() == 4000
    assert Trade.history.count() == 2000 and SettlementInstruction.history.count() == 4000
