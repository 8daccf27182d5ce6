"""Operations actions on the crypto pipeline from the admin: each needs a reason and is audited."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from common.choices import CaseKind, CaseStatus, JournalKind
from common.choices import InstructionStatus as S
from ledger.models import Journal, TransitionLog
from ops.models import ApprovalRequest, ReviewCase
from ops.services.cases import case_open
from settlement.models import ChainTransfer, SettlementHalt
from settlement.services.halts import PIPELINE, halt_open
from settlement.tasks import crypto_advance_task
from tests.crypto.conftest import ledger_available, ledger_total
from tests.crypto.test_pipeline import make_trade
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(client, django_user_model):
    client.force_login(staff_user(django_user_model, "ops", "operator"))
    return client


@pytest.fixture
def approver(django_user_model):
    client = Client()
    client.force_login(staff_user(django_user_model, "boss", "approver"))
    return client


def approve_pending(approver, reason: str = "checked"):
    request = ApprovalRequest.objects.get(status="pending")
    url = reverse("admin:ops_approvalrequest_changelist")
    form = {"action": "approve_selected", "_selected_action": [request.pk], "apply": "1", "reason": reason}
    return approver.post(url, form, follow=True)


def test_lifting_a_halt_is_proposed_with_a_reason_and_applied_on_approval(ops, approver, eth):
    halt = halt_open(asset=eth, reason="double spend seen", actor=PIPELINE)
    url = reverse("admin:settlement_settlementhalt_changelist")
    form = {"action": "lift_selected", "_selected_action": [halt.pk]}
    assert b"Reason (required)" in ops.post(url, form).content
    ops.post(url, {**form, "apply": "1", "reason": ""})
    assert not ApprovalRequest.objects.exists()
    ops.post(url, {**form, "apply": "1", "reason": "investigated: attacker key revoked"})
    assert SettlementHalt.objects.get(pk=halt.pk).lifted_at is None  # proposed only
    approve_pending(approver, "second look: agreed")
    halt.refresh_from_db()
    assert halt.lifted_at is not None and halt.lifted_by.username == "boss"
    entry = TransitionLog.objects.get(entity_type="halt", entity_id=halt.pk, to_status="lifted")
    assert entry.actor_label == "boss"
    assert entry.reason == "investigated: attacker key revoked (approved: second look: agreed)"
    # proposing to lift it again is refused with a message, not an error page
    page = ops.post(url, {**form, "apply": "1", "reason": "again"}, follow=True)
    assert b"already lifted" in page.content


def test_resolving_a_case_is_audited(ops, eth):
    case = case_open(kind=CaseKind.ESCALATION, reason="odd", dedupe_key="x", asset=eth)
    url = reverse("admin:ops_reviewcase_changelist")
    ops.post(url, {"action": "resolve_selected", "_selected_action": [case.pk], "apply": "1", "reason": "checked"})
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED and case.resolution == "checked" and case.resolved_by.username == "ops"


def test_reversing_a_settled_crypto_trade_books_compensating_journals(
    ops, approver, funded, chain, eth, eth_usd, usd, alice, bob
):
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="2")
    crypto_advance_task(trade_ids=[trade.pk])
    assert set(trade.instructions.values_list("status", flat=True)) == {S.SETTLED}
    journals = Journal.objects.count()
    leg = trade.instructions.first()
    url = reverse("admin:settlement_settlementinstruction_changelist")
    ops.post(url, {"action": "reverse_selected", "_selected_action": [leg.pk], "apply": "1", "reason": "trade bust"})
    assert set(trade.instructions.values_list("status", flat=True)) == {S.SETTLED}  # proposed only
    approve_pending(approver)
    assert set(trade.instructions.values_list("status", flat=True)) == {S.REVERSED}
    assert Journal.objects.count() > journals  # added, nothing deleted
    assert Journal.objects.filter(kind=JournalKind.POST, reference__contains="reversal").count() == 2
    assert ledger_available(alice, usd) == Decimal("100000.00")
    assert ledger_total(alice, eth) == Decimal("1")
    assert (
        TransitionLog.objects.filter(entity_type="instruction", to_status=S.REVERSED, actor_label="boss").count() == 2
    )


def test_admin_pages_for_pipeline_records_render(ops, funded, chain, eth, eth_usd, alice, bob):
    trade = make_trade(eth_usd, buyer=alice, seller=bob, quantity="1")
    crypto_advance_task(trade_ids=[trade.pk])
    halt_open(asset=eth, reason="test", actor=PIPELINE)
    case_open(kind=CaseKind.INVESTIGATION, reason="test", dedupe_key="t", asset=eth)
    for name in ("settlement_chaintransfer", "settlement_settlementhalt", "ops_reviewcase", "ops_notification"):
        assert ops.get(reverse(f"admin:{name}_changelist")).status_code == 200
    transfer = ChainTransfer.objects.get(instruction__trade=trade)
    transfer_page = ops.get(reverse("admin:settlement_chaintransfer_change", args=[transfer.pk]))
    assert b"broadcast \xe2\x86\x92 confirmed" in transfer_page.content
    assert ReviewCase.objects.count() == 1
