"""Helpers shared by the benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
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


# --- the processes a bench starts ------------------------------------------------------------------
# Every child runs in its own process group (its own children with it), so stopping it stops all of
# them; Ctrl-C in the terminal reaches only the bench, which then stops them itself. SIGINT, SIGTERM
# and SIGHUP raise KeyboardInterrupt while a bench runs, so its ``finally`` blocks run too. (A
# SIGKILL of the bench cannot be caught: its children then get SIGTERM from the kernel only if
# they asked for it, so stop them by group: ``kill -- -PGID`` of each, printed at start.)


class Interrupted(KeyboardInterrupt):
    """The bench got SIGTERM or SIGHUP."""


class Children:
    """The processes a bench started, stopped together (TERM to each group, KILL after a grace)."""

    def __init__(self) -> None:
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.cleanups: list[Callable[[], None]] = []

    def start(self, name: str, argv: list[str], **kwargs: object) -> subprocess.Popen:
        process = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.processes.append((name, process))
        print(f"bench: started {name}, process group {process.pid}", file=sys.stderr)
        return process

    def on_stop(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when the children are stopped (e.g. a node started by a library)."""
        self.cleanups.append(cleanup)

    def stop(self, grace: float = 20.0) -> None:
        for _, process in reversed(self.processes):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"bench: {name} (pid {process.pid}) ignored SIGTERM, killing its group", file=sys.stderr)
            _signal_group(process, signal.SIGKILL)  # whatever is left of the group (forked children)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.processes.clear()
        while self.cleanups:
            with contextlib.suppress(Exception):
                self.cleanups.pop()()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


@contextlib.contextmanager
def children() -> Iterator[Children]:
    """``with children() as kids:`` start processes with ``kids.start``; however the block ends
    (done, exception, Ctrl-C, SIGTERM, SIGHUP), every one of them is stopped."""
    kids = Children()

    def interrupted(signum: int, _frame: object) -> None:
        raise Interrupted(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    # Ctrl-C raises KeyboardInterrupt even where SIGINT came in ignored (a shell's background job)
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield kids
    finally:
        for sig in previous:  # a second Ctrl-C or TERM must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        try:
            kids.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready: Callable[[], bool], *, what: str, timeout: float = 60.0, process=None) -> None:
    """Poll ``ready`` until it says yes; fail if ``process`` died or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before it was ready")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


def wait_http(url: str, *, what: str, process=None, timeout: float = 60.0) -> None:
    def ready() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500

    wait_until(ready, what=what, process=process, timeout=timeout)


def wait_port(port: int, *, what: str, process=None, timeout: float = 60.0) -> None:
    """Wait until something accepts connections on loopback ``port``."""

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(ready, what=what, process=process, timeout=timeout)


def scratch_redis(kids: Children) -> str:
    """A redis-server of the bench's own on a free port, in a temporary directory, no persistence;
    stopped (and its directory removed) with the other children. Returns its URL (db 0)."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="clearhouse-bench-redis-")
    kids.on_stop(lambda: shutil.rmtree(workdir, ignore_errors=True))
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = kids.start("redis-server", [*argv, "--dir", workdir], stdout=subprocess.DEVNULL)
    ping = ["redis-cli", "-p", str(port), "ping"]
    wait_until(
        lambda: subprocess.run(ping, capture_output=True, text=True).stdout.strip() == "PONG",
        what="scratch redis-server",
        process=process,
        timeout=20,
    )
    return f"redis://127.0.0.1:{port}/0"


def wait_workers(env: dict[str, str], count: int, timeout: float = 90.0) -> None:
    """Wait until ``count`` Celery workers answer a ping over the bench's broker."""

    def ready() -> bool:
        from config.celery import app

        app.conf.broker_url = app.conf.broker_write_url = app.conf.broker_read_url = env["CELERY_BROKER_URL"]
        return len(app.control.ping(timeout=1.0) or []) >= count

    wait_until(ready, what=f"{count} celery workers", timeout=timeout)
