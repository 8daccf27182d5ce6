"""Participant statements: lines with references and fees, closing balance equal to the ledger
(a property over random activity), CSV and a PDF that parses, from the API and the admin."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.exceptions import DomainError
from ledger.models import LedgerAccount
from settlement.models import FeeCharge, FeeRule
from settlement.services.instructions import instruction_fail, instruction_lock, trade_reverse, trade_settle_internal
from settlement.statements import statement_csv, statement_pdf, statement_read
from tests import factories
from tests.factories import ACTOR

pytestmark = pytest.mark.django_db
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def ledger_total(participant, asset) -> Decimal:
    total = LedgerAccount.objects.filter(owner=participant, asset=asset).aggregate(t=Sum("balance"))["t"]
    return total or Decimal(0)


@pytest.fixture
def market(usd, btc, alice, bob):
    FeeRule.objects.create(name="everyone", bps=Decimal("10"), minimum=Decimal("0.25"), valid_from=EPOCH)
    factories.fund(alice, usd, Decimal("5000.00"))
    factories.fund(bob, btc, Decimal("3"))
    return factories.instrument(btc, usd)


def test_statement_lines_fees_and_closing_equal_the_ledger(market, usd, btc, alice, bob):
    start = timezone.now()
    trade = factories.trade(instrument=market, buyer=alice, seller=bob, quantity="1", price="1000.00", external_id="S1")
    trade_settle_internal(trade=trade, actor=ACTOR)
    other = factories.trade(instrument=market, buyer=alice, seller=bob, quantity="1", price="200.00", external_id="S2")
    trade_settle_internal(trade=other, actor=ACTOR)
    trade_reverse(trade=other, actor=ACTOR, reason="busted")
    end = timezone.now() + timedelta(seconds=1)

    statement = statement_read(participant=alice, start=start, end=end)
    by_asset = {s.asset.code: s for s in statement.assets}
    cash = by_asset["USD"]
    assert cash.opening == Decimal("5000.00")
    assert [line.amount for line in cash.lines] == [Decimal("-1001.00"), Decimal("-200.25"), Decimal("200.25")]
    # the reversal returned the 0.25 fee: a negative fee on the reversal's line
    assert [line.fee for line in cash.lines] == [Decimal("1.00"), Decimal("0.25"), Decimal("-0.25")]
    assert cash.fees == Decimal("1.00") and cash.closing == ledger_total(alice, usd) == Decimal("3999.00")
    assert by_asset["BTC"].closing == ledger_total(alice, btc) == Decimal("1")
    assert all(line.reference for line in cash.lines)

    csv_text = statement_csv(statement)
    assert "ALICE,USD" in csv_text and ",closing,,,,1.00,3999.00" in csv_text

    from pypdf import PdfReader

    pdf = PdfReader(io.BytesIO(statement_pdf(statement)))
    text = "".join(page.extract_text() for page in pdf.pages)
    assert "Statement of" in text and "ALICE" in text and "3999.00" in text and "5000.00" in text


activity = st.lists(
    st.tuples(
        st.sampled_from(["settle", "fail", "reverse", "deposit"]),
        st.integers(1, 300).map(lambda n: Decimal(n) / 100),  # quantity
        st.integers(100, 500000).map(lambda n: Decimal(n) / 100),  # price
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=activity)
def test_closing_balance_equals_the_ledger_for_random_activity(market, usd, btc, alice, bob, steps):
    with transaction.atomic():
        middle = None
        for n, (what, quantity, price) in enumerate(steps):
            if n == len(steps) // 2:
                middle = timezone.now()
            if what == "deposit":
                factories.fund(alice, usd, price, reference=f"dep-{n}-{price}")
                continue
            trade = factories.trade(
                instrument=market, buyer=alice, seller=bob, quantity=str(quantity), price=str(price),
                external_id=f"P{n}-{quantity}-{price}",
            )  # fmt: skip
            try:
                if what == "fail":
                    instruction_lock(instruction=trade.instructions.get(leg="payment"), actor=ACTOR)
                    instruction_fail(instruction=trade.instructions.get(leg="payment"), actor=ACTOR, reason="x")
                    continue
                trade_settle_internal(trade=trade, actor=ACTOR)
                if what == "reverse":
                    trade_reverse(trade=trade, actor=ACTOR, reason="x")
            except DomainError:
                pass  # not enough funds: nothing moved
        end = timezone.now() + timedelta(seconds=1)
        whole = statement_read(participant=alice, start=EPOCH, end=end)
        for asset in (usd, btc):
            closing = next((s.closing for s in whole.assets if s.asset == asset), Decimal(0))
            assert closing == ledger_total(alice, asset)
        # fees net of refunds equal the charges still standing
        standing = FeeCharge.objects.filter(participant=alice, status="posted").aggregate(t=Sum("fee"))["t"]
        assert sum((s.fees for s in whole.assets), Decimal(0)) == (standing or Decimal(0))
        # two consecutive periods chain: the first's closing is the second's opening
        first = statement_read(participant=alice, start=EPOCH, end=middle or end)
        second = statement_read(participant=alice, start=middle or end, end=end)
        for s in second.assets:
            previous = next((p.closing for p in first.assets if p.asset == s.asset), Decimal(0))
            assert s.opening == previous
        transaction.set_rollback(True)


def test_statements_from_the_api_and_the_admin(market, alice, bob, staff_user, client, django_user_model):
    from tests.conftest import token_client

    trade = factories.trade(instrument=market, buyer=alice, seller=bob, quantity="1", price="100.00", external_id="A1")
    trade_settle_internal(trade=trade, actor=ACTOR)
    today = timezone.now().date().isoformat()
    alice_api = token_client(factories.participant_user(alice), scopes=("read",))
    body = alice_api.get(f"/api/v1/statements/?from={today}&to={today}&participant=BOB").json()
    assert body["participant"] == "ALICE"  # a participant sees only its own statement
    usd_part = next(a for a in body["assets"] if a["asset"] == "USD")
    assert usd_part["closing"] == "4899.75" and usd_part["fees"] == "0.25"
    csv_response = alice_api.get(f"/api/v1/statements/?from={today}&to={today}&output=csv")
    assert csv_response["Content-Type"] == "text/csv" and b"ALICE,USD" in csv_response.content
    bad = alice_api.get("/api/v1/statements/?from=2026-13-01&to=2026-01-01")
    assert bad.status_code == 400 and "from" in bad.json()["error"]["detail"]

    staff_api = token_client(staff_user, scopes=("read",))
    assert staff_api.get(f"/api/v1/statements/?from={today}&to={today}").status_code == 400
    assert staff_api.get(f"/api/v1/statements/?from={today}&to={today}&participant=BOB").json()["participant"] == "BOB"

    from django.urls import reverse

    from tests.helpers import staff_user as make_staff

    client.force_login(make_staff(django_user_model, "aud", "auditor"))
    url = reverse("admin:settlement_participant_statement", args=[alice.pk])
    pdf = client.get(f"{url}?from={today}&to={today}&output=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
