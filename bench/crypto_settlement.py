#!/usr/bin/env python
"""Crypto T+0 settlement benchmark: N mixed ETH/BTC/SOL trades among many participants (some
sellers deliberately short of funds) through the whole pipeline with real Celery workers on Redis,
anvil (a real Ethereum node) and the Bitcoin and Solana node simulators, each its own process.

Run by hand (not part of `make test`):

    make bench-crypto
    .venv/bin/python bench/crypto_settlement.py --engine trade --trades 2000 --participants 200
    .venv/bin/python bench/crypto_settlement.py --engine batch --trades 100000 --participants 1000
    .venv/bin/python bench/crypto_settlement.py --engine batch --trades 3000 --crash-after all

It creates a scratch database (default `clearhouse_bench_crypto`, dropped first) and a redis-server
of its own, starts anvil (automine: every transaction is mined the moment it arrives, so one
confirmation is immediate; block gas limit 1e9 so a 1,000-payment multisend fits), both simulators
and the workers (``CLEARHOUSE_CRYPTO_ENGINE`` = ``--engine`` in their environment and this one's),
seeds participants with house wallets on every chain funded on chain and on the ledger (equal) and
USD on the ledger (seeding is timed apart and in no rate), ingests the trades in batches through
the ingest service (the API's code path; dispatch after commit) and waits until every leg is final.

It prints settlements/s overall and in steady state, latency accepted -> settled (p50/p99/max) with
and without the confirmation wait, time per stage, settlements per chain transaction, per trade:
SQL statements (counted in the workers and the driver), commits, rows written, WAL bytes, CPU ms
per process; then the invariants (bench/crypto_checks.py), each OK or FAIL; any FAIL exits 1.

``--crash-after STAGE`` (lock, sign, broadcast, confirm; a comma list or ``all`` runs one full
bench per stage): the first generation of workers runs with ``CLEARHOUSE_CRASH_AFTER=STAGE`` (the
worker exits hard right after that stage); once one has exited, the rest of that generation is
stopped, a new one starts without it, and the same invariants are checked once all is final. The
crypto sweeper (beat's ``crypto_sweep_task``) is sent every 5 s in a crash run (``--sweep-every``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Children,
    children,
    free_port,
    scratch_database,
    scratch_redis,
    wait_port,
    wait_until,
    wait_workers,
)
from config.celery import worker_argv  # noqa: E402

CHAINS = {"eth": "ethereum", "ethereum": "ethereum", "btc": "bitcoin", "bitcoin": "bitcoin", "sol": "solana"}
CHAINS["solana"] = "solana"
STAGES = ["lock", "sign", "broadcast", "confirm"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=2_000)
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--chains", default="eth,btc,sol", help="comma list of eth, btc, sol (trades alternate)")
    parser.add_argument("--short-fraction", type=float, default=0.02, help="trades whose seller is short of funds")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (solo pool)")
    parser.add_argument("--engine", choices=["trade", "batch"], default="trade", help="CLEARHOUSE_CRYPTO_ENGINE")
    parser.add_argument("--crash-after", default="", help=f"one of {STAGES}, a comma list, or all")
    parser.add_argument("--crash-wait", type=float, default=120, help="seconds to wait for the crash")
    parser.add_argument("--batch", type=int, default=50, help="CLEARHOUSE_CRYPTO_BATCH (trades per task)")
    parser.add_argument("--ingest-batch", type=int, default=500)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_crypto")
    parser.add_argument(
        "--broker", default="", help="Redis URL to use (flushed first); default: a redis-server of the bench's own"
    )
    parser.add_argument("--eth-port", type=int, default=0, help="anvil's port (0: a free one)")
    parser.add_argument("--btc-port", type=int, default=0)
    parser.add_argument("--sol-port", type=int, default=0)
    parser.add_argument("--anvil-block-time", type=float, default=0, help="0: automine (a block per transaction)")
    parser.add_argument("--sweep-every", type=float, default=None, help="send the sweeper(s) every S s (0: never)")
    parser.add_argument(
        "--beat-task", action="append", default=[], help="task name sent with the sweeper (e.g. a batch flush)"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the workers and the driver (engine settings)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed of the trade plan")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    args.chains = [CHAINS[c.strip()] for c in args.chains.split(",") if c.strip()]
    if args.sweep_every is None:
        args.sweep_every = 5.0 if args.crash_after else 0.0
    return args


def crash_series(args: argparse.Namespace) -> int:
    """One full bench per crash stage, each in a process of its own; the worst exit code."""
    stages = STAGES if args.crash_after == "all" else args.crash_after.split(",")
    argv, rest = [], iter(sys.argv[1:])
    for item in rest:  # every option but --crash-after (as "--crash-after X" or "--crash-after=X")
        if item == "--crash-after":
            next(rest, None)
        elif not item.startswith("--crash-after="):
            argv.append(item)
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise SystemExit(f"unknown crash stage(s) {unknown}: choose from {STAGES}")
    codes = {}
    for stage in stages:
        print(f"\n===== crash run: CLEARHOUSE_CRASH_AFTER={stage} =====", flush=True)
        codes[stage] = subprocess.run([sys.executable, __file__, *argv, "--crash-after", stage]).returncode
    print("\ncrash runs: " + ", ".join(f"{s} {'OK' if c == 0 else f'FAIL (exit {c})'}" for s, c in codes.items()))
    return max(codes.values())


def start_anvil(kids: Children, *, port: int, block_time: float) -> object:
    from rails.simulators.anvil import AnvilNode, anvil_binary

    binary = anvil_binary()
    if binary is None:
        raise SystemExit("anvil is not installed: run scripts/ensure_anvil.sh")
    argv = [binary, "--host", "127.0.0.1", "--port", str(port), "--silent", "--gas-limit", "1000000000"]
    argv += ["--balance", "100000000"]  # ether per development account: funds every house wallet
    if block_time:
        argv += ["--block-time", str(block_time)]
    process = kids.start("anvil", argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = AnvilNode(port=port)  # used only as a client: the process is the bench's child
    wait_until(node.w3.is_connected, what="anvil", process=process, timeout=30)
    return node


def start_workers(kids: Children, env: dict[str, str], *, count: int, generation: int, counts: Path) -> list:
    workers = []
    for i in range(count):
        name = f"bench{generation}-{i}"
        argv = [sys.executable, str(ROOT / "bench" / "crypto_worker.py"), str(counts / f"{name}.json")]
        workers.append(
            kids.start(
                f"worker {name}",
                argv + worker_argv(sys.executable, name)[3:],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        )
    return workers


def stop_workers(workers: list) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def main(kids: Children, args: argparse.Namespace) -> int:
    from bench import crypto_checks, crypto_procs, crypto_report, crypto_seed

    ports = {c: getattr(args, f"{c[:3]}_port") or free_port() for c in ("eth", "btc", "sol")}
    urls = {
        "ethereum": f"http://127.0.0.1:{ports['eth']}",
        "bitcoin": f"http://127.0.0.1:{ports['btc']}",
        "solana": f"http://127.0.0.1:{ports['sol']}",
    }
    (ROOT / "var").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="clearhouse-bench-crypto-", dir=ROOT / "var"))
    kids.on_stop(lambda: shutil.rmtree(workdir, ignore_errors=True))
    counts = workdir / "statements"
    counts.mkdir()
    own_broker = not args.broker
    if own_broker:
        args.broker = scratch_redis(kids)
    env = scratch_database(
        server=args.server,
        db=args.db,
        env={
            "CELERY_BROKER_URL": args.broker,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "CLEARHOUSE_CRYPTO_ENGINE": args.engine,
            "CLEARHOUSE_CHAIN_RAILS": ",".join(args.chains),
            "CLEARHOUSE_ETH_RPC_URL": urls["ethereum"],
            "CLEARHOUSE_BTC_RPC_URL": urls["bitcoin"],
            "CLEARHOUSE_SOL_RPC_URL": urls["solana"],
            "CLEARHOUSE_KEYSTORE": str(workdir / "keystore.json"),
            "CLEARHOUSE_AUDIT_ANCHOR_PATH": str(workdir / "anchors.jsonl"),
            "CLEARHOUSE_CONFIRM_POLL_SECONDS": "0.2",
            "CLEARHOUSE_CRYPTO_BATCH": str(args.batch),
            "CLEARHOUSE_CRASH_AFTER": "",
            **dict(item.split("=", 1) for item in args.env),
        },
    )
    if not own_broker:
        subprocess.run(["redis-cli", "-u", args.broker, "flushdb"], check=True, stdout=subprocess.DEVNULL)
    anvil = start_anvil(kids, port=ports["eth"], block_time=args.anvil_block_time)
    for chain in ("bitcoin", "solana"):
        port = ports["btc" if chain == "bitcoin" else "sol"]
        argv = [sys.executable, "manage.py", "run_node_simulator", chain, "--port", str(port)]
        process = kids.start(f"{chain} node simulator", argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        wait_port(port, what=f"{chain} node simulator", process=process)
    print(f"bench: engine {args.engine}; anvil {urls['ethereum']}, bitcoin {urls['bitcoin']}, solana {urls['solana']}")

    plan = crypto_seed.plan_trades(
        trades=args.trades,
        participants=args.participants,
        chains=args.chains,
        short_fraction=args.short_fraction,
        seed=args.seed,
    )
    seeded = crypto_seed.seed(
        plan=plan, participants=args.participants, chains=args.chains, keystore_path=workdir / "keystore.json",
        anvil=anvil,
    )  # fmt: skip
    short_ids = {f"C{t.n}" for t in plan.trades if t.short}
    print(
        f"plan: {args.trades} trades over {len(args.chains)} chains, {len(plan.normal)} funded participants, "
        f"{len(short_ids)} short trades from {len(plan.short_pool)} under-funded sellers"
    )

    crash_env = {**env, "CLEARHOUSE_CRASH_AFTER": args.crash_after} if args.crash_after else env
    workers = start_workers(kids, crash_env, count=args.workers, generation=1, counts=counts)
    wait_workers(env, args.workers)
    sampler = crypto_procs.CpuSampler(server_url=args.server, db=args.db)
    for name, process in kids.processes:
        group = "celery workers" if name.startswith("worker ") else name
        sampler.track(group, process.pid)
    crypto_procs.wait_for_stats_flush()
    before = crypto_procs.db_counters(args.server, args.db)
    sampler.start()

    from django.utils import timezone

    from common.actors import SystemActor
    from common.choices import InstructionStatus as S
    from config.celery import app
    from settlement.models import SettlementInstruction
    from settlement.services.trades import trades_ingest

    app.conf.broker_url = app.conf.broker_write_url = app.conf.broker_read_url = args.broker
    actor = SystemActor("bench")
    beat_tasks = ["settlement.tasks.crypto_sweep_task", *args.beat_task] if args.sweep_every else []
    crash: dict[str, object] = {}
    started = time.monotonic()
    with crypto_procs.counting_statements() as driver_statements:
        executed_at = timezone.now() - timedelta(seconds=1)
        for first in range(0, args.trades, args.ingest_batch):
            items = crypto_seed.trade_inputs(
                plan, seeded, start=first, stop=min(args.trades, first + args.ingest_batch), executed_at=executed_at
            )
            trades_ingest(items=items, actor=actor)
        ingest_statements = driver_statements["statements"]
    ingested = time.monotonic() - started
    print(f"ingested {args.trades} trades in {ingested:.1f} s ({args.trades / ingested:.0f}/s); settling...")
    deadline = started + args.timeout
    next_beat = time.monotonic() + args.sweep_every
    left = -1
    while time.monotonic() < deadline:
        if args.crash_after and not crash:
            dead = [w for w in workers if w.poll() is not None]
            waited = time.monotonic() - started
            if dead or waited > args.crash_wait:
                crash = {"exits": [w.returncode for w in dead], "after": waited}
                print(
                    f"crash: {len(dead)} of {len(workers)} workers exited (codes {crash['exits']}) after {waited:.1f} s"
                    + ("" if dead else f": NO CRASH at {args.crash_after!r} within {args.crash_wait:.0f} s")
                )
                stop_workers(workers)
                workers = start_workers(kids, env, count=args.workers, generation=2, counts=counts)
                for process in workers:
                    sampler.track("celery workers", process.pid)
                wait_workers(env, args.workers)
                crash["restarted"] = time.monotonic()
        left = SettlementInstruction.objects.exclude(status__in=[S.SETTLED, S.FAILED, S.CANCELLED]).count()
        if left == 0 and (crash or not args.crash_after):
            break
        if beat_tasks and time.monotonic() >= next_beat:
            for name in beat_tasks:
                app.send_task(name)
            next_beat = time.monotonic() + args.sweep_every
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    cpu = sampler.stop()
    stop_workers(workers)
    if left:
        print(f"TIMEOUT: {left} legs not final after {elapsed:.0f} s")
    if crash.get("restarted"):
        print(f"crash: all final {time.monotonic() - crash['restarted']:.1f} s after the restart")  # type: ignore[operator]
    crypto_procs.wait_for_stats_flush()
    after = crypto_procs.db_counters(args.server, args.db)

    print(f"\nseeding: {seeded.seconds:.1f} s (excluded); run: {elapsed:.1f} s from the first ingest to all final")
    crypto_report.print_figures(n_trades=args.trades, seconds=elapsed)
    statements = crypto_procs.statement_counts(counts).get("statements", 0) + ingest_statements
    crypto_report.print_costs(n_trades=args.trades, cpu=cpu, before=before, after=after, statements=statements)
    print(
        f"  (PostgreSQL: 'scratch db backends' sums the backends connected to {args.db}; 'whole server' every "
        "postgres process, other databases' load included. CPU and counters cover ingest and settlement.)"
    )
    ok = crypto_checks.check_all(urls=urls, short_ids=short_ids)
    if args.crash_after:
        crashed = bool(crash.get("exits"))
        print(f"  [{'OK' if crashed else 'FAIL'}] crash at {args.crash_after!r}: worker exits {crash.get('exits')}")
        ok = ok and crashed
    print(f"\n{'ALL INVARIANTS OK' if ok else 'SOME INVARIANT FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    options = arguments()
    if options.crash_after and ("," in options.crash_after or options.crash_after == "all"):
        sys.exit(crash_series(options))
    with children() as started:  # every process it starts is stopped, even on failure or Ctrl-C
        code = main(started, options)
    sys.exit(code)
