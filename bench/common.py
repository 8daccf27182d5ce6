"""Helpers shared by the benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def psql(sql: str, url: str) -> None:
    subprocess.run(["psql", url, "-q", "-c", sql], check=True)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def backend_peak(pid: int) -> str:
    """Peak resident memory (VmHWM) of a PostgreSQL backend process, e.g. '532 MiB'."""
    from pathlib import Path

    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return f"{int(line.split()[1]) / 1024:.0f} MiB"
    except OSError:
        pass
    return "n/a"


def scratch_database(*, server: str, db: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """Drop and create the bench's own database, migrate it, point this process at it and set
    Django up. Returns the environment for the processes the bench starts (workers, servers)."""
    psql(f"DROP DATABASE IF EXISTS {db}", f"{server}/postgres")
    psql(f"CREATE DATABASE {db}", f"{server}/postgres")
    full = {
        **os.environ,
        "DATABASE_URL": f"{server}/{db}",
        "SECRET_KEY": "bench",
        "CLEARHOUSE_AUDIT_HMAC_KEY": "bench-audit-key",
        "DEBUG": "0",
        "CLEARHOUSE_PRODUCTION": "0",  # plain HTTP on loopback, the bench SECRET_KEY
        "LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    os.environ.update(full)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=full, check=True)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    return full
