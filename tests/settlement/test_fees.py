"""Fees: schedule types with minimum, maximum and rounding; effective dating and specificity;
posted in the settlement's own journal and reversed with it; voided with a failed attempt."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ledger.models import Journal, Posting, TransitionLog
from ledger.services.ledger import account_for
from settlement.models import FeeCharge, FeeRule
from settlement.services.fees import fee_compute, fee_quotes, fee_revenue_account, fee_rule_for
from settlement.services.instructions import instruction_fail, instruction_lock, trade_reverse, trade_settle_internal
from tests import factories
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db
T0 = timezone.now() - timedelta(days=30)


def rule(**kwargs) -> FeeRule:
    return FeeRule.objects.create(**{"name": "r", "valid_from": T0, **kwargs})


@pytest.mark.parametrize(
    ("bps", "minimum", "maximum", "flat", "value", "fee", "limited"),
    [
        ("10", "0", None, "0", "1000.00", "1.00", ""),  # 10 bp of 1,000
        ("10", "2.50", None, "0", "1000.00", "2.50", "minimum"),  # the minimum lifts it
        ("10", "0", "5.00", "0", "100000.00", "5.00", "maximum"),  # the cap holds it
        ("10", "0", "5.00", "0.25", "100000.00", "5.25", "maximum"),  # flat on top of the cap
        ("2.5", "0", None, "0", "10.02", "0.00", ""),  # 0.002505 rounds down
        ("5", "0", None, "0", "10.00", "0.01", ""),  # 0.005 rounds half up
        ("1.5", "0", None, "0", "33.33", "0.00", ""),  # 0.0049995: below half
        ("0", "0", None, "0.30", "1.00", "0.30", ""),  # flat only
    ],
)
def test_fee_compute_limits_and_rounding(usd, bps, minimum, maximum, flat, value, fee, limited):
    r = rule(
        bps=Decimal(bps), minimum=Decimal(minimum), maximum=Decimal(maximum) if maximum else None, flat=Decimal(flat)
    )
    _, applied, computed = fee_compute(rule=r, value=Decimal(value), asset=usd)
    assert (computed, applied) == (Decimal(fee), limited)


def test_rounding_mode_is_a_setting(usd, settings):
    r = rule(bps=Decimal("5"))
    settings.CLEARHOUSE_FEE_ROUNDING = "ROUND_HALF_EVEN"
    assert fee_compute(rule=r, value=Decimal("10.00"), asset=usd)[2] == Decimal("0.00")  # 0.005 -> even
    settings.CLEARHOUSE_FEE_ROUNDING = "ROUND_UP"
    assert fee_compute(rule=r, value=Decimal("10.02"), asset=usd)[2] == Decimal("0.01")


def test_effective_dating_and_the_most_specific_rule(usd, alice):
    now = timezone.now()
    old = rule(name="standard 2019", bps=Decimal("10"), valid_to=now - timedelta(days=1))
    new = rule(name="standard 2026", bps=Decimal("8"), valid_from=now - timedelta(days=1))
    vip = rule(name="vip cash", tier="vip", asset=usd, bps=Decimal("2"), valid_from=now - timedelta(days=1))
    pick = lambda at: fee_rule_for(participant=alice, asset=usd, rail="ledger", settlement_type="gross", at=at)  # noqa: E731
    assert pick(now - timedelta(days=2)) == old
    assert pick(now) == new
    alice.tier = "vip"
    assert pick(now) == vip  # tier + asset beat a rule for everyone
    assert pick(now - timedelta(days=2)) == old  # the vip rule was not in force yet
    later = rule(name="from next month", bps=Decimal("7"), valid_from=now + timedelta(days=30))
    alice.tier = "standard"
    assert pick(now) == new and pick(now + timedelta(days=31)) == later


@pytest.fixture
def market(usd, btc, alice, bob):
    factories.fund(alice, usd, Decimal("10000.00"))
    factories.fund(bob, btc, Decimal("5"))
    rule(name="buyers", tier="standard", bps=Decimal("10"), minimum=Decimal("1.00"))
    rule(name="sellers", tier="seller", flat=Decimal("0.50"))
    bob.tier = "seller"
    bob.save()
    return factories.instrument(btc, usd)


def balances(*accounts):
    return [type(a).objects.get(pk=a.pk).balance for a in accounts]


def test_fees_post_in_the_settlement_journal_and_reverse_with_it(market, usd, alice, bob):
    trade = factories.trade(instrument=market, buyer=alice, seller=bob, quantity="1", price="2000.00")
    quotes = {q.party: q.fee for q in fee_quotes(payer=alice, payee=bob, asset=usd, amount=Decimal("2000.00"))}
    assert quotes == {"payer": Decimal("2.00"), "payee": Decimal("0.50")}
    trade_settle_internal(trade=trade, actor=ACTOR)
    alice_usd = account_for(owner=alice, asset=usd, kind="available")
    bob_usd = account_for(owner=bob, asset=usd, kind="available")
    revenue = fee_revenue_account(usd)
    assert balances(alice_usd, bob_usd, revenue) == [Decimal("7998.00"), Decimal("1999.50"), Decimal("2.50")]
    payment = trade.instructions.get(leg="payment")
    charges = list(FeeCharge.objects.filter(instruction=payment).order_by("party"))
    assert [(c.party, c.fee, c.status) for c in charges] == [
        ("payee", Decimal("0.50"), "posted"),
        ("payer", Decimal("2.00"), "posted"),
    ]
    journal = charges[0].journal
    assert journal.reference.endswith(":post") and journal.lock_id == payment.lock_id  # the settlement's journal
    legs = {p.account_id: p.amount for p in Posting.objects.filter(journal=journal)}
    assert sum(legs.values()) == 0 and legs[revenue.pk] == Decimal("2.50") and legs[bob_usd.pk] == Decimal("1999.50")

    trade_reverse(trade=trade, actor=ACTOR, reason="busted")
    assert balances(alice_usd, bob_usd, revenue) == [Decimal("10000.00"), Decimal("0.00"), Decimal("0.00")]
    assert set(FeeCharge.objects.values_list("status", flat=True)) == {"reversed"}
    reversal = Journal.objects.get(reference=f"{payment.reference}:reversal:post")
    legs = [(p.account_id, p.amount) for p in Posting.objects.filter(journal=reversal)]
    assert sum(amount for _, amount in legs) == 0 and (revenue.pk, Decimal("-2.50")) in legs
    # every change of a charge is audited: history (created, posted, reversed) and the transition log
    payer_charge = charges[1]
    assert payer_charge.history.count() == 3
    assert list(payer_charge.history.values_list("status", flat=True).order_by("history_id")) == [
        "pending", "posted", "reversed",
    ]  # fmt: skip
    log = TransitionLog.objects.filter(entity_type="feecharge", entity_id=payer_charge.pk).order_by("id")
    assert [(e.from_status, e.to_status) for e in log] == [("pending", "posted"), ("posted", "reversed")]
    assert "busted" in log.last().reason
    with pytest.raises(AttributeError):
        payer_charge.status = "posted"  # only by its transitions


def test_a_failed_attempt_voids_its_fees_and_releases_them(market, usd, alice, bob):
    trade = factories.trade(instrument=market, buyer=alice, seller=bob, quantity="1", price="2000.00")
    payment = trade.instructions.get(leg="payment")
    instruction_lock(instruction=payment, actor=ACTOR)
    alice_usd = account_for(owner=alice, asset=usd, kind="available")
    assert balances(alice_usd) == [Decimal("7998.00")]  # amount and fee held
    instruction_fail(instruction=payment, actor=ACTOR, reason="counterparty default")
    assert balances(alice_usd) == [Decimal("10000.00")]
    assert set(FeeCharge.objects.values_list("status", flat=True)) == {"voided"}


def test_fee_preview_and_the_breakdown_on_an_instruction(market, usd, alice, bob, staff_user):
    from tests.conftest import token_client

    client = token_client(staff_user, scopes=("read",))
    body = {"symbol": market.symbol, "buyer": "ALICE", "seller": "BOB", "quantity": "0.5", "price": "3000.015"}
    preview = client.post("/api/v1/fees/preview/", body, format="json")
    assert preview.status_code == 200, preview.json()
    assert preview.json()["notional"] == "1500.01"  # 1500.0075 rounded half-even to cents
    fees = {f["party"]: (f["fee"], f["rule"]) for f in preview.json()["fees"]}
    assert fees == {"payer": ("1.50", "buyers"), "payee": ("0.50", "sellers")}
    assert preview.json()["total"] == "2.00"
    assert (preview.json()["settlement_type"], preview.json()["indicative"]) == ("gross", False)
    # a trade that settles through a netting window is charged on the net payments: its quote
    # uses the netted schedule and says it is indicative
    rule(name="netted cash", settlement_type="netted", asset=usd, bps=Decimal("1"), minimum=Decimal("0.10"))
    equity = factories.instrument(factories.aapl(), usd)
    netted = client.post("/api/v1/fees/preview/", {**body, "symbol": equity.symbol, "quantity": "10"}, format="json")
    assert (netted.json()["settlement_type"], netted.json()["indicative"]) == ("netted", True)
    assert {f["party"]: (f["fee"], f["rule"]) for f in netted.json()["fees"]}["payer"] == ("3.00", "netted cash")
    for field, value in (("buyer", "NOBODY"), ("quantity", "-1"), ("symbol", "XXX/USD")):
        bad = client.post("/api/v1/fees/preview/", {**body, field: value}, format="json")
        assert bad.status_code == 400 and field in bad.json()["error"]["detail"], field

    trade = factories.trade(instrument=market, buyer=alice, seller=bob, quantity="1", price="2000.00")
    trade_settle_internal(trade=trade, actor=ACTOR)
    payment = trade.instructions.get(leg="payment")
    detail = client.get(f"/api/v1/instructions/{payment.pk}/").json()
    assert [(f["party"], f["fee"], f["status"]) for f in detail["fees"]] == [
        ("payee", "0.500000000000000000", "posted"),
        ("payer", "2.000000000000000000", "posted"),
    ]


def test_the_admin_never_rewrites_a_schedule_for_time_that_has_passed(usd, client, django_user_model):
    from django.urls import reverse

    from tests.helpers import staff_user

    client.force_login(staff_user(django_user_model, "admin1", "administrator"))
    now = timezone.now()

    def form(valid_from, **extra):
        return {
            "name": "cash", "tier": "", "asset": usd.pk, "asset_kind": "", "rail": "", "settlement_type": "",
            "bps": "5", "minimum": "0.50", "maximum": "", "flat": "0",
            "valid_from_0": f"{valid_from:%Y-%m-%d}", "valid_from_1": f"{valid_from:%H:%M:%S}",
            "valid_to_0": "", "valid_to_1": "", **extra,
        }  # fmt: skip

    add = reverse("admin:settlement_feerule_add")
    backdated = client.post(add, form(now - timedelta(days=1)))
    assert backdated.status_code == 200 and "cannot start in the past" in backdated.content.decode()
    assert not FeeRule.objects.exists()
    assert client.post(add, form(now + timedelta(hours=1))).status_code == 302
    future = FeeRule.objects.get()

    started = rule(name="in force", bps=Decimal("10"), valid_from=now - timedelta(days=1))
    change = reverse("admin:settlement_feerule_change", args=[started.pk])
    page = client.get(change).content.decode()
    assert 'name="bps"' not in page and 'name="valid_to_0"' in page  # only its end can change
    past_end = {"valid_to_0": f"{now - timedelta(hours=2):%Y-%m-%d}", "valid_to_1": "00:00:00"}
    refused = client.post(change, {"bps": "1", **past_end})
    assert refused.status_code == 200 and "not in the past" in refused.content.decode()
    end = now + timedelta(days=2)
    closed = client.post(change, {"bps": "1", "valid_to_0": f"{end:%Y-%m-%d}", "valid_to_1": f"{end:%H:%M:%S}"})
    assert closed.status_code == 302
    started.refresh_from_db()
    assert started.bps == Decimal("10") and started.valid_to is not None  # the price stayed, the end moved
    assert started.history.count() == 2
    delete = reverse("admin:settlement_feerule_delete", args=[started.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:settlement_feerule_delete", args=[future.pk])).status_code == 200
