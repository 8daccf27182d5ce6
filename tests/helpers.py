"""Test helpers shared across apps: admin page smoke checks, real Celery worker and beat
processes, a Redis of the test's own that it may kill and restart, and a camt.054 credit on the
house USD account."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from config.celery import app, worker_argv
from rails.formats import iso20022

ROOT = Path(__file__).resolve().parents[1]
HOUSE_USD = "4400123456"  # the house's USD account in config/settings.py


def assert_admin_pages_render(client, app_label: str) -> None:
    """Every changelist of ``app_label`` and the detail page of its first row answer 200."""
    for model in admin.site._registry:
        if model._meta.app_label != app_label:
            continue
        info = (model._meta.app_label, model._meta.model_name)
        assert client.get(reverse("admin:{}_{}_changelist".format(*info))).status_code == 200, model
        obj = model.objects.first()
        if obj is not None:
            assert client.get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk])).status_code == 200, model


def _process_env(env: dict[str, str]) -> dict[str, str]:
    db = connection.settings_dict
    return os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        **env,
    }


def _output(log: Path | None, name: str):
    """Where a process's output goes: ``log``, else $CLEARHOUSE_TEST_LOG_DIR/<name>.log when that
    is set (to debug a worker test), else nowhere."""
    directory = os.environ.get("CLEARHOUSE_TEST_LOG_DIR")
    if log is None and directory:
        log = Path(directory) / f"{name}.log"
    return log.open("ab") if log else subprocess.DEVNULL


def _verbose(argv: list[str]) -> list[str]:
    """INFO logging (every task received and done) when the output goes to a log directory."""
    if os.environ.get("CLEARHOUSE_TEST_LOG_DIR"):
        return [("INFO" if arg == "WARNING" else arg) for arg in argv]
    return argv


def start_worker(name: str, env: dict[str, str], *, log: Path | None = None) -> subprocess.Popen:
    """A real Celery worker process on the test database and broker, with ``env`` on top. It runs
    with the deployed recovery settings (visibility timeout, restore interval, retries), so the
    crash tests measure what production does."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        _verbose(worker_argv(sys.executable, name)),
        cwd=ROOT,
        env=_process_env(env),
        stdout=_output(log, name),
        stderr=subprocess.STDOUT,
    )


def start_beat(env: dict[str, str] | None = None, *, log: Path | None = None) -> subprocess.Popen:
    """A real beat process (the database schedule; disable entries in PeriodicTask to leave them
    out) on the test database and broker."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        _verbose([sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING"]),
        cwd=ROOT,
        env=_process_env(env or {}),
        stdout=_output(log, "beat"),
        stderr=subprocess.STDOUT,
    )


def wait_ready(name: str, timeout: float = 45.0) -> None:
    """Wait until the worker started as ``name`` answers a ping over the broker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5)
        if any(node.startswith(f"{name}@") for reply in replies for node in reply):
            return
    raise AssertionError(f"worker {name} did not come up in {timeout:.0f} s")


def sigkill(process: subprocess.Popen) -> None:
    """Kill a process the hard way (no shutdown, no acks, no flush) and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def stop(process: subprocess.Popen) -> None:
    """Stop a worker or beat process gracefully (SIGKILL if it does not stop in time)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            sigkill(process)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OwnRedis:
    """A redis-server of the test's own (scripts/redis.conf: AOF, fsync every second) on a free
    port in a temporary directory, which the test may crash (SIGKILL) and restart on the same
    data. The machine's Redis on 6379 is never touched."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> OwnRedis:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(  # noqa: S603 - the installed redis-server, our arguments
            [binary, str(ROOT / "scripts" / "redis.conf"), "--port", str(self.port), "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def crash(self) -> None:
        assert self.process is not None
        sigkill(self.process)

    def restart(self) -> None:
        self.crash()
        self.start()


@contextlib.contextmanager
def own_broker(tmp_path: Path, settings: Any) -> Iterator[OwnRedis]:
    """This test's own Redis as the broker of the test process and of the processes it starts;
    the test broker is restored afterwards. ``settings`` is pytest-django's fixture."""
    directory = tmp_path / "redis"
    directory.mkdir()
    redis = OwnRedis(directory).start()
    settings.CELERY_BROKER_URL = redis.url
    broker_use(redis.url)
    try:
        yield redis
    finally:
        broker_use(None)
        redis.crash()


# Beat entries that re-dispatch stuck work (the crash tests run beat with only these enabled).
SWEEPERS = ("crypto-sweep-stuck", "netting-payments-sweep", "webhooks-retry", "ops-alerts-email-sweep")


def beat_only(names: Iterable[str]) -> None:
    """Beat's database schedule with every entry but ``names`` disabled."""
    from django_celery_beat.models import PeriodicTask

    from config.beat import beat_defaults_install

    beat_defaults_install()
    PeriodicTask.objects.exclude(name__in=list(names)).update(enabled=False)


def broker_use(url: str | None) -> None:
    """Point this process's Celery app (publishing from the test) at another broker; ``None``
    goes back to the configured one. (The read/write URLs, because $CELERY_BROKER_URL in the
    environment wins over ``broker_url``.)"""
    app.conf.broker_write_url = app.conf.broker_read_url = url
    app._pool = None  # not closed: kombu's registry hands the same pool out again for its URL
    app.amqp._producer_pool = None


def house_usd_credit(
    *, reference: str, amount: str, entry_ref: str, value_date: date | None = None, counterparty: str = ""
) -> bytes:
    """A camt.054 booking a credit on the house USD account, carrying ``reference``."""
    booking = iso20022.Booking(
        entry_ref=entry_ref,
        account=HOUSE_USD,
        amount=Decimal(amount),
        currency="USD",
        credit_debit="CRDT",
        booking_date=timezone.localdate(),
        value_date=value_date or timezone.localdate(),
        end_to_end_id=reference,
        counterparty_account=counterparty,
    )
    return iso20022.build_camt054(
        message_id=f"N{entry_ref}", created_at=datetime.now(UTC), account=HOUSE_USD, currency="USD", bookings=[booking]
    )


def staff_user(django_user_model: Any, username: str, *roles: str) -> Any:
    """A staff login in the given roles (groups installed by the roles migration)."""
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.groups.set(Group.objects.filter(name__in=roles))
    assert user.groups.count() == len(roles), roles
    return user
