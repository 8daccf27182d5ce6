"""The settings run on PostgreSQL only: without DATABASE_URL (or with another database's URL) they
refuse to load and say what to do, instead of falling back to a SQLite file that cannot hold
18-decimal amounts exactly, enforce the ledger's triggers or settle netted legs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_settings(database_url: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "MIGRATE_DATABASE_URL"}}
    env |= {"DEBUG": "1", "CLEARHOUSE_PRODUCTION": "0"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.DATABASES['default']['ENGINE'])"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("database_url", "message"),
    [(None, "DATABASE_URL is not set"), ("", "DATABASE_URL is not set"), ("sqlite:///var/db.sqlite3", "not sqlite")],
)
def test_settings_refuse_to_load_without_a_postgres_database_url(database_url, message):
    # given no DATABASE_URL, an empty one, or a SQLite one
    # when the settings load
    result = _load_settings(database_url)
    # then they refuse, saying what to do (no SQLite fallback)
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr
    assert "make demo" in result.stderr or message == "not sqlite"


def test_settings_load_with_a_postgres_unix_socket_url():
    # given the URL the demo's embedded PostgreSQL gives (a Unix socket directory as the host)
    # when / then the settings load on the PostgreSQL backend
    result = _load_settings("postgres://postgres@%2Fwork%2Fvar%2Fpg:5432/clearhouse_demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.postgresql"
