"""Tasks through a real Celery worker on the real Redis broker."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.utils import timezone

from common.choices import LockStatus
from config.celery import app
from ledger.models import Journal, LedgerLock
from ledger.services.ledger import ledger_lock
from ledger.tasks import transition_log_verify_task
from settlement.tasks import ledger_void_expired_locks_task
from tests.factories import ACTOR, fund


@pytest.fixture
def redis_worker():
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "task tests run on the real Redis broker"
    assert not app.conf.task_always_eager
    app.conf.broker_url = settings.CELERY_BROKER_URL
    with app.connection_for_write() as conn:
        conn.default_channel.client.flushdb()  # the test broker db only (this xdist worker's)
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.django_db(transaction=True)
def test_lock_expiry_sweeper_runs_on_a_worker_and_is_safe_twice(alice, usd, redis_worker):
    # given: an expired lock
    fund(alice, usd, "10")
    lock = ledger_lock(
        owner=alice,
        asset=usd,
        amount=Decimal("4"),
        reference="L1",
        actor=ACTOR,
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    # when: the task is delivered twice (a redelivery after a crash looks like this)
    ledger_void_expired_locks_task.delay()
    ledger_void_expired_locks_task.delay()
    # then
    assert wait_for(lambda: LedgerLock.objects.get(pk=lock.pk).status == LockStatus.VOIDED)
    time.sleep(0.5)
    assert LedgerLock.objects.get(pk=lock.pk).status == LockStatus.VOIDED
    assert Journal.objects.filter(reference=f"{lock.reference}:void").count() == 1


def test_tasks_are_acks_late():
    assert ledger_void_expired_locks_task.acks_late and transition_log_verify_task.acks_late
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
