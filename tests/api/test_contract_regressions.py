"""The defects the schemathesis run found, one fast test each: out-of-range pagination and
timestamps were 500s, garbage was silently accepted, the schema said less than the truth."""

from __future__ import annotations

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from tests import factories
from tests.conftest import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_trade(alice, bob, btc_usd, usd):
    factories.fund(alice, usd, "100")
    return factories.trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="10")


@pytest.fixture
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.mark.parametrize(
    "query",
    [
        "limit=42434741586399723520",
        "limit=0",
        "limit=1001",
        "limit=abc",
        "offset=-9169",
        "offset=null",
        "limit=5&limit=5",
    ],
)
def test_pagination_refuses_out_of_range_or_garbage(one_trade, staff_client, query):
    # given: a stored trade (an empty table never reaches the database's bigint)
    # when
    response = staff_client.get(f"/api/v1/trades/?{query}")
    # then: a 400 in the API's error shape, never a 500 or a silently ignored parameter
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_pagination_accepts_its_documented_range(one_trade, staff_client):
    # when
    bounds = [staff_client.get(f"/api/v1/trades/?{q}") for q in ("limit=1000&offset=0", "limit=1", "limit=&offset=")]
    # then
    assert [r.status_code for r in bounds] == [200, 200, 200]
    assert [len(r.json()["results"]) for r in bounds] == [1, 1, 1]


@pytest.mark.parametrize("closed_from", ["0001-01-01T00:00:00%2B05:00", "10000-01-01T00:00:00Z", "not-a-time"])
def test_window_filter_refuses_timestamps_out_of_range(staff_client, closed_from):
    # given: a closed window, so the filter reaches the database
    from netting.models import NettingWindow, WindowStatus

    NettingWindow.objects.create(asset_class="security", status=WindowStatus.CLOSED, **_window_times())
    # when
    response = staff_client.get(f"/api/v1/netting-windows/?closed_from={closed_from}")
    # then: a 400, never a 500
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("closed_from", "count"),
    [
        ("0781-09-26T13:02:13-21:23", 1),
        ("5373-05-12T02:59:08%2B16:44", 0),
        ("2026-11-30T23:00:00-21:30", 0),  # 2026-12-01T20:30Z
        ("2026-11-30T10:00:00-21:30", 1),  # 2026-12-01T07:30Z
    ],
)
def test_window_filter_brings_timestamps_with_large_offsets_to_utc(staff_client, closed_from, count):
    # given: a window closed at 2026-12-01T12:00Z
    from netting.models import NettingWindow, WindowStatus

    NettingWindow.objects.create(asset_class="security", status=WindowStatus.CLOSED, **_window_times())
    # when: an offset PostgreSQL refuses (it allows less than 16 hours): that was a 500
    response = staff_client.get(f"/api/v1/netting-windows/?closed_from={closed_from}")
    # then: compared in UTC
    assert response.status_code == 200
    assert response.json()["count"] == count


def _window_times():
    from datetime import UTC, datetime

    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    return {"opened_at": at, "closes_at": at, "closed_at": at}


@pytest.mark.parametrize("query", ["settlement_date=2026-12-01&settlement_date=2026-12-02", "window=1.5", "window=x"])
def test_filters_refuse_repeated_or_mistyped_values(staff_client, query):
    # when
    path = "/api/v1/trades/" if query.startswith("settlement") else "/api/v1/net-payments/"
    response = staff_client.get(f"{path}?{query}")
    # then
    assert response.status_code == 400


def test_empty_filter_values_mean_not_given(one_trade, staff_client):
    # when: empty values, as an HTML form sends them (the schema says allowEmptyValue)
    response = staff_client.get("/api/v1/instructions/?status=&leg=&settlement_date=&asset=")
    # then
    assert response.status_code == 200 and response.json()["count"] == 2


def test_trades_accept_json_only_and_the_schema_says_so(alice, bob, btc_usd, schema):
    # given
    client = token_client(factories.UserFactory(username="engine-svc", is_staff=True))
    body = {"trades": '[{"external_id": "0"}]'}
    # when: a multipart body (the schema used to list it, the view then refused its content)
    response = client.post("/api/v1/trades/", body, format="multipart")
    # then: 415, and JSON is the only documented request media type
    assert response.status_code == 415
    for path in ("/api/v1/trades/", "/api/v1/fees/preview/"):
        assert list(schema["paths"][path]["post"]["requestBody"]["content"]) == ["application/json"]


def test_fee_charge_rule_is_documented_nullable(schema):
    # then: a pass-through charge (gas, bank charges) has no rule and the API returns null
    assert schema["components"]["schemas"]["FeeCharge"]["properties"]["rule"]["nullable"] is True


