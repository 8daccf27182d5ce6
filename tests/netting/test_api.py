"""The settlement plan over the API: windows for staff, net payments scoped to their participant,
a net payment's detail traced to its rail messages and trade legs, and a leg back to its net
payments."""

from __future__ import annotations

import pytest

from netting.models import Direction, NettedInstruction, RailAttempt
from settlement.models import SettlementInstruction
from tests import factories
from tests.conftest import token_client
from tests.netting.conftest import FiatMarket, trades_settle

pytestmark = pytest.mark.django_db


def test_net_payments_and_windows_over_the_api(fiat_market: FiatMarket, staff_user):
    m = fiat_market
    p = m.parties
    trades_settle(m, [(p[0], p[1], "10", "100.00"), (p[2], p[1], "5", "50.00")], source="api")

    staff = token_client(staff_user, scopes=("read",))
    windows = staff.get("/api/v1/netting-windows/?status=closed").json()["results"]
    assert {w["asset_class"] for w in windows} == {"security"}
    (window,) = windows
    assert window["gross_legs"] == 4 and window["net_payments"] == NettedInstruction.objects.count()

    listed = staff.get(f"/api/v1/net-payments/?window={window['id']}&asset=USD").json()["results"]
    assert {(row["participant"], row["direction"], row["amount"]) for row in listed} == {
        ("F0", "pay_in", "1000.00"),
        ("F2", "pay_in", "250.00"),
        ("F1", "pay_out", "1250.00"),
    }
    assert {row["status"] for row in listed} == {"settled"}

    payout = NettedInstruction.objects.get(asset=m.usd, direction=Direction.PAY_OUT)
    detail = staff.get(f"/api/v1/net-payments/{payout.pk}/").json()
    attempt = RailAttempt.objects.get(instruction=payout)
    assert [a["end_to_end_id"] for a in detail["rail_attempts"]] == [attempt.end_to_end_id]
    assert detail["rail_attempts"][0]["method"] == "wire" and detail["rail_attempts"][0]["status"] == "settled"
    assert detail["legs"] == sorted(payout.legs().values_list("pk", flat=True)) and len(detail["legs"]) == 2
    assert [t["to_status"] for t in detail["transitions"]][-1] == "settled"
    by_e2e = staff.get(f"/api/v1/net-payments/?end_to_end_id={attempt.end_to_end_id}").json()["results"]
    assert [row["id"] for row in by_e2e] == [payout.pk]

    # a leg leads back to the payer's and the payee's net payments
    leg = SettlementInstruction.objects.get(pk=detail["legs"][0])
    traced = staff.get(f"/api/v1/instructions/{leg.pk}/").json()["net_payments"]
    assert len(traced) == 2 and payout.pk in traced

    # a participant sees its own net payments only, and no windows
    own = token_client(factories.participant_user(p[0]), scopes=("read",))
    rows = own.get("/api/v1/net-payments/").json()["results"]
    assert rows and {row["participant"] for row in rows} == {"F0"}
    assert own.get(f"/api/v1/net-payments/{payout.pk}/").status_code == 404
    assert own.get("/api/v1/net-payments/?participant=F1").json()["results"] == []
    assert own.get("/api/v1/netting-windows/").json()["results"] == []
    assert own.post("/api/v1/net-payments/", {}).status_code in (403, 405)
