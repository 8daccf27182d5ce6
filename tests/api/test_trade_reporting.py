"""Who may report trades: only the matching engine's service user, with its token; the trades'
source is that user, never the body's."""

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


def item(external_id: str, **overrides) -> dict:
    return {
        "external_id": external_id,
        "symbol": "BTC/USD",
        "buyer": "ALICE",
        "seller": "BOB",
        "quantity": "1",
        "price": "1000.00",
        "executed_at": EXECUTED_AT,
        **overrides,
    }


@pytest.fixture
def engine(db):
    return token_client(factories.UserFactory(username="matching-engine", is_staff=True))


def test_trades_ingest_participant_cannot_squat_the_engines_ids(btc_usd, alice, bob, engine):
    # given: a participant posts a trade under the engine's source and one of its ids
    squat = token_client(factories.participant_user(alice)).post(
        URL, item("E-2", source="matching-engine", price="1.00"), format="json"
    )
    # when: the engine reports its real batch
    batch = engine.post(URL, {"trades": [item("E-1"), item("E-2")]}, format="json")
    # then: the participant was refused with a clear code and the whole batch is stored
    assert squat.status_code == 403
    assert squat.json()["error"]["code"] == "participant_cannot_report_trades"
    assert "existing_id" not in str(squat.json())
    assert batch.status_code == 201, batch.json()
    assert batch.json()["created"] == 2
    assert set(Trade.objects.values_list("source", "external_id", "price")) == {
        ("matching-engine", "E-1", 1000),
        ("matching-engine", "E-2", 1000),
    }


def test_trades_ingest_source_is_the_token_users_never_the_bodys(btc_usd, alice, bob, engine):
    # given / when: the engine's token with no source, the same source, and another one
    plain = engine.post(URL, item("S-1"), format="json")
    same = engine.post(URL, item("S-2", source="matching-engine"), format="json")
    other = engine.post(URL, {"trades": [item("S-3"), item("S-4", source="venue-b")]}, format="json")
    # then: the first two are filed under the token's user; a different source is a field error
    assert (plain.status_code, plain.json()["source"]) == (201, "matching-engine")
    assert (same.status_code, same.json()["source"]) == (201, "matching-engine")
    assert other.status_code == 400
    (rejected,) = other.json()["error"]["detail"]
    assert rejected["index"] == 1 and "source" in rejected["errors"]
    assert set(Trade.objects.values_list("external_id", flat=True)) == {"S-1", "S-2"}  # nothing of the batch
    assert SettlementInstruction.objects.count() == 4


def test_trades_ingest_refuses_a_browser_session(client, btc_usd, alice, bob, django_user_model):
    # given: a staff person logged in to the site (a session, not a service token)
    client.force_login(django_user_model.objects.create_user("ops-person", is_staff=True))
    # when
    response = client.post(URL, item("B-1"), content_type="application/json")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "service_token_required"
    assert not Trade.objects.exists()


def test_trades_ingest_conflict_never_names_another_users_trade(btc_usd, alice, bob, engine):
    # given: the engine's trade E-1, and a second service user
    first = engine.post(URL, item("E-1"), format="json").json()
    venue = token_client(factories.UserFactory(username="venue-b", is_staff=True))
    # when: the other user reuses the id, once under the engine's source and once plainly
    posing = venue.post(URL, item("E-1", source="matching-engine", price="999.00"), format="json")
    own = venue.post(URL, item("E-1", price="999.00"), format="json")
    # then: no 409 pointing at the engine's trade; the plain one is the venue's own trade
    assert posing.status_code == 400 and str(first["id"]) not in str(posing.json()["error"])
    assert own.status_code == 201 and own.json()["source"] == "venue-b" and own.json()["id"] != first["id"]
    # and a real conflict (same user, same id, other content) names the caller's own trade
    conflict = engine.post(URL, item("E-1", price="1.00"), format="json")
    assert conflict.status_code == 409
    assert [d["existing_id"] for d in conflict.json()["error"]["detail"]] == [first["id"]]
