"""A fiat and equity window settled by a real Celery worker process on Redis, against the bank
and custodian simulators served over HTTP: window close dispatches the pay-ins after commit, beat's
report fetch hands the answers to the worker, and everything settles once."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from config.celery import app
from netting.models import NettedInstruction, NettedStatus, NettingWindow, WindowStatus
from netting.services import window_close
from netting.tasks import rail_reports_fetch_task
from rails import network as rail_network
from settlement.choices import InstructionStatus, JournalKind
from settlement.models import BankAccount, CustodyAccount, Journal, SettlementInstruction
from tests import factories, helpers
from tests.factories import ACTOR
from tests.netting.conftest import balances

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


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


def start_worker() -> subprocess.Popen:
    return helpers.start_worker(
        "netting-worker",
        {
            "CLEARHOUSE_BANK_URL": settings.CLEARHOUSE_BANK_URL,
            "CLEARHOUSE_CUSTODIAN_URL": settings.CLEARHOUSE_CUSTODIAN_URL,
        },
    )


def test_a_window_settles_through_a_real_worker_and_the_simulators_over_http(networks, staff_client):
    bank, custodian = networks
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

    worker = start_worker()
    try:
        window = NettingWindow.objects.get(status=WindowStatus.OPEN, asset_class="security")
        window_close(window=window, actor=ACTOR)  # commits; the pay-ins go to the worker after commit
        deadline = time.monotonic() + 60
        legs = SettlementInstruction.objects.all()
        while time.monotonic() < deadline and legs.exclude(status=InstructionStatus.SETTLED).exists():
            rail_reports_fetch_task.delay()  # what beat does every 15 s
            time.sleep(0.5)
        assert set(legs.values_list("status", flat=True)) == {InstructionStatus.SETTLED}, list(
            NettedInstruction.objects.values_list("status", "failure_reason")
        )
    finally:
        worker.terminate()
        worker.wait(timeout=15)
    assert set(NettedInstruction.objects.values_list("status", flat=True)) == {NettedStatus.SETTLED}
    assert balances(parties, [usd, aapl]) == expected
    for party in parties:
        account = BankAccount.objects.get(participant=party)
        assert bank.balance(account.account_number) == expected[(party.code, "USD")]
        assert custodian.position(f"SAFE-{party.code}", aapl.isin) == expected[(party.code, "AAPL")]
    for ni in NettedInstruction.objects.all():
        assert Journal.objects.filter(lock=ni.lock, kind=JournalKind.POST).count() == 1  # posted once
