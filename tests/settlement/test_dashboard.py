"""The operations dashboard: counts, rates and the oldest stuck instruction, per role."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from settlement.models import SettlementInstruction
from settlement.services.halts import PIPELINE, halt_open
from settlement.services.instructions import instruction_fail, trade_settle_internal
from tests import factories
from tests.factories import ACTOR
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db


def test_dashboard_counts_rates_and_stuck(client, django_user_model, usd, btc, alice, bob):
    from decimal import Decimal

    factories.fund(alice, usd, Decimal("1000.00"))
    factories.fund(bob, btc, Decimal("5"))
    instrument = factories.instrument(btc, usd)
    trades = [
        factories.trade(instrument=instrument, buyer=alice, seller=bob, quantity="1", price="9", external_id=f"D{n}")
        for n in range(3)
    ]
    trade_settle_internal(trade=trades[0], actor=ACTOR)
    instruction_fail(instruction=trades[1].instructions.get(leg="payment"), actor=ACTOR, reason="no funds")
    stuck = trades[2].instructions.get(leg="delivery")
    SettlementInstruction.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - timedelta(hours=3))
    halt_open(asset=btc, reason="node down", actor=PIPELINE)

    client.force_login(staff_user(django_user_model, "ops", "operator"))
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("ops-dashboard") in index
    page = client.get(reverse("ops-dashboard")).content.decode()
    assert 'data-status="settled">2<' in page and 'data-status="failed">1<' in page
    assert 'id="total">6<' in page
    assert 'id="settled-last-hour">2<' in page and 'id="failed-last-hour">1<' in page
    assert 'id="settlement-rate">66.7 %<' in page
    assert f"SI{stuck.pk}" in page and 'id="stuck-count">' in page
    assert "node down" in page and "<svg" in page

    client.force_login(django_user_model.objects.create_user("nobody", is_staff=True))
    assert client.get(reverse("ops-dashboard")).status_code == 403
