from __future__ import annotations

import itertools

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from settlement.choices import Leg
from settlement.models import TransitionLog
from settlement.services.audit import transition_log_verify
from settlement.services.instructions import instruction_fail, instruction_retry
from tests.factories import ACTOR, trade

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged(alice, bob, btc_usd):
    for n in range(3):
        t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1", external_id=f"T{n}")
        leg = t.instructions.get(leg=Leg.DELIVERY)
        instruction_fail(instruction=leg, actor=ACTOR, reason=f"fail {n}")  # one log row each
    return list(TransitionLog.objects.order_by("id"))


def raw(sql: str, *params) -> None:
    """Tamper as a superuser with direct database access would: around the append-only trigger."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # triggers off, as a superuser could
        cursor.execute(sql, params)
        cursor.execute("SET session_replication_role = DEFAULT")


def test_chain_links_every_row_to_the_previous(logged):
    assert len(logged) == 3
    for before, after in itertools.pairwise(logged):
        assert after.prev_hash == before.hash
    report = transition_log_verify()
    assert report.ok and report.checked == 3
    call_command("verify_transition_log")


def test_log_rows_cannot_be_updated_or_deleted(logged):
    for sql in ("UPDATE settlement_transitionlog SET reason = 'x'", "DELETE FROM settlement_transitionlog"):
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql)


def test_verify_detects_an_edited_row(logged):
    raw("UPDATE settlement_transitionlog SET reason = 'nothing to see' WHERE id = %s", logged[1].pk)
    report = transition_log_verify()
    assert not report.ok
    assert any(f"row {logged[1].pk}: content does not match" in p for p in report.problems)
    with pytest.raises(CommandError, match="BROKEN"):
        call_command("verify_transition_log")


def test_verify_detects_a_deleted_row(logged):
    raw("DELETE FROM settlement_transitionlog WHERE id = %s", logged[1].pk)
    report = transition_log_verify()
    assert any(f"row {logged[2].pk}: prev_hash" in p for p in report.problems)


def test_verify_detects_a_truncated_tail(logged):
    raw("DELETE FROM settlement_transitionlog WHERE id = %s", logged[2].pk)
    report = transition_log_verify()
    assert any("chain head says 3 rows" in p for p in report.problems)


def test_chain_continues_across_transitions(logged, alice, bob, btc_usd):
    leg = TransitionLog.objects.last()
    from settlement.models import SettlementInstruction

    instruction = SettlementInstruction.objects.get(pk=leg.entity_id)
    # a retry appends to the same chain
    instruction_retry(instruction=instruction, actor=ACTOR, reason="x")
    report = transition_log_verify()
    assert report.ok and report.checked == 4
