"""A fiat and equity window settled by a real Celery worker process on Redis, against the bank
and custodian simulators served over HTTP: window close dispatches the pay-ins after commit, beat's
report fetch hands the answers to the worker, and everything settles once; and the recovery
measurement: a worker SIGKILLed mid-pipeline and the broker's Redis crashed under its
replacement, the window settled within 30 s of the fault clearing, once."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from common.choices import InstructionStatus, JournalKind
from config.celery import app
from ledger.models import Journal
from netting.models import NettedInstruction, NettedStatus, NettingWindow, WindowStatus
from netting.services import window_close
from netting.tasks import rail_reports_fetch_task
from rails import networks as rail_network
from reference.models import BankAccount, CustodyAccount
from settlement.models import SettlementInstruction
from tests import factories, helpers
from tests.factories import ACTOR
from tests.netting.conftest import balances

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.real_clock]


@pytest.fixture
def networks(settings):
    rail_network.reset()
    bank = rail_network.network_simulator("bank")
    custodian = rail_network.network_simulator("custodian")
    bank.instant = custodian.instant = True
    settings.CLEARHOUSE_BANK_URL = bank.serve()
    settings.CLEARHOUSE_CUSTODIAN_URL = custodian.serve()
    assert settings.CELERY_BROKER_URL.startswith("redis://") and not app.conf.task_always_eager
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # the test broker db only
    yield bank, custodian
    bank.stop()
    custodian.stop()
    rail_network.reset()


def rail_env() -> dict[str, str]:
    return {
        "CLEARHOUSE_BANK_URL": settings.CLEARHOUSE_BANK_URL,
        "CLEARHOUSE_CUSTODIAN_URL": settings.CLEARHOUSE_CUSTODIAN_URL,
    }


def start_worker() -> subprocess.Popen:
    return helpers.start_worker("netting-worker", rail_env())


def three_parties_trading(bank, custodian, staff_client):
    """Three firms with bank and custody accounts trade AAPL/USD; returns the parties, the
    assets and the balances every leg should leave (gross)."""
    usd, aapl = factories.usd(), factories.aapl()
    factories.instrument(aapl, usd)
    parties = []
    for i in range(3):
        party = factories.ParticipantFactory(code=f"W{i}", name=f"Worker Firm {i}")
        BankAccount.objects.create(
            participant=party, currency=usd, holder_name=party.name, aba_routing="011000015", account_number=f"5500{i}"
        )
        CustodyAccount.objects.create(participant=party, custodian_bic="DTCYUS33XXX", account_id=f"SAFE-W{i}")
        bank.open_account(f"5500{i}", currency="USD", name=party.name, balance="100000.00")
        custodian.open_account(f"SAFE-W{i}", isin=aapl.isin, quantity="1000")
        factories.fund(party, usd, "100000.00")
        factories.fund(party, aapl, "1000")
        parties.append(party)
    rows = [(0, 1, "10", "180.00"), (1, 2, "4", "181.50"), (2, 0, "7", "179.25"), (0, 2, "3", "180.10")]
    payload = [
        {
            "external_id": f"WK-{n}",
            "symbol": "AAPL/USD",
            "buyer": parties[b].code,
            "seller": parties[s].code,
            "quantity": q,
            "price": p,
            "executed_at": timezone.now().isoformat(),
        }
        for n, (b, s, q, p) in enumerate(rows)
    ]
    assert staff_client.post("/api/v1/trades/", payload, format="json").status_code == 201
    expected = balances(parties, [usd, aapl])  # then moved by every leg, gross
    for leg in SettlementInstruction.objects.select_related("payer", "payee", "asset"):
        expected[(leg.payer.code, leg.asset.code)] -= leg.amount
        expected[(leg.payee.code, leg.asset.code)] += leg.amount

    return parties, (usd, aapl), expected


def assert_settled_once_and_matching_the_rails(bank, custodian, parties, assets, expected):
    usd, aapl = assets
    assert set(SettlementInstruction.objects.values_list("status", flat=True)) == {InstructionStatus.SETTLED}
    assert set(NettedInstruction.objects.values_list("status", flat=True)) == {NettedStatus.SETTLED}
    assert balances(parties, [usd, aapl]) == expected
    for party in parties:
        account = BankAccount.objects.get(participant=party)
        assert bank.balance(account.account_number) == expected[(party.code, "USD")]
        assert custodian.position(f"SAFE-{party.code}", aapl.isin) == expected[(party.code, "AAPL")]
    for ni in NettedInstruction.objects.all():
        assert Journal.objects.filter(lock=ni.lock, kind=JournalKind.POST).count() == 1  # posted once


def fetch_reports() -> None:
    """What beat's rail-reports-fetch entry does (every 15 s), here at every poll of the test."""
    with contextlib.suppress(Exception):  # the broker is down in the crash test; the next poll retries
        rail_reports_fetch_task.delay()


