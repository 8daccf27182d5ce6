from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from rest_framework.test import APIClient

from tests import factories
from tests.factories import ACTOR

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n`: migrate once, copy the database per worker
    from tests.xdist_db import django_db_setup  # noqa: F401


def pytest_addoption(parser):
    parser.addoption(
        "--clock",
        default=os.environ.get("CLEARHOUSE_TEST_CLOCK", ""),
        help="travel the Python clock of the whole run to this ISO date or datetime (UTC), ticking from there: "
        "shows the suite passes on any date (e.g. --clock 2027-03-01 or --clock 2026-12-24T23:30)",
    )


def pytest_configure(config):
    """Every test runs on PostgreSQL: the guarantees under test live in the database."""
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        raise pytest.UsageError("tests run on PostgreSQL: set DATABASE_URL (see `make test`)")
    _flush_past_the_truncate_guards()
    clock = config.getoption("--clock")
    if clock:
        import time_machine

        try:
            destination = datetime.fromisoformat(clock)
        except ValueError as exc:
            raise pytest.UsageError(f"--clock: not an ISO date or datetime: {clock!r}") from exc
        if destination.tzinfo is None:
            destination = destination.replace(tzinfo=UTC)
        traveller = time_machine.travel(destination, tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)
        config.stash[_TRAVELLER] = traveller


_TRAVELLER = pytest.StashKey["object"]()


@pytest.fixture(autouse=True)
def _real_clock_for_worker_tests(request):
    """Tests with real worker processes (``real_clock``) run on the machine's clock even under
    ``--clock``: the workers cannot travel, and rows both sides stamp must agree on "now"."""
    traveller = request.config.stash.get(_TRAVELLER, None)
    if traveller is None or request.node.get_closest_marker("real_clock") is None:
        yield
        return
    traveller.stop()
    try:
        yield
    finally:
        traveller.start()


# Under `pytest -n` (make test), files whose tests take the longest go first, so that the last
# file a worker starts is a short one (xdist hands out whole files: `--dist loadfile`).
SLOW_FIRST = (
    "tests/test_demo.py",
    "tests/api/test_schema_contract.py",
    "tests/netting/test_workers.py",
    "tests/crypto/test_workers.py",
    "tests/settlement/test_concurrency.py",
    "tests/crypto/test_multisend.py",
    "tests/settlement/test_db_role.py",
    "tests/crypto/test_keystore.py",
    "tests/browser/test_ops_flow.py",
)


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {path: n for n, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: the rest keep their order


def pytest_sessionfinish(session):
    if getattr(session.config, "workerinput", None) is None and session.config.getoption("numprocesses", None):
        from pytest_django.plugin import blocking_manager_key

        from tests.xdist_db import drop_templates  # the xdist controller, after its workers

        with session.config.stash[blocking_manager_key].unblock():
            drop_templates()


def pytest_report_header(config):
    clock = config.getoption("--clock")
    return f"clock: travelled to {clock} (Python clock only)" if clock else "clock: the machine's"


def _flush_past_the_truncate_guards() -> None:
    """``transaction=True`` tests empty the database with TRUNCATE after each test, which the
    ledger, audit and history tables refuse (ledger/dbguards.py). The test harness flushes as
    the superuser it is, with triggers off for that one transaction - what no application role can do."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    if getattr(DatabaseOperations.execute_sql_flush, "past_guards", False):
        return
    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        return original(self, ["SET LOCAL session_replication_role = replica", *sql_list])

    execute_sql_flush.past_guards = True
    DatabaseOperations.execute_sql_flush = execute_sql_flush


@pytest.fixture
def transition_log_started(db):
    """The transition log's head row, as after the first status change ever (it is created
    lazily, in the first transition). Query budgets measure that steady state: without it the
    first transition of a test costs 4 more queries, so a budget test passed or failed by
    whether a test before it, in the same process, had left the row committed."""
    from ledger.models import TransitionLogHead

    TransitionLogHead.objects.get_or_create(pk=1)


@pytest.fixture
def usd(db):
    return factories.usd()


@pytest.fixture
def btc(db):
    return factories.btc()


@pytest.fixture
def btc_usd(btc, usd):
    return factories.instrument(btc, usd)


@pytest.fixture
def alice(db):
    return factories.ParticipantFactory(code="ALICE")


@pytest.fixture
def bob(db):
    return factories.ParticipantFactory(code="BOB")


@pytest.fixture
def carol(db):
    return factories.ParticipantFactory(code="CAROL")


@pytest.fixture
def staff_user(db):
    return factories.UserFactory(username="engine", is_staff=True)


def token_client(user, scopes=("read", "trades:write")) -> APIClient:
    from settlement.services.tokens import token_issue

    client = APIClient()
    issued = token_issue(user=user, name="tests", scopes=list(scopes), actor=ACTOR)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.key}")
    return client


@pytest.fixture
def staff_client(staff_user):
    return token_client(staff_user)


@pytest.fixture(autouse=True)
def audit_anchor_file(tmp_path, settings):
    """Each test anchors the transition log in its own file (the chain starts empty in each test)."""
    settings.CLEARHOUSE_AUDIT_ANCHOR_PATH = str(tmp_path / "audit-anchors.jsonl")
    return tmp_path / "audit-anchors.jsonl"
