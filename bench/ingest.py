#!/usr/bin/env python
"""Trade-ingest benchmark: POST 100,000 trades in batches over HTTP, then time status updates.

Run by hand (not part of `make test`):

    make bench-ingest            # or: .venv/bin/python bench/ingest.py --trades 100000 --batch 5000

It measures ingest alone, on the production shape: tasks are NOT run inline
(``CELERY_TASK_ALWAYS_EAGER=0``). The broker is a real one that only queues: a redis-server of the
bench's own, started on a free port in a temporary directory, with no worker consuming it, so
the crypto T+0 trades' pipeline tasks are published after commit (as in production) but not run
inside the requests or beside them; the output says how many messages were left queued.

It creates a scratch PostgreSQL database (default `clearhouse_bench`, dropped first), migrates and
seeds it, serves the API with gunicorn on loopback (waiting until it answers), posts the trades
from client threads, and prints trades/s and the p50/p99 latency of single instruction status
updates (lock, processing, settled; one transaction each). Every process it starts (redis-server,
gunicorn and its workers, each in its own process group) is stopped when it ends, fails, or is
interrupted (Ctrl-C, SIGTERM, SIGHUP).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Children, children, percentile, scratch_database, scratch_redis, wait_http  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--clients", type=int, default=2, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--status-updates", type=int, default=3_000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench")
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()
    with children() as kids:
        code = run(args, kids)
    sys.exit(code)


SYMBOLS = [("BTC/USD", "65000.00"), ("ETH/USD", "3200.00"), ("AAPL/USD", "190.00"), ("BTC/EUR", "60000.00")]


def prepare(*, participants: int, trades: int, batch: int) -> tuple[str, list[bytes]]:
    """Seed the (migrated, set-up) database: the demo market, ``participants`` funded bench
    participants and the matching engine's token. Returns the token and the JSON request bodies
    (3 of 4 trades crypto T+0, 1 of 4 netted AAPL)."""
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from common.actors import SystemActor
    from ledger.services.ledger import ledger_deposit
    from reference.models import Asset, Participant
    from settlement.services.tokens import token_issue

    seed = [sys.executable, "manage.py", "seed_demo"]
    subprocess.run(seed, cwd=ROOT, env=dict(os.environ), check=True, stdout=subprocess.DEVNULL)
    actor = SystemActor("bench")
    usd, btc = Asset.objects.get(code="USD"), Asset.objects.get(code="BTC")
    codes = []
    for n in range(participants):
        p, _ = Participant.objects.get_or_create(code=f"B{n:04d}", defaults={"name": f"Bench {n}"})
        codes.append(p.code)
        ledger_deposit(owner=p, asset=usd, amount=Decimal("1000000000"), reference=f"bench:{p.code}:USD", actor=actor)
        ledger_deposit(owner=p, asset=btc, amount=Decimal("100000"), reference=f"bench:{p.code}:BTC", actor=actor)
    engine = get_user_model().objects.get(username="matching-engine")
    token = token_issue(user=engine, name="bench", scopes=["read", "trades:write"], actor=actor).key

    executed = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    bodies = []
    for start in range(0, trades, batch):
        items = []
        for i in range(start, min(start + batch, trades)):
            symbol, price = SYMBOLS[i % len(SYMBOLS)]
            buyer = codes[i % len(codes)]
            seller = codes[(i * 7 + 1) % len(codes)]
            if seller == buyer:
                seller = codes[(i + 1) % len(codes)]
            items.append(
                {
                    "external_id": f"BENCH-{i:08d}",
                    "symbol": symbol,
                    "buyer": buyer,
                    "seller": seller,
                    "quantity": "3" if symbol == "AAPL/USD" else "0.015",
                    "price": price,
                    "executed_at": executed,
                }
            )
        bodies.append(json.dumps({"trades": items}).encode())
    return token, bodies


def _queued(broker: str) -> int:
    """Messages waiting in the bench's broker (every list key: the Celery queues)."""
    import redis

    client = redis.Redis.from_url(broker)
    return sum(client.llen(key) for key in client.scan_iter() if client.type(key) == b"list")


def run(args: argparse.Namespace, kids: Children) -> int:
    broker = scratch_redis(kids)
    env = scratch_database(
        server=args.server,
        db=args.db,
        env={"CELERY_BROKER_URL": broker, "CELERY_TASK_ALWAYS_EAGER": "0"},
    )
    print(f"broker: own redis-server at {broker}, no worker (queue-only): tasks are queued, not run")
    python = sys.executable
    token, bodies = prepare(participants=args.participants, trades=args.trades, batch=args.batch)

    server = kids.start(
        "gunicorn",
        [
            str(Path(python).parent / "gunicorn"),
            "config.wsgi",
            "-b",
            f"127.0.0.1:{args.port}",
            "-w",
            str(args.workers),
            "--timeout",
            "300",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    wait_http(f"http://127.0.0.1:{args.port}/api/schema/", what="gunicorn", process=server)
    url = f"http://127.0.0.1:{args.port}/api/v1/trades/"
    latencies: list[float] = []
    failures: list[str] = []
    queue = list(enumerate(bodies))
    guard = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            with guard:
                if not queue:
                    return
                _, body = queue.pop(0)
            request = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
            began = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    response.read()
            except Exception as exc:  # a benchmark reports every failure
                failures.append(str(exc))
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)  # short joins: Ctrl-C reaches the main thread
    finally:
        stop.set()
    elapsed = time.perf_counter() - began
    queued = _queued(broker)
    kids.stop()  # gunicorn and the broker are done: the status updates run in this process

    from common.actors import SystemActor
    from settlement.models import SettlementInstruction, Trade

    actor = SystemActor("bench")
    stored = Trade.objects.count()
    print(
        f"ingest: {args.trades} trades in {len(bodies)} batches of {args.batch}, {args.clients} clients, "
        f"{args.workers} gunicorn workers"
    )
    print(f"ingest: {elapsed:.2f} s, {args.trades / elapsed:,.0f} trades/s, stored {stored}, failures {len(failures)}")
    print(f"ingest: per-batch latency p50 {percentile(latencies, 50):.2f} s, p99 {percentile(latencies, 99):.2f} s")
    print(f"ingest: {queued} task messages left queued in the broker (queue-only: none ran during the measure)")
    if failures:
        print("failures:", failures[:3])

    # Status updates: lock -> processing -> settled, one instruction at a time, each its own transaction.
    from settlement.services.instructions import instruction_lock, instruction_settle, instruction_start_processing

    ids = list(
        SettlementInstruction.objects.filter(asset__code__in=["USD", "BTC"])
        .order_by("pk")
        .values_list("pk", flat=True)[: args.status_updates // 3]
    )
    timings: list[float] = []
    for pk in ids:
        instruction = SettlementInstruction.objects.get(pk=pk)
        for service in (instruction_lock, instruction_start_processing, instruction_settle):
            began = time.perf_counter()
            instruction = service(instruction=instruction, actor=actor)
            timings.append((time.perf_counter() - began) * 1000)
    print(f"status updates: {len(timings)} transitions (lock, processing, settled) on {len(ids)} instructions")
    print(
        f"status updates: p50 {percentile(timings, 50):.2f} ms, p99 {percentile(timings, 99):.2f} ms, "
        f"mean {statistics.fmean(timings):.2f} ms"
    )
    return 1 if failures or stored != args.trades else 0


if __name__ == "__main__":
    main()
