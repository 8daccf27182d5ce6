"""Each sensitive action, per role: allowed or forbidden, in the admin and in the services
behind it, and four-eyes: the proposer never approves their own request."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from common.choices import InstructionStatus as S
from common.exceptions import NotPermitted
from ledger.models import Journal, TransitionLog
from ops.models import ApprovalRequest, OpsAlert, ReviewCase
from ops.services.alerts import ops_alert_email_send
from ops.services.approvals import approval_decide, approval_propose
from settlement.models import SettlementHalt, SettlementInstruction
from settlement.services.halts import PIPELINE, halt_open
from settlement.services.instructions import instruction_fail, trade_settle_internal
from tests import factories
from tests.factories import ACTOR
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db
ROLES = ("operator", "approver", "auditor", "administrator")


@pytest.fixture
def people(django_user_model):
    users = {role: staff_user(django_user_model, role, role) for role in ROLES}
    users["operator2"] = staff_user(django_user_model, "operator2", "operator")
    users["both"] = staff_user(django_user_model, "both", "operator", "approver")
    return users


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def act(user, model: str, action: str, pks: list[int], reason: str = "because", **extra):
    url = reverse(f"admin:{model}_changelist")
    form = {"action": action, "_selected_action": pks, "apply": "1", "reason": reason, **extra}
    return login(user).post(url, form, follow=True)


@pytest.fixture
def failed_leg(usd, btc, alice, bob):
    instrument = factories.instrument(btc, usd)
    trade = factories.trade(instrument=instrument, buyer=alice, seller=bob, quantity="1", price="100.00")
    leg = trade.instructions.get(leg="payment")
    instruction_fail(instruction=leg, actor=ACTOR, reason="insufficient funds")
    return SettlementInstruction.objects.get(pk=leg.pk)


@pytest.mark.parametrize(
    ("role", "allowed"), [("operator", True), ("approver", False), ("auditor", False), ("administrator", True)]
)
def test_escalating_an_instruction_per_role(people, failed_leg, role, allowed):
    act(people[role], "settlement_settlementinstruction", "escalate_selected", [failed_leg.pk])
    assert ReviewCase.objects.filter(instruction=failed_leg, kind="escalation").exists() == allowed


@pytest.mark.parametrize(("role", "allowed"), [("operator", True), ("approver", False), ("auditor", False)])
def test_retry_and_cancel_per_role(people, failed_leg, role, allowed):
    act(people[role], "settlement_settlementinstruction", "retry_selected", [failed_leg.pk])
    failed_leg.refresh_from_db()
    assert (failed_leg.status != S.FAILED) == allowed


def test_the_actions_offered_follow_the_role(people, failed_leg, btc):
    halt = halt_open(asset=btc, reason="stop", actor=PIPELINE)
    approval_propose(kind="halt_lift", target_id=halt.pk, actor=people["operator"], reason="fixed")
    url = reverse("admin:settlement_settlementinstruction_changelist")
    pages = {role: login(people[role]).get(url).content for role in ROLES}
    assert b"escalate_selected" in pages["operator"] and b"reverse_selected" in pages["operator"]
    assert b"escalate_selected" not in pages["approver"] and b"retry_selected" not in pages["auditor"]
    approvals = reverse("admin:ops_approvalrequest_changelist")
    assert b"approve_selected" in login(people["approver"]).get(approvals).content
    assert b"approve_selected" not in login(people["operator"]).get(approvals).content


def test_halt_lift_four_eyes(people, btc, django_capture_on_commit_callbacks):
    halt = halt_open(asset=btc, reason="double spend seen", actor=PIPELINE)
    with pytest.raises(NotPermitted):  # approvers check, they do not propose
        approval_propose(kind="halt_lift", target_id=halt.pk, actor=people["approver"], reason="x")
    with django_capture_on_commit_callbacks(execute=True):
        act(people["operator"], "settlement_settlementhalt", "lift_selected", [halt.pk], reason="key rotated")
    request = ApprovalRequest.objects.get()
    assert request.status == "pending" and request.proposed_by == people["operator"]
    alert = OpsAlert.objects.get(roles="approver", title__contains="lift")
    assert ops_alert_email_send(alert_id=alert.pk) == "sent"  # what the e-mail task does on a worker
    assert any("Approval needed" in m.subject for m in mail.outbox)
    assert mail.outbox[-1].to == ["approver@example.com", "both@example.com"]  # the approvers

    # neither another operator (no approver role) nor the proposer (even holding both roles) decides
    act(people["operator2"], "ops_approvalrequest", "approve_selected", [request.pk])
    with pytest.raises(NotPermitted):
        approval_decide(request=request, actor=people["operator2"], approve=True, reason="ok")
    request.refresh_from_db()
    assert request.status == "pending" and SettlementHalt.objects.get(pk=halt.pk).lifted_at is None


def test_proposer_cannot_approve_own_request_anywhere(people, btc):
    halt = halt_open(asset=btc, reason="stop", actor=PIPELINE)
    request = approval_propose(kind="halt_lift", target_id=halt.pk, actor=people["both"], reason="fixed")
    page = act(people["both"], "ops_approvalrequest", "approve_selected", [request.pk], reason="self")
    assert b"proposer cannot approve" in page.content
    with pytest.raises(NotPermitted, match="proposer"):
        approval_decide(request=request, actor=people["both"], approve=True, reason="self")
    with pytest.raises(IntegrityError), transaction.atomic():  # and the database refuses it too
        ApprovalRequest.objects.filter(pk=request.pk).update(decided_by=people["both"])
    assert SettlementHalt.objects.get(pk=halt.pk).lifted_at is None

    act(people["approver"], "ops_approvalrequest", "approve_selected", [request.pk], reason="agreed")
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.outcome) == ("approved", people["approver"], "halt lifted")
    assert SettlementHalt.objects.get(pk=halt.pk).lifted_at is not None
    log = TransitionLog.objects.filter(entity_type="approval", entity_id=request.pk).order_by("pk")
    assert [(e.to_status, e.actor_label) for e in log] == [("pending", "both"), ("approved", "approver")]


def test_a_second_pending_request_for_the_same_target_is_refused(people, btc):
    halt = halt_open(asset=btc, reason="stop", actor=PIPELINE)
    approval_propose(kind="halt_lift", target_id=halt.pk, actor=people["operator"], reason="fixed")
    page = act(people["operator2"], "settlement_settlementhalt", "lift_selected", [halt.pk], reason="me too")
    assert b"already has a request waiting" in page.content
    assert ApprovalRequest.objects.count() == 1


def test_rejected_requests_change_nothing_and_reversals_apply_on_approval(people, usd, btc, alice, bob):
    factories.fund(alice, usd, Decimal("1000.00"))
    factories.fund(bob, btc, Decimal("2"))
    instrument = factories.instrument(btc, usd)
    trade = factories.trade(instrument=instrument, buyer=alice, seller=bob, quantity="1", price="100.00")
    trade_settle_internal(trade=trade, actor=ACTOR)
    assert set(trade.instructions.values_list("status", flat=True)) == {S.SETTLED}
    leg = trade.instructions.first()
    act(people["operator"], "settlement_settlementinstruction", "reverse_selected", [leg.pk], reason="busted")
    request = ApprovalRequest.objects.get(kind="reversal")
    act(people["approver"], "ops_approvalrequest", "reject_selected", [request.pk], reason="not busted")
    request.refresh_from_db()
    assert request.status == "rejected"
    assert set(trade.instructions.values_list("status", flat=True)) == {S.SETTLED}
    journals = Journal.objects.count()

    act(people["operator"], "settlement_settlementinstruction", "reverse_selected", [leg.pk], reason="busted, really")
    second = ApprovalRequest.objects.get(kind="reversal", status="pending")
    act(people["approver"], "ops_approvalrequest", "approve_selected", [second.pk], reason="confirmed")
    assert set(trade.instructions.values_list("status", flat=True)) == {S.REVERSED}
    assert Journal.objects.count() > journals


def test_auditor_sees_everything_and_changes_nothing(people, failed_leg):
    auditor = login(people["auditor"])
    for name in ("settlement_settlementinstruction", "ledger_journal", "ledger_transitionlog",
                 "ops_approvalrequest", "settlement_feecharge", "netting_nettedinstruction",
                 "reconciliation_break",
                 "django_celery_beat_periodictask"):  # fmt: skip
        assert auditor.get(reverse(f"admin:{name}_changelist")).status_code == 200, name
    history = reverse("admin:settlement_settlementinstruction_history", args=[failed_leg.pk])
    assert auditor.get(history).status_code == 200
    asset = failed_leg.asset
    change = reverse("admin:reference_asset_change", args=[asset.pk])
    assert auditor.post(change, {"code": "HACK", "name": "x"}).status_code == 403
    assert auditor.post(reverse("admin:reference_asset_delete", args=[asset.pk]), {"post": "yes"}).status_code == 403


def test_nobody_edits_or_deletes_ledger_rows_logs_or_history(people, failed_leg):
    journal = Journal.objects.first()
    admin_user = people["administrator"]
    for codename in ("change_journal", "delete_journal", "delete_transitionlog", "change_historicalasset"):
        assert not admin_user.has_perm(f"settlement.{codename}"), codename
    client = login(admin_user)
    if journal is not None:
        assert (
            client.post(reverse("admin:ledger_journal_delete", args=[journal.pk]), {"post": "yes"}).status_code == 403
        )
    entry = TransitionLog.objects.first()
    assert (
        client.post(reverse("admin:ledger_transitionlog_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    )
    # simple-history's "revert to this version" page: readable, but a POST (which would save the
    # old version, even by a mere viewer) is refused
    oldest = failed_leg.history.last()
    revert = reverse("admin:settlement_settlementinstruction_simple_history", args=[failed_leg.pk, oldest.history_id])
    for user in (admin_user, people["auditor"]):
        assert login(user).get(revert).status_code == 200
        assert login(user).post(revert, {"status": "pending"}).status_code == 403
    failed_leg.refresh_from_db()
    assert failed_leg.status == S.FAILED
