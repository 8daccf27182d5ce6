"""A fee per netted payment: a pay-in holds its fee with the amount, a pay-out's fee comes out of
what the participant receives; both reach the fee revenue account in the payment's own journal,
the central settlement account still ends empty, and a fee rule for securities charges nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from ledger.models import LedgerAccount, Posting
from netting.models import NettedInstruction, NettedStatus, NettingWindow, WindowStatus
from netting.pipeline import CSA, netted_advance
from netting.services import window_close
from settlement.models import FeeCharge, FeeRule
from settlement.services.fees import fee_revenue_account
from settlement.services.trades import TradeInput, trades_ingest
from tests.factories import ACTOR
from tests.netting.test_plan_properties import FUNDS, book  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def test_netted_payments_carry_their_fee_in_their_own_journal(book):  # noqa: F811
    parties, xtn, usd = book["parties"], book["xtn"], book["usd"]
    FeeRule.objects.create(
        name="netted cash", asset=usd, settlement_type="netted", bps=Decimal("10"), minimum=Decimal("1.00"),
        valid_from=datetime(2000, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    FeeRule.objects.create(  # gross trades are not charged by a netted rule
        name="gross only", settlement_type="gross", bps=Decimal("50"), valid_from=datetime(2000, 1, 1, tzinfo=UTC)
    )
    trades_ingest(
        items=[
            TradeInput(
                "fees", f"N{n}", book["instrument"], parties[b], parties[s], Decimal(q), Decimal(p), timezone.now()
            )
            for n, (b, s, q, p) in enumerate([(0, 1, "2", "1500.00"), (2, 1, "1", "300.00"), (1, 3, "1", "100.00")])
        ],
        actor=ACTOR,
    )
    window = window_close(window=NettingWindow.objects.get(status=WindowStatus.OPEN, asset_class="crypto"), actor=ACTOR)
    plan = NettedInstruction.objects.filter(window=window)
    for _ in range(3):
        netted_advance(ids=list(plan.values_list("pk", flat=True)), actor=ACTOR)
    assert set(plan.values_list("status", flat=True)) == {NettedStatus.SETTLED}

    cash = plan.filter(asset=usd)
    charges = {c.netted_id: c for c in FeeCharge.objects.filter(netted__in=cash)}
    assert len(charges) == cash.count() and {c.status for c in charges.values()} == {"posted"}
    for ni in cash:
        charge = charges[ni.pk]
        expected = max(Decimal("1.00"), (ni.amount * Decimal("0.001")).quantize(Decimal("0.01")))
        assert charge.fee == expected and charge.party == ("payer" if ni.direction == "pay_in" else "payee")
        journal_legs = Posting.objects.filter(journal=charge.journal)
        assert sum(p.amount for p in journal_legs) == 0 and charge.journal.lock_id == ni.lock_id
    revenue = fee_revenue_account(usd)
    assert revenue.balance == sum(c.fee for c in charges.values())
    for csa in LedgerAccount.objects.filter(system_code__in=[CSA, f"{CSA}:locked"]):
        assert csa.balance == 0  # the CSA passes the net value through, fees or not
    # the securities side (XTN is delivered, not paid) is not charged by a cash rule
    assert not FeeCharge.objects.filter(netted__asset=xtn).exists()
    # each participant's cash moved by its net obligation and its fee
    for ni in cash.select_related("participant"):
        account = LedgerAccount.objects.get(owner=ni.participant, asset=usd, kind="available")
        signed = -ni.amount if ni.direction == "pay_in" else ni.amount
        assert account.balance == FUNDS["XUS"] + signed - charges[ni.pk].fee
