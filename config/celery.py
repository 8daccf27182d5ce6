import os

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


class ClearhouseTask(Task):
    """Every task: acked only once done (a killed worker's task is redelivered), and retried with
    exponential backoff and jitter, a bounded number of times, on a transient database error
    (otherwise Celery would ack it as failed and the work would wait for a sweeper)."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT_DB_ERRORS
    retry_backoff = 1
    retry_backoff_max = 7  # below the visibility timeout (settings: CLEARHOUSE_COUNTDOWN_MAX_SECONDS)
    retry_jitter = True

    @property
    def max_retries(self) -> int:  # type: ignore[override]
        from django.conf import settings

        return settings.CLEARHOUSE_TASK_DB_RETRIES


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
