"""Fees through the API: a participant sees only its own quote and charges, never its
counterparty's rule, rate or fee; staff see every party's."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from settlement.models import FeeRule
from settlement.services.instructions import trade_settle_internal
from tests import factories
from tests.conftest import token_client
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db
PREVIEW = "/api/v1/fees/preview/"
BODY = {"symbol": "BTC/USD", "buyer": "ALICE", "seller": "BOB", "quantity": "1", "price": "2000.00"}


@pytest.fixture
def market(usd, btc, alice, bob):
    valid_from = timezone.now() - timedelta(days=30)
    FeeRule.objects.create(name="buyers", tier="standard", bps=Decimal("10"), valid_from=valid_from)
    FeeRule.objects.create(name="sellers", tier="seller", flat=Decimal("0.50"), valid_from=valid_from)
    bob.tier = "seller"
    bob.save()
    factories.fund(alice, usd, "10000.00")
    factories.fund(bob, btc, "5")
    return factories.instrument(btc, usd)


def reader(participant):
    return token_client(factories.participant_user(participant), scopes=("read",))


def test_fee_preview_shows_a_participant_only_its_own_fee(market, alice, bob, staff_user):
    # when
    mine = reader(alice).post(PREVIEW, BODY, format="json")
    everyone = token_client(staff_user, scopes=("read",)).post(PREVIEW, BODY, format="json")
    # then: the buyer sees its own line and total, not the seller's rule or fee; staff see both
    assert mine.status_code == 200, mine.json()
    assert [(f["participant"], f["rule"], f["fee"]) for f in mine.json()["fees"]] == [("ALICE", "buyers", "2.00")]
    assert mine.json()["total"] == "2.00"
    assert "sellers" not in str(mine.json())
    assert {f["participant"] for f in everyone.json()["fees"]} == {"ALICE", "BOB"}
    assert everyone.json()["total"] == "2.50"


def test_fee_preview_is_refused_for_a_trade_between_others(market, carol):
    # when
    response = reader(carol).post(PREVIEW, BODY, format="json")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_a_party"
    assert "fees" not in response.json()


def test_instruction_detail_shows_a_participant_only_its_own_fee_charges(market, alice, bob, staff_user):
    # given: a settled trade whose payment leg carries a charge for each party
    trade = factories.trade(instrument=market, buyer=alice, seller=bob, quantity="1", price="2000.00")
    trade_settle_internal(trade=trade, actor=ACTOR)
    url = f"/api/v1/instructions/{trade.instructions.get(leg='payment').pk}/"
    # when
    seen = {
        who: [(f["participant"], f["party"]) for f in client.get(url).json()["fees"]]
        for who, client in (("alice", reader(alice)), ("bob", reader(bob)), ("staff", token_client(staff_user)))
    }
    # then
    assert seen["alice"] == [("ALICE", "payer")]
    assert seen["bob"] == [("BOB", "payee")]
    assert sorted(seen["staff"]) == [("ALICE", "payer"), ("BOB", "payee")]
