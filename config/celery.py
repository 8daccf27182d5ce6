import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import psycopg
from celery import Celery, Task
from django import db

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Database errors a task retries: the connection dropped or was refused (restart, failover,
# network), a deadlock or serialization failure (OperationalError subclasses in psycopg). Any
# other error is a bug or a domain failure and is not retried blindly.
TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (
    db.OperationalError,
    db.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


logger = logging.getLogger(__name__)


def advisory_key(name: str) -> int:
    """The 64-bit PostgreSQL advisory lock key of ``name``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextlib.contextmanager
def exclusive_run(name: str) -> Iterator[bool]:
    """A PostgreSQL session advisory lock on ``name`` for the length of the block; yields whether
    it was taken. A worker that dies loses its connection and with it the lock."""
    from django.db import connection

    if connection.vendor != "postgresql":  # the embedded demo runs one process
        yield True
        return
    key = advisory_key(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            with contextlib.suppress(*TRANSIENT_DB_ERRORS), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


class ClearhouseTask(Task):
    """Every task: acked only once done (a killed worker's task is redelivered), and retried with
    exponential backoff and jitter, a bounded number of times, on a transient database error
    (otherwise Celery would ack it as failed and the work would wait for a sweeper).

    A ``singleton`` task (a long periodic job: the reconciliation run, report imports) runs once
    at a time across all workers: Redis hands a task that is still running after the visibility
    timeout to a second worker, and that copy then does nothing."""

    singleton = False

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT_DB_ERRORS
    retry_backoff = 1
    retry_backoff_max = 7  # below the visibility timeout (settings: CLEARHOUSE_COUNTDOWN_MAX_SECONDS)
    retry_jitter = True

    @property
    def max_retries(self) -> int:
        from django.conf import settings

        return settings.CLEARHOUSE_TASK_DB_RETRIES

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.singleton:
            return super().__call__(*args, **kwargs)
        with exclusive_run(f"task:{self.name}") as held:
            if not held:
                logger.info("%s is already running on another worker: this copy does nothing", self.name)
                return None
            return super().__call__(*args, **kwargs)


app = Celery("clearhouse", task_cls=ClearhouseTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def worker_argv(python: str, name: str, queues: str = "celery,crypto.watch") -> list[str]:
    """The command line of one solo-pool worker, as the benchmarks and the worker tests start it."""
    return [
        python,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool",
        "solo",
        "--loglevel",
        "WARNING",
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        "-Q",
        queues,
        "-n",
        f"{name}@%h",
    ]
