"""What the crypto benchmark measures about processes and the database server: CPU seconds per
process group (from /proc, sampled every second so a process that dies mid-run keeps what it
used), the PostgreSQL backends of the scratch database, and the server's cumulative counters."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, int, float, float] | None:
    """(ppid, process group, own CPU s, reaped children's CPU s) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    own = (int(fields[11]) + int(fields[12])) / TICK
    reaped = (int(fields[13]) + int(fields[14])) / TICK
    return int(fields[1]), int(fields[2]), own, reaped


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


@dataclass
class _Tally:
    """Cumulative CPU per pid as last seen, and what each had used when counting began."""

    last: dict[int, float] = field(default_factory=dict)
    base: dict[int, float] = field(default_factory=dict)

    def see(self, pid: int, cpu: float, *, baseline: bool) -> None:
        if baseline:
            self.base[pid] = cpu
        self.last[pid] = max(cpu, self.last.get(pid, 0.0))

    def used(self) -> float:
        return sum(cpu - self.base.get(pid, 0.0) for pid, cpu in self.last.items())


class CpuSampler:
    """Samples, every ``every`` seconds in a thread, the CPU of each named process group (the
    bench starts every child in a session of its own: group id = its pid; a group leader's reaped
    children count too), of the scratch database's PostgreSQL backends (pids from
    pg_stat_activity, asked on the ``postgres`` database so the scratch database's own statistics
    are untouched) and of every PostgreSQL server process (the whole server: other databases'
    load included). ``start()`` marks the baseline; ``stop()`` takes a last sample."""

    def __init__(self, *, server_url: str, db: str, every: float = 1.0) -> None:
        self.server_url, self.db, self.every = server_url, db, every
        self.groups: dict[str, set[int]] = {}
        self.tallies: dict[str, _Tally] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None
        self._driver_base = 0.0
        self._driver = 0.0
        self._lock = threading.Lock()

    def track(self, name: str, pgid: int) -> None:
        with self._lock:
            self.groups.setdefault(name, set()).add(pgid)

    def _db_backends(self) -> set[int]:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(f"{self.server_url}/postgres", autocommit=True)
            rows = self._conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.db]
            ).fetchall()
        except psycopg.Error:
            self._conn = None
            return set()
        return {row[0] for row in rows}

    def sample(self, *, baseline: bool = False) -> None:
        backends = self._db_backends()
        with self._lock:
            groups = {name: set(pgids) for name, pgids in self.groups.items()}
        for pid in _pids():
            stat = _stat(pid)
            if stat is None:
                continue
            ppid, pgrp, own, reaped = stat
            for name, pgids in groups.items():
                if pgrp in pgids:
                    self.tallies.setdefault(name, _Tally()).see(
                        pid, own + (reaped if pid == pgrp else 0.0), baseline=baseline
                    )
            if pid in backends:
                self.tallies.setdefault("postgresql (scratch db backends)", _Tally()).see(pid, own, baseline=baseline)
            if _comm(pid) in ("postgres", "postmaster"):
                is_postmaster = _comm(ppid) not in ("postgres", "postmaster")
                cpu = own + (reaped if is_postmaster else 0.0)
                self.tallies.setdefault("postgresql (whole server)", _Tally()).see(pid, cpu, baseline=baseline)
        times = os.times()
        self._driver = times.user + times.system
        if baseline:
            self._driver_base = self._driver

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # a sample lost is a second of resolution lost, no more
                self.sample()

    def start(self) -> None:
        self.tallies.clear()
        self.sample(baseline=True)
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        if self._conn is not None:
            self._conn.close()
        used = {name: tally.used() for name, tally in self.tallies.items()}
        used["driver (this process: ingest, polling, sampling)"] = self._driver - self._driver_base
        return used


# --- the database's cumulative counters ------------------------------------------------------------


def db_counters(server_url: str, db: str) -> dict[str, int]:
    """The scratch database's commits and rows written (pg_stat_database) and the server's WAL
    position (whole server: every database's writes). Asked from the ``postgres`` database."""
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        commits, rollbacks, inserted, updated, deleted = conn.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted "
            "FROM pg_stat_database WHERE datname = %s",
            [db],
        ).fetchone()
        wal = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]
    return {
        "commits": commits,
        "rollbacks": rollbacks,
        "rows inserted": inserted,
        "rows updated": updated,
        "rows deleted": deleted,
        "WAL bytes (whole server)": int(wal),
    }


# --- SQL statements counted in the workers (bench/crypto_worker.py writes these files) -------------


def statement_counts(directory: Path) -> dict[str, int]:
    """Sum of every worker's statement counters (one JSON file per worker process)."""
    total: dict[str, int] = {}
    for path in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            for key, value in json.loads(path.read_text()).items():
                total[key] = total.get(key, 0) + int(value)
    return total


@contextlib.contextmanager
def counting_statements() -> Iterator[dict[str, int]]:
    """Count this process's SQL statements (Django's execute wrapper) while the block runs."""
    from django.db import connection

    counts = {"statements": 0}

    def wrapper(execute, sql, params, many, context):
        counts["statements"] += len(params) if many and params is not None else 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield counts


def wait_for_stats_flush(seconds: float = 1.5) -> None:
    """PostgreSQL backends publish their statistics at most about once a second."""
    time.sleep(seconds)