def test_every_operation_documents_its_real_error_statuses(schema):
    # then: each operation lists what it can answer, each error in the API's error shape
    documented = {
        (method.upper(), path): set(operation["responses"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    assert documented[("GET", "/api/v1/trades/")] == {"200", "400", "401", "403", "429"}
    assert documented[("GET", "/api/v1/trades/{id}/")] == {"200", "401", "403", "404", "429"}
    assert documented[("POST", "/api/v1/trades/")] == {"200", "201", "400", "401", "403", "409", "415", "429"}
    assert documented[("GET", "/api/v1/statements/")] == {"200", "400", "401", "403", "429"}
    error = schema["paths"]["/api/v1/trades/"]["get"]["responses"]["400"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/Error"}


def test_statement_documents_its_parameters_and_media_types(schema):
    # then
    operation = schema["paths"]["/api/v1/statements/"]["get"]
    assert {p["name"]: p.get("required", False) for p in operation["parameters"]} == {
        "from": True,
        "to": True,
        "output": False,
        "participant": False,
    }
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv", "application/pdf"}


def test_statement_period_ending_on_the_last_day_is_refused(alice):
    # given
    client = token_client(factories.participant_user(alice))
    # when
    response = client.get("/api/v1/statements/?from=9999-12-30&to=9999-12-31")
    # then: 400, not an overflow (500)
    assert response.status_code == 400


def test_fee_preview_notional_beyond_the_amount_column_is_refused(alice, bob, btc_usd, staff_client):
    # when: each factor fits, their product has 27 digits before the point
    body = {"symbol": "BTC/USD", "buyer": "ALICE", "seller": "BOB", "quantity": "45131805864758650000", "price": "1"}
    response = staff_client.post("/api/v1/fees/preview/", {**body, "price": "22859479.05"}, format="json")
    # then: 400, not a Decimal InvalidOperation (500)
    assert response.status_code == 400
    assert "price" in response.json()["error"]["detail"]


def test_trade_notional_beyond_the_amount_column_is_refused(alice, bob, btc_usd, staff_client):
    # given
    from settlement.models import Trade

    trade = {"external_id": "BIG", "symbol": "BTC/USD", "buyer": "ALICE", "seller": "BOB"}
    # when
    response = staff_client.post(
        "/api/v1/trades/",
        {**trade, "quantity": "99999999999999", "price": "99999999999999", "executed_at": "2026-12-01T12:00:00Z"},
        format="json",
    )
    # then: 400 and nothing stored
    assert response.status_code == 400
    assert not Trade.objects.exists()


@pytest.mark.parametrize("value", [" 1", "1e5", "+1", "01.5", "", "0", "-1"])
def test_fee_preview_decimal_strings_follow_the_documented_pattern(alice, bob, btc_usd, staff_client, value):
    # when
    body = {"symbol": "BTC/USD", "buyer": "ALICE", "seller": "BOB", "quantity": value, "price": "10"}
    response = staff_client.post("/api/v1/fees/preview/", body, format="json")
    # then: what the schema's pattern refuses, the API refuses
    assert response.status_code == 400


def test_unknown_api_path_answers_json(staff_client):
    # when: an id the route does not match (the schema documents JSON for the 404)
    response = staff_client.get("/api/v1/instructions/-5.3e-291/")
    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["code"] == "not_found"


def test_statement_participant_code_with_nul_is_refused(alice, staff_client):
    # when: staff name a participant whose code holds a NUL character
    response = staff_client.get("/api/v1/statements/?from=2026-01-01&to=2026-01-02&participant=AL%00ICE")
    # then: 400 (no such participant), not a database error (500)
    assert response.status_code == 400


def test_trade_ingest_responses_match_their_documented_schema(alice, bob, btc_usd, staff_client, schema):
    # given
    import jsonschema

    def valid(body):
        document = {"$ref": "#/components/schemas/TradeIngestResult", "components": schema["components"]}
        jsonschema.validate(body, document)
        return True

    trade = {"symbol": "BTC/USD", "buyer": "ALICE", "seller": "BOB", "quantity": "1", "price": "10.5"}
    at = {"executed_at": timezone.now().isoformat()}
    # when: one trade, then a batch
    single = staff_client.post("/api/v1/trades/", {**trade, **at, "external_id": "S1"}, format="json")
    batch = staff_client.post("/api/v1/trades/", {"trades": [{**trade, **at, "external_id": "B1"}]}, format="json")
    # then: both bodies are what the schema says (the 200/201 used to have no schema at all)
    assert (single.status_code, batch.status_code) == (201, 201)
    assert valid(single.json()) and valid(batch.json())
    assert "TradeIngestResult" in str(schema["paths"]["/api/v1/trades/"]["post"]["responses"]["201"])


def test_malformed_detail_id_is_the_views_json_404(staff_client, settings):
    # given: DEBUG on, as in the demo (Django's own 404 page would be HTML)
    settings.DEBUG = True
    # when
    response = staff_client.get("/api/v1/trades/-5.3e-291/")
    # then
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


def test_trade_submission_documents_one_trade_or_a_batch(schema):
    # then: the view takes a single trade object too (the schema used to show only the batch)
    body = schema["paths"]["/api/v1/trades/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    options = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["oneOf"]
    assert options == [
        {"$ref": "#/components/schemas/TradeInputRequest"},
        {"$ref": "#/components/schemas/TradeBatchRequest"},
    ]
