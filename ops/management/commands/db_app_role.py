from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from ops.dbroles import app_role_apply, app_role_sql, schema_tables


class Command(BaseCommand):
    help = (
        "Create or update the least-privilege database role the application runs as (no DDL, no TRUNCATE, "
        "append-only ledger and audit tables). Runs as the schema owner (MIGRATE_DATABASE_URL when set); "
        "--sql prints the statements instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--role", default=settings.CLEARHOUSE_DB_APP_ROLE)
        parser.add_argument(
            "--password-env",
            default="CLEARHOUSE_APP_DB_PASSWORD",
            help="Environment variable holding the role's password (unset: the password is left as it is).",
        )
        parser.add_argument("--sql", action="store_true", help="Print the SQL, change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("the application role is a PostgreSQL role")
        role = options["role"]
        if connection.settings_dict.get("USER") == role:
            raise CommandError(f"connected as {role} itself: run this as the schema owner (MIGRATE_DATABASE_URL)")
        password = os.environ.get(options["password_env"]) or None
        if options["sql"]:
            statements = app_role_sql(
                role=role, tables=schema_tables(connection), database=connection.settings_dict["NAME"], password=None
            )
            self.stdout.write(";\n".join(statements) + ";")
            return
        statements = app_role_apply(connection=connection, role=role, password=password)
        self.stdout.write(self.style.SUCCESS(f"role {role}: {len(statements)} statements applied"))
