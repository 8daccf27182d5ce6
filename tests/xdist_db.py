"""The test database under ``pytest -n`` (xdist): migrated once, then copied for each worker.

pytest-django gives each xdist worker its own database (``test_<name>_gw<k>``) and would run every
migration in each of them; the migrations are the slowest part of the suite's setup (a minute or
more of CPU), so on two cores N workers migrating at once take N times as long. Here the first
worker to get the lock migrates a template database ``test_<name>_template`` and every worker
(that one included) copies it with ``CREATE DATABASE ... TEMPLATE`` - the same schema, triggers,
grants and data migrations, in a second. The controller drops the template at the end of the run.

Without xdist this module is not used (pytest-django's own ``django_db_setup`` runs); with
``--reuse-db`` each worker keeps its own database as with pytest-django.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

TEMPLATE_SUFFIX = "_template"


def _template_name(database: dict) -> str:
    worker = os.environ["PYTEST_XDIST_WORKER"]
    name = database["TEST"]["NAME"]
    return name.removesuffix(f"_{worker}") + TEMPLATE_SUFFIX


def _recreate_from(connection, *, target: str, template: str) -> None:
    quote = connection.ops.quote_name
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(target)}")
        cursor.execute(f"CREATE DATABASE {quote(target)} TEMPLATE {quote(template)}")


def _migrate_template(connection, template: str, verbosity: int) -> None:
    """Create and migrate the template (as pytest-django would the worker's own database)."""
    test_name = connection.settings_dict["TEST"]["NAME"]
    connection.settings_dict["TEST"]["NAME"] = template
    try:
        connection.creation.create_test_db(verbosity=verbosity, autoclobber=True, serialize=False)
    finally:
        connection.settings_dict["TEST"]["NAME"] = test_name
        connection.close()  # CREATE DATABASE ... TEMPLATE refuses a template anyone is connected to


def _worker_databases(request: pytest.FixtureRequest, lock_dir: Path) -> list[tuple[object, str, str]]:
    from django.conf import settings
    from django.db import connections

    verbosity = request.config.option.verbose
    created = []
    with (lock_dir / "clearhouse-test-db.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker migrates, the others wait for it
        for alias in connections:
            connection = connections[alias]
            template = _template_name(connection.settings_dict)
            marker = lock_dir / f"{template}.ready"
            if not marker.exists():
                _migrate_template(connection, template, verbosity)
                marker.touch()
            target = connection.settings_dict["TEST"]["NAME"]
            _recreate_from(connection, target=target, template=template)
            original = connection.settings_dict["NAME"]
            connection.close()
            connection.settings_dict["NAME"] = target
            settings.DATABASES[alias]["NAME"] = target
            created.append((connection, original, target))
    return created


@pytest.fixture(scope="session")
def django_db_setup(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker,
    django_db_keepdb: bool,
    django_db_createdb: bool,
    django_db_modify_db_settings: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """pytest-django's ``django_db_setup`` for an xdist worker (tests/conftest.py installs it only
    there). No test uses ``serialized_rollback``, so nothing is serialized (as pytest-django does
    then)."""
    from django.test.utils import setup_databases

    if django_db_keepdb and not django_db_createdb:  # --reuse-db: each worker keeps its own database
        with django_db_blocker.unblock():
            setup_databases(
                verbosity=request.config.option.verbose, interactive=False, keepdb=True, serialized_aliases=set()
            )
        yield
        return
    with django_db_blocker.unblock():
        created = _worker_databases(request, tmp_path_factory.getbasetemp().parent)
    yield
    with django_db_blocker.unblock():
        for connection, original, target in created:
            connection.close()
            connection.settings_dict["NAME"] = original
            with connection._nodb_cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(target)}")


def drop_templates() -> None:
    """The controller of an xdist run, once every worker is done: drop the template databases."""
    from django.db import connections

    for alias in connections:
        connection = connections[alias]
        name = connection.settings_dict["TEST"].get("NAME") or f"test_{connection.settings_dict['NAME']}"
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name + TEMPLATE_SUFFIX)}")
