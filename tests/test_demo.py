"""`make demo` end to end on a machine without a PostgreSQL server: scripts/demo.sh runs with
DATABASE_URL unset and its "is a server on 127.0.0.1:5432?" probe pointed at a closed port, so it
starts the embedded PostgreSQL under var/, settles trades on every rail (anvil, the BTC and SOL node
simulators, the bank and custodian simulators), serves the admin and the API, and on Ctrl-C stops
every process it started, the database last."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from rails.simulators.anvil import anvil_binary
from tests.helpers import _free_port

ROOT = Path(__file__).resolve().parents[1]
RUNNING = "Clearhouse demo is running."


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        if text in output:
            return output
        if process.poll() is not None:
            pytest.fail(f"demo.sh exited with {process.returncode} before {text!r}:\n{output[-6000:]}")
        time.sleep(0.5)
    pytest.fail(f"no {text!r} within {timeout} s:\n{log.read_text(errors='replace')[-6000:]}")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback URL
        return response.status, response.read().decode()


def _alive(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid} {' '.join(process.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return alive


def test_demo_runs_on_embedded_postgres_and_stops_everything_on_ctrl_c(tmp_path):
    if anvil_binary() is None:
        pytest.fail("anvil is not installed: `make test` installs it (scripts/ensure_anvil.sh)")
    # given no DATABASE_URL, no broker, the machine's PostgreSQL hidden behind a closed port, and
    # free ports for the admin and the simulators
    closed = _free_port()
    ports = {name: str(_free_port()) for name in ("ETH", "BTC", "SOL", "BANK", "CUSTODY")}
    addr = f"127.0.0.1:{_free_port()}"
    var = tmp_path / "var"
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    env |= {f"DEMO_{name}_PORT": port for name, port in ports.items()}
    env |= {"DEMO_ADDR": addr, "DEMO_PG_PROBE": f"127.0.0.1:{closed}", "DEMO_TRADES": "40"}
    env |= {"CLEARHOUSE_VAR_DIR": str(var)}
    log = tmp_path / "demo.log"
    pgdata = var / "pg"
    started: list[psutil.Process] = []
    with log.open("wb") as out:
        demo = subprocess.Popen(
            ["bash", "scripts/demo.sh"],  # noqa: S607
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
            # SIGINT as a terminal delivers it, even when this test runs in the background (a shell
            # that starts with SIGINT ignored cannot trap it)
            preexec_fn=_default_sigint,
        )
    try:
        # when it has run
        output = _wait_for(log, RUNNING, demo, timeout=480)  # generous: under `pytest -n` it shares the cores
        started = psutil.Process(demo.pid).children(recursive=True)
        postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
        started += [postmaster, *postmaster.children(recursive=True)]

        # then it ran on the embedded PostgreSQL, settled on every rail and checked its audit trail
        assert "Database: embedded PostgreSQL 18" in output
        assert f"no server on 127.0.0.1:{closed}" in output
        for rail in ("chain: ethereum ETH", "chain: bitcoin BTC", "chain: solana SOL"):
            assert re.search(rf"settled {rail}: [1-9]\d* legs", output), rail
        # fiat and securities: net payments through the bank and the custodian simulators, their reports
        # in and reconciled
        assert re.search(r"Net payments: \{[^}]*'settled': [1-9]\d*", output)
        assert re.search(r"Reports recorded: [1-9]\d* .*Reconciliation run \d+: matched [1-9]\d*", output)
        assert re.search(r"Daily report \d{4}-\d\d-\d\d: settled [1-9]\d*, failed \d+", output)
        assert re.search(r"transition log intact: [1-9]\d* rows verified", output)
        assert "Traceback" not in output
        # and it serves the admin and the API schema
        status, page = _get(f"http://{addr}/admin/login/")
        assert status == 200 and 'name="username"' in page
        status, schema = _get(f"http://{addr}/api/schema/")
        assert status == 200 and "openapi:" in schema

        # when Ctrl-C reaches its process group
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)
        # then every process it started is gone, the embedded PostgreSQL included
        psutil.wait_procs(started, timeout=15)
        assert _alive(started) == []
        assert "Embedded PostgreSQL stopped" in log.read_text()
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(timeout=60)
        for process in started:
            if _alive([process]):
                process.kill()
        subprocess.run([sys.executable, "scripts/embedded_pg.py", "stop", str(pgdata)], cwd=ROOT, check=False)  # noqa: S603
