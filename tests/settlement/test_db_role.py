"""The application runs as a least-privilege role: it settles, but cannot empty or rewrite the
ledger and audit tables, nor switch the guard triggers off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from common.choices import InstructionStatus, Leg
from ledger.models import TransitionLog
from ledger.services.audit import transition_log_verify
from ledger.services.integrity import ledger_verify_balances
from ops.dbroles import app_role_check
from settlement.services.instructions import trade_settle_internal
from tests.factories import ACTOR, fund, trade

ROLE = "clearhouse_app_test"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.django_db(transaction=True)  # the role's grants must be committed to be seen


@pytest.fixture
def as_app_role(transactional_db, alice, bob, btc_usd):
    """Reference data in place (as the owner), then the default connection reconnects as the role."""
    call_command("db_app_role", role=ROLE)
    owner = connection.settings_dict["USER"]
    connection.close()
    connection.settings_dict["USER"] = ROLE
    yield
    connection.close()
    connection.settings_dict["USER"] = owner


def refused(sql: str) -> None:
    with (
        pytest.raises(DatabaseError, match=r"permission denied|must be owner"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)


def test_db_app_role_settles_but_cannot_truncate_or_delete_the_log(as_app_role, alice, bob, btc, usd, btc_usd):
    # given the application connected as its role
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (ROLE, False)
    assert app_role_check(databases=["default"]) == []
    # when it funds and settles a trade
    fund(bob, btc, "1")
    fund(alice, usd, "70000")
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="65000")
    legs = trade_settle_internal(trade=t, actor=ACTOR)
    # then the settlement went through, audited, and the checks read what they need
    assert {leg.status for leg in legs} == {InstructionStatus.SETTLED}
    assert TransitionLog.objects.filter(entity_id__in=[leg.pk for leg in legs]).count() >= 2
    assert transition_log_verify().ok and ledger_verify_balances().ok
    # and emptying, deleting or rewriting evidence, switching triggers off or DDL are refused
    logged = TransitionLog.objects.count()
    refused("TRUNCATE settlement_transitionlog")
    refused("DELETE FROM settlement_transitionlog")
    refused("DELETE FROM settlement_posting")
    refused("DELETE FROM settlement_ledgeraccount")
    refused("UPDATE settlement_historicalsettlementinstruction SET status = 'pending'")
    refused("SET session_replication_role = replica")
    refused("ALTER TABLE settlement_transitionlog DISABLE TRIGGER ALL")
    refused("CREATE TABLE sneaky (id int)")
    assert TransitionLog.objects.count() == logged
    assert t.instructions.get(leg=Leg.PAYMENT).status == InstructionStatus.SETTLED


def test_db_app_role_command_runs_as_the_owner_of_migrate_database_url():
    # given the app's URL names a role that cannot log in, and the owner's URL is set apart
    db = connection.settings_dict
    owner_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = os.environ | {
        "DATABASE_URL": f"postgres://no_such_role@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MIGRATE_DATABASE_URL": owner_url,
    }
    # when the owner command runs, then it connected as the owner (it read the schema's tables)
    out = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "db_app_role", "--role", ROLE, "--sql"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'GRANT SELECT, INSERT ON "settlement_transitionlog"' in out
    assert 'GRANT SELECT, INSERT, UPDATE ON "settlement_ledgeraccount"' in out
    assert "TRUNCATE" not in out and 'DELETE ON "settlement_posting"' not in out


def test_db_app_role_check_warns_when_the_app_is_a_superuser():
    # given the test run's connection, a superuser; when the deploy check runs, then it warns
    assert [w.id for w in app_role_check(databases=["default"])] == ["settlement.W001"]
    assert app_role_check(databases=None) == []
