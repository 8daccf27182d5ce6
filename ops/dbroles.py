"""The least-privilege PostgreSQL role the application runs as.

Migrations run as the schema owner (``MIGRATE_DATABASE_URL``); the web processes, workers and beat
connect as ``CLEARHOUSE_DB_APP_ROLE`` (``DATABASE_URL``), which owns nothing, is no superuser and
cannot run DDL, so it can neither switch the guard triggers off (``session_replication_role``,
``ALTER TABLE ... DISABLE TRIGGER``) nor drop them. Its table privileges:

* append-only evidence (journals, postings, the transition log and its batches, every
  simple-history table):
  SELECT, INSERT;
* rows that change but are never removed (ledger accounts and locks, fee charges, the chain head,
  imported external records and files, as ``ops.roles.IMMUTABLE`` lists): SELECT, INSERT,
  UPDATE;
* ``django_migrations``: SELECT;
* everything else: SELECT, INSERT, UPDATE, DELETE. TRUNCATE nowhere.

``manage.py db_app_role`` applies this (``--sql`` prints it for a DBA); migrate re-applies it to
new tables when the role exists, and default privileges give tables created later SELECT, INSERT
and UPDATE until then.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as django_apps

from ledger import dbguards
from ops.roles import IMMUTABLE

APPEND_ONLY = "SELECT, INSERT"
NO_DELETE = "SELECT, INSERT, UPDATE"
READ_WRITE = "SELECT, INSERT, UPDATE, DELETE"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_privileges(tables: list[str]) -> dict[str, str]:
    """Each table of the schema → the privileges the application role gets on it."""
    append_only = {*dbguards.LEDGER_AUDIT_TABLES, dbguards.AUDIT_BATCH_TABLE, *dbguards.history_tables(django_apps)}
    no_delete = {dbguards.HEAD_TABLE} | {django_apps.get_model(app, model)._meta.db_table for app, model in IMMUTABLE}
    privileges = {}
    for table in tables:
        if table in append_only:
            privileges[table] = APPEND_ONLY
        elif table in no_delete:
            privileges[table] = NO_DELETE
        elif table == "django_migrations":
            privileges[table] = "SELECT"
        else:
            privileges[table] = READ_WRITE
    return privileges


def app_role_sql(*, role: str, tables: list[str], database: str, password: str | None) -> list[str]:
    """The statements that create (or bring up to date) the application role. Idempotent."""
    r = _ident(role)
    attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
    create = f"CREATE ROLE {r} {attributes}"
    statements = [
        f"DO $$ BEGIN {create}; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        f"ALTER ROLE {r} {attributes}",
    ]
    if password is not None:
        statements.append(f"ALTER ROLE {r} PASSWORD '{password.replace(chr(39), chr(39) * 2)}'")
    statements += [
        f"GRANT CONNECT, TEMPORARY ON DATABASE {_ident(database)} TO {r}",
        f"REVOKE CREATE ON DATABASE {_ident(database)} FROM {r}",
        f"GRANT USAGE ON SCHEMA public TO {r}",
        f"REVOKE CREATE ON SCHEMA public FROM {r}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",  # PostgreSQL < 15 let every role create there
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {r}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {NO_DELETE} ON TABLES TO {r}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {r}",
    ]
    statements += [f"GRANT {privs} ON {_ident(table)} TO {r}" for table, privs in table_privileges(tables).items()]
    return statements


def schema_tables(connection: Any) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        return [name for (name,) in cursor.fetchall()]


def role_exists(connection: Any, role: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        return cursor.fetchone() is not None


def app_role_apply(*, connection: Any, role: str, password: str | None = None) -> list[str]:
    """Create or update the role over ``connection`` (the schema owner's), in one transaction."""
    from django.db import transaction

    statements = app_role_sql(
        role=role, tables=schema_tables(connection), database=connection.settings_dict["NAME"], password=password
    )
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    return statements


def app_role_sync(*, using: str = "default", **_: Any) -> None:
    """post_migrate: tables a migration added get the application role's privileges (when the
    role exists and the migration ran as someone else, the owner)."""
    from django.conf import settings
    from django.db import connections

    connection = connections[using]
    role = settings.CLEARHOUSE_DB_APP_ROLE
    if connection.vendor != "postgresql" or not role or connection.settings_dict.get("USER") == role:
        return
    if role_exists(connection, role):
        app_role_apply(connection=connection, role=role)


def app_role_check(*, databases: Any = None, **_: Any) -> list[Any]:
    """``manage.py check --deploy --database default``: warn when the application connects as a
    superuser or as the owner of the audit tables (it can then switch the guards off)."""
    from django.core.checks import Warning as CheckWarning
    from django.db import connections

    if not databases or "default" not in databases or connections["default"].vendor != "postgresql":
        return []
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper, t.tableowner = current_user FROM pg_roles r "
            "LEFT JOIN pg_tables t ON t.schemaname = 'public' AND t.tablename = 'settlement_transitionlog' "
            "WHERE r.rolname = current_user"
        )
        superuser, owner = cursor.fetchone()
    if not (superuser or owner):
        return []
    return [
        CheckWarning(
            "the application connects to PostgreSQL as a superuser or as the owner of the audit tables",
            hint="Run `manage.py db_app_role` as the owner and point DATABASE_URL at that role; "
            "keep the owner for MIGRATE_DATABASE_URL.",
            id="settlement.W001",
        )
    ]
