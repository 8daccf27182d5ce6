import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("clearhouse")
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
