from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from common.choices import InstructionStatus, Leg
from ledger.models import Journal, LedgerAccount, Posting, TransitionLog
from settlement.models import SettlementInstruction
from tests import factories
from tests.helpers import assert_admin_pages_render

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def settled(alice, bob, btc, usd, btc_usd):
    from settlement.services.instructions import trade_settle_internal

    factories.fund(bob, btc, "1")
    factories.fund(alice, usd, "100")
    t = factories.trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="100")
    trade_settle_internal(trade=t, actor=factories.ACTOR)
    return t


def test_every_admin_changelist_and_detail_renders(ops, settled):
    for app_label in ("reference", "ledger", "settlement", "ops"):  # the pages settlement's admin held
        assert_admin_pages_render(ops, app_label)


@pytest.mark.parametrize("model", [LedgerAccount, Journal, Posting, TransitionLog])
def test_ledger_and_audit_rows_are_read_only_even_for_superusers(ops, settled, model, rf, django_user_model):
    request = rf.get("/")
    request.user = django_user_model.objects.get(username="ops")
    model_admin = admin.site._registry.get(model)
    if model_admin is None:  # postings are only shown inline on journals
        return
    obj = model.objects.first()
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, obj)
    assert not model_admin.has_delete_permission(request, obj)


def test_instruction_search_by_trade_id_and_transition_log_shown(ops, settled):
    url = reverse("admin:settlement_settlementinstruction_changelist")
    page = ops.get(url, {"q": settled.external_id})
    assert page.status_code == 200 and page.context["cl"].result_count == 2
    leg = settled.instructions.get(leg=Leg.DELIVERY)
    detail = ops.get(reverse("admin:settlement_settlementinstruction_change", args=[leg.pk]))
    assert b"processing \xe2\x86\x92 settled" in detail.content


def test_cancel_action_requires_a_reason_and_is_audited(ops, alice, bob, btc_usd):
    t = factories.trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1")
    leg = t.instructions.get(leg=Leg.DELIVERY)
    url = reverse("admin:settlement_settlementinstruction_changelist")
    form = {"action": "cancel_selected", "_selected_action": [leg.pk]}
    # the first post asks for a reason and changes nothing
    page = ops.post(url, form)
    assert page.status_code == 200 and b"Reason (required)" in page.content
    assert SettlementInstruction.objects.get(pk=leg.pk).status == InstructionStatus.PENDING
    # an empty reason is refused
    ops.post(url, {**form, "apply": "1", "reason": "  "})
    assert SettlementInstruction.objects.get(pk=leg.pk).status == InstructionStatus.PENDING
    # with a reason it is applied and logged with the user
    ops.post(url, {**form, "apply": "1", "reason": "client called"})
    assert set(t.instructions.values_list("status", flat=True)) == {InstructionStatus.CANCELLED}  # both legs
    entry = TransitionLog.objects.get(entity_type="instruction", entity_id=leg.pk)
    assert (entry.actor_label, entry.reason) == ("ops", "client called")
    assert SettlementInstruction.history.filter(id=leg.pk).latest("history_id").history_user.username == "ops"


def test_cancel_action_cancels_each_selected_trade_once_with_both_legs(ops, alice, bob, btc_usd):
    # given: both legs of one trade and one leg of another selected
    one = factories.trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1", external_id="A")
    two = factories.trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1", external_id="B")
    selected = [*one.instructions.values_list("pk", flat=True), two.instructions.get(leg=Leg.PAYMENT).pk]
    url = reverse("admin:settlement_settlementinstruction_changelist")
    # when
    page = ops.post(
        url, {"action": "cancel_selected", "_selected_action": selected, "apply": "1", "reason": "x"}, follow=True
    )
    # then: every leg of both trades is cancelled, once each, and nothing is reported refused
    assert SettlementInstruction.objects.exclude(status=InstructionStatus.CANCELLED).count() == 0
    entries = TransitionLog.objects.filter(entity_type="instruction", to_status=InstructionStatus.CANCELLED)
    assert entries.count() == 4
    assert not [m for m in page.context["messages"] if "refused" in str(m)]
