"""The database: PostgreSQL only, from DATABASE_URL (MIGRATE_DATABASE_URL for the owner commands)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

# The app connects as a least-privilege role (DATABASE_URL; see settlement/dbroles.py); migrate and
# db_app_role connect as the schema owner, MIGRATE_DATABASE_URL, when it is set.
OWNER_COMMANDS = {"migrate", "db_app_role"}
CLEARHOUSE_DB_APP_ROLE = os.environ.get("CLEARHOUSE_DB_APP_ROLE", "clearhouse_app")
_COMMAND = sys.argv[1] if len(sys.argv) > 1 and Path(sys.argv[0]).name in {"manage.py", "django-admin"} else ""
if _COMMAND in OWNER_COMMANDS and os.environ.get("MIGRATE_DATABASE_URL"):
    DATABASE_URL = os.environ["MIGRATE_DATABASE_URL"]
else:
    DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    # PostgreSQL only (exact 18-decimal amounts, the ledger's triggers, row locks): no file fallback.
    # `make demo` (scripts/demo.sh) sets DATABASE_URL itself, to an embedded PostgreSQL when needed.
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Clearhouse runs on PostgreSQL only: set DATABASE_URL="
        "postgres://USER@HOST:5432/DBNAME, or run `make demo`, which starts an embedded PostgreSQL "
        "under var/ when no server answers on 127.0.0.1:5432."
    )
if not DATABASE_URL.startswith(("postgres://", "postgresql://", "pgsql://")):
    raise ImproperlyConfigured(
        f"DATABASE_URL must be a postgres:// URL (Clearhouse runs on PostgreSQL only), not {DATABASE_URL.split(':')[0]}"
    )
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
# A connection the database or a proxy dropped is noticed before use, not in the middle of a task.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
