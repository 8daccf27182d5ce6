"""Four-eyes cannot be bypassed: no role manages users and approves, an administrator (or an
account the proposer made or changed) never approves, and the single-person high-risk edits
(participants' accounts and wallets, beat's tasks, an asset's kind/chain/cycle in flight) are
proposals applied only on a second person's approval."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from common.exceptions import NotPermitted, ValidationFailed
from config.beat import beat_defaults_install
from ops.models import ApprovalRequest
from ops.roles import APPROVER_PERMISSIONS, RoleConflict, roles_check, user_management
from ops.services.approvals import approval_decide, approval_propose
from reference.models import Asset, BankAccount, WalletAddress
from settlement.services.halts import PIPELINE, halt_open
from tests import factories
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db
NOON = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def approve(user, request: ApprovalRequest, reason: str = "checked") -> ApprovalRequest:
    form = {"action": "approve_selected", "_selected_action": [request.pk], "apply": "1", "reason": reason}
    login(user).post(reverse("admin:ops_approvalrequest_changelist"), form, follow=True)
    request.refresh_from_db()
    return request


@pytest.fixture
def admin_user(django_user_model):
    return staff_user(django_user_model, "root", "administrator")


@pytest.fixture
def approver(django_user_model):
    return staff_user(django_user_model, "checker", "approver")


def test_roles_install_gives_no_role_user_management_and_approval():
    # given the roles as installed by the migrations
    # when each role's permissions are read
    table = {
        group.name: {
            f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
        }
        for group in Group.objects.prefetch_related("permissions")
    }
    # then none both manages users and approves, and the administrator manages users but never approves
    assert set(table) >= {"operator", "approver", "auditor", "administrator"}
    for name, keys in table.items():
        assert not (any(user_management(k) for k in keys) and keys & APPROVER_PERMISSIONS), name
    assert "auth.add_user" in table["administrator"] and not table["administrator"] & APPROVER_PERMISSIONS
    with pytest.raises(RoleConflict, match="administrator"):
        roles_check({"administrator": {"auth.change_user", "ops.approve_approvalrequest"}})


def test_approval_decide_refuses_administrators_and_superusers(django_user_model, btc):
    # given a halt lift proposed by an operator
    halt = halt_open(asset=btc, reason="stop", actor=PIPELINE)
    operator = staff_user(django_user_model, "ops", "operator")
    request = approval_propose(kind="halt_lift", target_id=halt.pk, actor=operator, reason="fixed")
    both = staff_user(django_user_model, "root", "administrator", "approver")
    superuser = django_user_model.objects.create_superuser("su", "su@example.com", "pw")
    # when an administrator who also holds the approver role, or a superuser, approves
    # then it is refused and nothing is applied
    for user in (both, superuser):
        with pytest.raises(NotPermitted, match="administrator"):
            approval_decide(request=request, actor=user, approve=True, reason="mine")
    request.refresh_from_db()
    assert request.status == "pending" and request.decided_by is None


def test_approval_decide_refuses_an_approver_account_the_proposer_made(admin_user, alice, usd):
    # given an administrator proposing a bank account for a participant
    bank = login(admin_user)
    form = {"participant": alice.pk, "currency": usd.pk, "holder_name": "Alice", "aba_routing": "021000021",
            "account_number": "12345", "reason": "new account"}  # fmt: skip
    bank.post(reverse("admin:reference_bankaccount_add"), form)
    request = ApprovalRequest.objects.get(kind="bank_account")
    # when the same administrator creates a second account, gives it the approver role and approves with it
    page = bank.post(
        reverse("admin:auth_user_add"),
        {
            "username": "sock",
            "usable_password": "true",
            "password1": "x-Very-long-pw-1",
            "password2": "x-Very-long-pw-1",
        },
    )
    assert page.status_code == 302
    sock = type(admin_user).objects.get(username="sock")
    sock.is_staff = True
    sock.save()
    sock.groups.set(Group.objects.filter(name="approver"))
    # then the approval is refused, and the account is not added
    with pytest.raises(NotPermitted, match="created or changed"):
        approval_decide(request=request, actor=sock, approve=True, reason="fine by me")
    assert request.proposed_by == admin_user and not BankAccount.objects.exists()


def test_bank_account_change_is_proposed_and_applied_on_approval(admin_user, approver, alice, usd):
    # given a participant's bank account
    account = BankAccount.objects.create(
        participant=alice, currency=usd, holder_name="Alice", aba_routing="021000021", account_number="111"
    )
    url = reverse("admin:reference_bankaccount_change", args=[account.pk])
    form = {"currency": usd.pk, "holder_name": "Alice", "aba_routing": "021000021", "account_number": "999",
            "reason": "customer letter 12"}  # fmt: skip
    # when an administrator edits it
    login(admin_user).post(url, form)
    # then nothing is written until an approver agrees, and the proposal records before and after
    account.refresh_from_db()
    assert account.account_number == "111"
    request = ApprovalRequest.objects.get(kind="bank_account", status="pending")
    assert request.target_id == alice.pk
    assert (request.payload["before"], request.payload["after"]) == (
        {"account_number": "111"},
        {"account_number": "999"},
    )
    with pytest.raises(NotPermitted):  # administrators do not approve, their own proposals least
        approval_decide(request=request, actor=admin_user, approve=True, reason="self")
    assert approve(approver, request).status == "approved"
    account.refresh_from_db()
    assert account.account_number == "999"
    assert account.history.first().history_change_reason.startswith("customer letter 12 (approved: checked)")


def test_change_apply_fails_a_stale_proposal_without_writing_over(admin_user, approver, alice, usd):
    # given a proposed change of account number
    account = BankAccount.objects.create(
        participant=alice, currency=usd, holder_name="Alice", aba_routing="021000021", account_number="111"
    )
    form = {"currency": usd.pk, "holder_name": "Alice", "aba_routing": "021000021", "account_number": "999",
            "reason": "letter"}  # fmt: skip
    login(admin_user).post(reverse("admin:reference_bankaccount_change", args=[account.pk]), form)
    request = ApprovalRequest.objects.get(kind="bank_account")
    # when the account changes meanwhile and the proposal is then approved
    BankAccount.objects.filter(pk=account.pk).update(account_number="555")
    request = approve(approver, request)
    # then the request fails and the newer value stays
    assert request.status == "failed" and "changed since the proposal" in request.outcome
    account.refresh_from_db()
    assert account.account_number == "555"


def test_wallet_signing_state_is_read_only_and_edits_are_proposed(admin_user, approver, alice):
    # given a participant's wallet that has not signed yet
    wallet = WalletAddress.objects.create(participant=alice, chain="ethereum", address="0x" + "11" * 20)
    page = login(admin_user).get(reverse("admin:reference_participant_change", args=[alice.pk])).content.decode()
    assert 'name="wallets-0-address"' not in page and 'name="wallets-0-next_nonce"' not in page
    # when an administrator edits the wallet, nonce and chain state included
    url = reverse("admin:reference_walletaddress_change", args=[wallet.pk])
    form = {"chain": "ethereum", "address": "0x" + "22" * 20, "label": "hot", "next_nonce": "0",
            "chain_state": "{}", "reason": "rotated"}  # fmt: skip
    login(admin_user).post(url, form)
    wallet.refresh_from_db()
    assert wallet.address == "0x" + "11" * 20  # nothing until approved
    request = ApprovalRequest.objects.get(kind="wallet")
    assert set(request.payload["after"]) == {"address", "label"}
    # then on approval only address and label change; the signing state stays as the pipeline left it
    WalletAddress.objects.filter(pk=wallet.pk).update(chain_state={"k": 1})  # the pipeline signed meanwhile
    request = approve(approver, request)
    assert request.status == "failed" and "has signed transfers" in request.outcome
    WalletAddress.objects.filter(pk=wallet.pk).update(chain_state={})
    login(admin_user).post(url, form)
    request = approve(approver, ApprovalRequest.objects.get(kind="wallet", status="pending"))
    assert request.status == "approved"
    wallet.refresh_from_db()
    assert (wallet.label, wallet.next_nonce, wallet.chain_state) == ("hot", 0, {})
    assert wallet.address.lower() == "0x" + "22" * 20
    # and the signing state cannot be proposed through the service either
    payload = {"model": "settlement.walletaddress", "pk": wallet.pk, "before": {}, "after": {"next_nonce": "0"}}
    with pytest.raises(ValidationFailed, match="not proposable"):
        approval_propose(kind="wallet", target_id=alice.pk, actor=admin_user, reason="reset", payload=payload)
    # and once it has signed, its address cannot be proposed away (its nonce belongs to that key)
    WalletAddress.objects.filter(pk=wallet.pk).update(next_nonce=7)
    login(admin_user).post(url, {**form, "address": "0x" + "33" * 20})
    assert not ApprovalRequest.objects.filter(kind="wallet", status="pending").exists()
    assert WalletAddress.objects.get(pk=wallet.pk).next_nonce == 7


def test_beat_task_disable_and_edit_are_proposed_and_recorded(admin_user, approver):
    # given beat's schedule
    beat_defaults_install()
    task = PeriodicTask.objects.get(name="reconciliation-hourly")
    assert task.enabled
    changelist = reverse("admin:django_celery_beat_periodictask_changelist")
    # when an administrator disables it (the stock actions are gone)
    form = {"action": "propose_disable", "_selected_action": [task.pk], "apply": "1", "reason": "bank outage"}
    login(admin_user).post(changelist, form)
    login(admin_user).post(changelist, {**form, "action": "disable_tasks"})
    # then it stays enabled until approved, and the approval records the change
    task.refresh_from_db()
    assert task.enabled
    request = ApprovalRequest.objects.get(kind="beat_task")
    assert (request.payload["before"], request.payload["after"]) == ({"enabled": "True"}, {"enabled": "False"})
    assert approve(approver, request).status == "approved"
    task.refresh_from_db()
    assert not task.enabled
    # and an edit in the form (moving it to half past) is a proposal too
    half_past = CrontabSchedule.objects.create(minute="30", hour="*", timezone="UTC")
    url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
    assert login(admin_user).get(url).status_code == 200
    form = {"name": task.name, "task": task.task, "crontab": half_past.pk, "args": "[]", "kwargs": "{}",
            "headers": "{}", "reason": "the bank posts at :20"}  # fmt: skip
    login(admin_user).post(url, form)
    task.refresh_from_db()
    assert task.crontab_id != half_past.pk
    edit = ApprovalRequest.objects.get(kind="beat_task", status="pending")
    assert edit.payload["after"]["crontab"] == str(half_past.pk)
    assert approve(approver, edit).status == "approved"
    task.refresh_from_db()
    assert task.crontab_id == half_past.pk
    # and an existing schedule cannot be edited in place (that would move its tasks unseen)
    crontab = task.crontab
    page = login(admin_user).post(reverse("admin:django_celery_beat_crontabschedule_change", args=[crontab.pk]), {})
    assert page.status_code == 403
    assert CrontabSchedule.objects.get(pk=crontab.pk).minute == crontab.minute


def test_asset_cycle_change_in_flight_is_proposed(admin_user, approver, alice, bob, usd, btc):
    # given a BTC/USD trade still settling
    with time_machine.travel(NOON, tick=False):
        factories.trade(instrument=factories.instrument(btc, usd), buyer=alice, seller=bob, quantity="1", price="10")
    url = reverse("admin:reference_asset_change", args=[btc.pk])
    form = {"code": "BTC", "name": "BTC", "kind": "crypto", "precision": 8, "settlement_cycle": 1, "calendar": "24x7",
            "chain": "bitcoin", "required_confirmations": 1, "is_active": "on", "reason": "move to T+1"}  # fmt: skip
    # when an administrator changes its settlement cycle
    login(admin_user).post(url, form)
    # then it is a proposal, applied on approval
    assert Asset.objects.get(pk=btc.pk).settlement_cycle == 0
    request = ApprovalRequest.objects.get(kind="asset")
    assert (request.payload["before"], request.payload["after"]) == (
        {"settlement_cycle": "0"},
        {"settlement_cycle": "1"},
    )
    assert approve(approver, request).status == "approved"
    assert Asset.objects.get(pk=btc.pk).settlement_cycle == 1


def test_asset_edit_without_instructions_in_flight_is_saved_at_once(admin_user, usd):
    # given an asset nothing is settling in
    url = reverse("admin:reference_asset_change", args=[usd.pk])
    form = {"code": "USD", "name": "Dollar", "kind": "fiat", "precision": 2, "settlement_cycle": 2, "calendar": "FED",
            "chain": "", "required_confirmations": 1, "is_active": "on", "reason": "T+2 market"}  # fmt: skip
    # when an administrator edits it
    login(admin_user).post(url, form)
    # then it is saved (history keeps the reason), no proposal
    usd.refresh_from_db()
    assert (usd.name, usd.settlement_cycle) == ("Dollar", 2)
    assert usd.history.first().history_change_reason == "T+2 market"
    assert not ApprovalRequest.objects.exists()


def test_net_debit_cap_raise_is_proposed_and_applied_on_approval(admin_user, approver, alice, usd):
    from decimal import Decimal

    from netting.models import NetDebitCap

    # given a participant's net debit cap
    cap = NetDebitCap.objects.create(participant=alice, asset=usd, cap=Decimal("500.00"))
    url = reverse("admin:netting_netdebitcap_change", args=[cap.pk])
    # when an administrator raises it
    login(admin_user).post(url, {"participant": alice.pk, "asset": usd.pk, "cap": "5000.00", "reason": "risk ok"})
    # then the old limit holds until an approver agrees
    cap.refresh_from_db()
    assert cap.cap == Decimal("500.00")
    request = ApprovalRequest.objects.get(kind="net_debit_cap")
    assert approve(approver, request).status == "approved"
    cap.refresh_from_db()
    assert cap.cap == Decimal("5000.00")
