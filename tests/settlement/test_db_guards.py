"""The database itself refuses to rewrite evidence: TRUNCATE on ledger and audit tables, and any
UPDATE, DELETE or TRUNCATE of simple-history rows."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from simple_history.models import registered_models

from common.choices import Leg
from ledger import dbguards
from ledger.models import TransitionLog, TransitionLogHead
from settlement.models import SettlementInstruction
from settlement.services.instructions import instruction_cancel
from tests.factories import ACTOR, trade

pytestmark = pytest.mark.django_db


@pytest.fixture
def cancelled(alice, bob, btc_usd):
    t = trade(buyer=alice, seller=bob, instrument=btc_usd, quantity="1", price="1", external_id="G1")
    leg = t.instructions.get(leg=Leg.DELIVERY)
    return instruction_cancel(instruction=leg, actor=ACTOR, reason="cancel")


def refused(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE refuses to run past pending FK checks
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.mark.parametrize(
    "table",
    ["settlement_journal", "settlement_posting", "settlement_transitionlog", "settlement_transitionloghead"],
)
def test_truncate_is_refused_on_ledger_and_audit_tables(cancelled, table):
    # given a log with rows and its head
    rows = TransitionLog.objects.count()
    assert rows >= 1
    # when someone truncates the table (CASCADE, as a careless owner would)
    refused(f"TRUNCATE {table} CASCADE")
    # then nothing was removed
    assert TransitionLog.objects.count() == rows
    assert TransitionLogHead.objects.get(pk=1).length == rows


def test_the_chain_head_row_cannot_be_deleted(cancelled):
    # given the head row
    head = TransitionLogHead.objects.get(pk=1)
    # when it is deleted, then the database refuses
    refused("DELETE FROM settlement_transitionloghead")
    assert TransitionLogHead.objects.get(pk=1).last_hash == head.last_hash


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE {table} SET status = 'settled'",
        "DELETE FROM {table}",
        "TRUNCATE {table}",
    ],
)
def test_history_rows_cannot_be_updated_deleted_or_truncated(cancelled, sql):
    # given an instruction with two history records (created, cancelled)
    history = SettlementInstruction.history.model
    before = list(history.objects.filter(id=cancelled.pk).order_by("history_id").values_list("status", flat=True))
    assert len(before) == 2
    # when the history is rewritten, then the database refuses
    refused(sql.format(table=history._meta.db_table))
    after = list(history.objects.filter(id=cancelled.pk).order_by("history_id").values_list("status", flat=True))
    assert after == before


def test_every_history_table_is_append_only():
    # given every model simple-history tracks, in every app
    tables = sorted({model.history.model._meta.db_table for model in registered_models.values()})
    assert "historicalsettlementinstruction" in " ".join(tables) and len(tables) > 10
    # when the triggers on their tables are listed
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND c.relname = ANY(%s)",
            [tables],
        )
        triggers = set(cursor.fetchall())
    # then each refuses UPDATE/DELETE (row) and TRUNCATE (statement)
    missing = [
        table
        for table in tables
        if (table, f"{table}_append_only") not in triggers or (table, f"{table}_no_truncate") not in triggers
    ]
    assert missing == []


UPDATE_STATUS = "UPDATE {table} SET status = 'settled'"


def test_guards_sync_guards_a_history_table_added_after_the_migration(cancelled):
    # given a history table without its guards (as one of a model added later would be)
    table = SettlementInstruction.history.model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TRIGGER "{table}_append_only" ON "{table}"')
        cursor.execute(f'DROP TRIGGER "{table}_no_truncate" ON "{table}"')
    # when migrate's post_migrate step runs (twice: the second finds nothing to do)
    guarded = dbguards.guards_sync(), dbguards.guards_sync()
    # then the table is append-only again
    assert guarded == ([table], [])
    refused(UPDATE_STATUS.format(table=table))
