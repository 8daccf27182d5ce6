"""The hourly ledger integrity check: every balance equals the sum of its postings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from common.choices import AccountKind
from ledger.models import LedgerAccount, Posting
from ledger.services.integrity import ledger_verify_balances
from ledger.services.ledger import account_for, ledger_lock, ledger_post
from ledger.tasks import ledger_verify_balances_task
from ops.models import OpsAlert
from tests.factories import ACTOR, fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def moved(alice, bob, usd):
    fund(alice, usd, "100.00")
    lock = ledger_lock(owner=alice, asset=usd, amount=Decimal("30.25"), reference="L1", actor=ACTOR)
    ledger_post(lock=lock, to_account=account_for(owner=bob, asset=usd, kind=AccountKind.AVAILABLE), actor=ACTOR)
    return LedgerAccount.objects.get(owner=bob, asset=usd, kind=AccountKind.AVAILABLE)


def raw(sql: str, *params) -> None:
    """Write as a superuser around the ledger's triggers would (after the checks of the honest
    writes before it have run, so the test's own end-of-test constraint check passes)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET session_replication_role = DEFAULT")


def test_ledger_verify_balances_passes_on_a_consistent_ledger(moved):
    # given a funded, locked and posted ledger
    # when the check runs
    report = ledger_verify_balances()
    # then every account matches and the task and the command say so
    assert report.ok and report.accounts >= 4 and report.problems() == []
    assert ledger_verify_balances_task() is True
    call_command("ledger_verify_balances")
    assert not OpsAlert.objects.exists()


def test_ledger_verify_balances_task_alerts_on_a_balance_mismatch(moved):
    # given a balance changed outside the ledger services (a cent invented)
    raw("UPDATE settlement_ledgeraccount SET balance = balance + 0.01 WHERE id = %s", moved.pk)
    # when the hourly check runs, twice
    outcome = ledger_verify_balances_task(), ledger_verify_balances_task()
    # then it fails and alerts once, critically, naming the account
    assert outcome == (False, False)
    alert = OpsAlert.objects.get()
    assert alert.level == "critical" and "operator" in alert.roles
    assert f"account {moved.pk}: balance 30.26" in alert.body and "sum to 30.25" in alert.body
    with pytest.raises(CommandError, match="FAILED"):
        call_command("ledger_verify_balances")


def test_ledger_verify_balances_detects_an_edited_posting(moved):
    # given a posting edited around the append-only trigger
    posting = Posting.objects.filter(account=moved).get()
    raw("UPDATE settlement_posting SET amount = 1 WHERE id = %s", posting.pk)
    # when the check runs
    report = ledger_verify_balances()
    # then the account no longer matches and its journal no longer balances
    assert [pk for pk, *_ in report.mismatches] == [moved.pk]
    assert [pk for pk, *_ in report.unbalanced] == [posting.journal_id]


def test_ledger_verify_balances_runs_hourly():
    # given beat's default schedule, then the check is in it, once an hour
    entry = settings.CELERY_BEAT_SCHEDULE["ledger-verify-balances"]
    assert entry["task"] == "settlement.tasks.ledger_verify_balances_task"
    assert entry["schedule"] == crontab(minute=23)