def wait_for(predicate, *, timeout: float, poll: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        fetch_reports()
        time.sleep(poll)
    return False


def all_legs_settled() -> bool:
    return not SettlementInstruction.objects.exclude(status=InstructionStatus.SETTLED).exists()


def test_a_window_settles_through_a_real_worker_and_the_simulators_over_http(networks, staff_client):
    bank, custodian = networks
    parties, assets, expected = three_parties_trading(bank, custodian, staff_client)
    worker = start_worker()
    try:
        window = NettingWindow.objects.get(status=WindowStatus.OPEN, asset_class="security")
        window_close(window=window, actor=ACTOR)  # commits; the pay-ins go to the worker after commit
        assert wait_for(all_legs_settled, timeout=60), list(
            NettedInstruction.objects.values_list("status", "failure_reason")
        )
    finally:
        helpers.stop(worker)
    assert_settled_once_and_matching_the_rails(bank, custodian, parties, assets, expected)


@pytest.fixture
def own_redis(tmp_path, settings):
    """The broker is a Redis of this test's own (AOF, as deployed), which it crashes and restarts."""
    with helpers.own_broker(tmp_path, settings) as redis:
        yield redis


def test_netting_recovers_within_30_s_from_a_sigkilled_worker_and_a_restarted_redis(own_redis, networks, staff_client):
    bank, custodian = networks
    parties, assets, expected = three_parties_trading(bank, custodian, staff_client)
    # given: beat (its sweepers only) and a worker on our own Redis
    helpers.beat_only(helpers.SWEEPERS)
    beat = helpers.start_beat(rail_env())
    worker = start_worker()
    processes = [beat, worker]
    try:
        window = NettingWindow.objects.get(status=WindowStatus.OPEN, asset_class="security")
        window_close(window=window, actor=ACTOR)  # the pay-ins go to the worker after commit
        moving = NettedInstruction.objects.exclude(status=NettedStatus.PENDING)
        assert wait_for(moving.exists, timeout=60, poll=0.1)
        # when: the worker is SIGKILLed mid-pipeline; a new one starts, then Redis crashes under it
        helpers.sigkill(worker)
        in_flight = NettedInstruction.objects.exclude(status=NettedStatus.SETTLED).count()
        worker = start_worker()
        processes.append(worker)
        helpers.wait_ready("netting-worker")
        own_redis.restart()  # SIGKILL, then start on the same AOF: the running worker and beat reconnect
        cleared = time.monotonic()
        # then: the window settles within 30 s of the fault clearing
        settled = wait_for(all_legs_settled, timeout=30)
        took = time.monotonic() - cleared
        assert settled, list(NettedInstruction.objects.values_list("status", "failure_reason"))
        assert in_flight > 0, "the kill came too late to test anything"
        time.sleep(3)  # let redelivered tasks and sweeps run too: they must change nothing
    finally:
        for process in processes:
            helpers.stop(process)
    # nothing lost or doubled: ledger == bank == custodian, each payment posted once
    assert took < 30, took
    assert_settled_once_and_matching_the_rails(bank, custodian, parties, assets, expected)
