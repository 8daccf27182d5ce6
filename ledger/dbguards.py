"""PostgreSQL guards for evidence tables, shared by the migrations that install them.

Kept small and stable on purpose: migrations import it, so changing what a function does changes
what an old migration does. ``clearhouse_append_only()`` itself is created by migration 0002.

* Ledger and audit tables (journals, postings, the transition log and its head row) refuse
  TRUNCATE: a row trigger does not fire on TRUNCATE, so without a statement trigger the whole
  log could be emptied past the UPDATE/DELETE guard.
* Every simple-history table is append-only: UPDATE, DELETE and TRUNCATE raise. History is
  evidence; simple-history only ever inserts.

Only a superuser can get around them (``session_replication_role = replica`` or dropping the
trigger), which is why the application connects as a role that is neither superuser nor owner
(see ``manage.py db_app_role``).
"""

from __future__ import annotations

from typing import Any

# Tables whose rows are append-only already (row triggers of 0002) and the chain head.
LEDGER_AUDIT_TABLES = ("settlement_journal", "settlement_posting", "settlement_transitionlog")
HEAD_TABLE = "settlement_transitionloghead"
# The transition log's batches (ledger migration 0002): append-only like the log itself.
AUDIT_BATCH_TABLE = "settlement_auditbatch"


def _create_trigger(schema_editor: Any, *, table: str, name: str, when: str, level: str) -> None:
    schema_editor.execute(
        f'CREATE OR REPLACE TRIGGER "{name}" {when} ON "{table}" '
        f"FOR EACH {level} EXECUTE FUNCTION clearhouse_append_only()"
    )


def truncate_guard(schema_editor: Any, table: str) -> None:
    _create_trigger(schema_editor, table=table, name=f"{table}_no_truncate", when="BEFORE TRUNCATE", level="STATEMENT")


def append_only_guard(schema_editor: Any, table: str) -> None:
    """Refuse UPDATE, DELETE and TRUNCATE on ``table``."""
    _create_trigger(
        schema_editor, table=table, name=f"{table}_append_only", when="BEFORE UPDATE OR DELETE", level="ROW"
    )
    truncate_guard(schema_editor, table)


def head_guard(schema_editor: Any, table: str = HEAD_TABLE) -> None:
    """The chain head row is updated by every append, but never deleted or truncated."""
    _create_trigger(schema_editor, table=table, name=f"{table}_no_delete", when="BEFORE DELETE", level="ROW")
    truncate_guard(schema_editor, table)


def drop_guards(schema_editor: Any, table: str, *, row: bool) -> None:
    schema_editor.execute(f'DROP TRIGGER IF EXISTS "{table}_no_truncate" ON "{table}"')
    schema_editor.execute(f'DROP TRIGGER IF EXISTS "{table}_no_delete" ON "{table}"')
    if row:
        schema_editor.execute(f'DROP TRIGGER IF EXISTS "{table}_append_only" ON "{table}"')


def history_tables(apps: Any) -> list[str]:
    """The tables of every simple-history model in ``apps`` (a migration's state registry)."""
    return sorted(
        model._meta.db_table
        for model in apps.get_models()
        if model.__name__.startswith("Historical") and any(f.name == "history_id" for f in model._meta.fields)
    )


def guards_sync(*, using: str = "default", **_: Any) -> list[str]:
    """post_migrate: history tables added after migration 0019 (a new ``HistoricalRecords``) get
    their guards too. Creates only the missing triggers; returns the tables it guarded."""
    from django.apps import apps
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
        )
        present = set(cursor.fetchall())
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = {name for (name,) in cursor.fetchall()}
    missing = [
        table
        for table in history_tables(apps)
        if table in tables and not {(table, f"{table}_append_only"), (table, f"{table}_no_truncate")} <= present
    ]
    if missing:
        with connection.schema_editor() as schema_editor:
            for table in missing:
                append_only_guard(schema_editor, table)
    return missing
