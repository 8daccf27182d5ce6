#!/usr/bin/env python
"""Crypto T+0 settlement benchmark: N ETH/USD trades through the whole pipeline (lock, sign,
broadcast, confirm, DvP post, settle, notify) with real Celery workers on Redis and a real
Ethereum node (anvil, a block per transaction: confirmations are instant).

Run by hand (not part of `make test`):

    make bench-crypto            # or: .venv/bin/python bench/crypto_settlement.py --trades 2000

It creates a scratch database (default `clearhouse_bench_crypto`, dropped first), starts anvil and
the workers, seeds sellers with funded house wallets (on chain and on the ledger, equal), ingests
the trades in batches through the ingest service (the API's code path; dispatch after commit),
waits until every leg is settled, then prints settlements/s, p50/p99 latency from trade accepted
to settled, a per-stage breakdown from the transition log, and checks ledger == chain.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Children, children, percentile, scratch_database, scratch_redis, wait_workers  # noqa: E402
from config.celery import worker_argv  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def db_counters() -> dict[str, int]:
    """This database's commits and rows written so far (PostgreSQL's cumulative statistics)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        commits, inserted, updated, deleted = cursor.fetchone()
    return {"commits": commits, "rows written": inserted + updated + deleted}


def main(kids: Children) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trades", type=int, default=2_000)
    parser.add_argument("--sellers", type=int, default=40, help="distinct seller wallets (nonce streams)")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--batch", type=int, default=50, help="trades per pipeline task")
    parser.add_argument("--ingest-batch", type=int, default=500)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_crypto")
    parser.add_argument(
        "--broker", default="", help="Redis URL to use (flushed first); default: a redis-server of the bench's own"
    )
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    from rails.simulators.anvil import AnvilNode

    anvil = AnvilNode()
    kids.on_stop(anvil.stop)  # started by the library: stopped with the bench's other children
    anvil.start()
    keystore = ROOT / "var" / "bench-keystore.json"
    keystore.unlink(missing_ok=True)
    own_broker = not args.broker
    if own_broker:
        args.broker = scratch_redis(kids)
    env = scratch_database(
        server=args.server,
        db=args.db,
        env={
            "CELERY_BROKER_URL": args.broker,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "CLEARHOUSE_ETH_RPC_URL": anvil.url,
            "CLEARHOUSE_CHAIN_RAILS": "ethereum",
            "CLEARHOUSE_KEYSTORE": str(keystore),
            "CLEARHOUSE_CONFIRM_POLL_SECONDS": "0.2",
            "CLEARHOUSE_CRYPTO_BATCH": str(args.batch),
        },
    )
    if not own_broker:
        subprocess.run(["redis-cli", "-u", args.broker, "flushdb"], check=True, stdout=subprocess.DEVNULL)
    from django.db.models import Max
    from django.utils import timezone

    from common.actors import SystemActor
    from common.choices import AccountKind, AssetKind, Chain, MarketCalendar
    from common.choices import InstructionStatus as S
    from ledger.models import LedgerAccount, TransitionLog
    from ledger.services.ledger import ledger_deposit
    from rails.crypto.registry import chain_rail
    from reference.models import Asset, Instrument, Participant
    from settlement.crypto.wallets import local_chain_fund, wallet_provision
    from settlement.models import SettlementInstruction, Trade
    from settlement.services.trades import TradeInput, trades_ingest

    actor = SystemActor("bench")
    eth = Asset.objects.create(
        code="ETH",
        name="Ether",
        kind=AssetKind.CRYPTO,
        precision=18,
        settlement_cycle=0,
        calendar=MarketCalendar.ALWAYS,
        chain=Chain.ETHEREUM,
        required_confirmations=1,
    )
    usd = Asset.objects.create(
        code="USD", name="US dollar", kind=AssetKind.FIAT, precision=2, settlement_cycle=1, calendar=MarketCalendar.FED
    )
    instrument = Instrument.objects.create(symbol="ETH/USD", base=eth, quote=usd, price_precision=2)
    buyer = Participant.objects.create(code="BUYER", name="Buyer")
    wallet_provision(participant=buyer, chain=Chain.ETHEREUM, actor=actor)
    ledger_deposit(owner=buyer, asset=usd, amount=Decimal("1000000000.00"), reference="bench:usd", actor=actor)
    sellers = []
    for i in range(args.sellers):
        seller = Participant.objects.create(code=f"S{i:03d}", name=f"Seller {i}")
        wallet = wallet_provision(participant=seller, chain=Chain.ETHEREUM, actor=actor)
        local_chain_fund(wallet=wallet, asset=eth, amount=Decimal("100"), actor=actor)
        sellers.append(seller)
    print(f"seeded {len(sellers)} funded seller wallets on anvil {anvil.url}")

    workers = [
        kids.start(f"worker bench{i}", worker_argv(sys.executable, f"bench{i}"), cwd=ROOT, env=env)
        for i in range(args.workers)
    ]
    wait_workers(env, args.workers)
    time.sleep(1)  # statistics are flushed about once a second
    before = db_counters()
    cpu_before = {w.pid: cpu_seconds(w.pid) for w in workers}
    cpu_worker = 0.0
    try:
        now = timezone.now() - timedelta(seconds=1)
        started = time.monotonic()
        for start in range(0, args.trades, args.ingest_batch):
            items = [
                TradeInput(
                    source="bench",
                    external_id=f"B{n}",
                    instrument=instrument,
                    buyer=buyer,
                    seller=sellers[n % len(sellers)],
                    quantity=Decimal("0.01"),
                    price=Decimal("3000.00"),
                    executed_at=now,
                )
                for n in range(start, min(args.trades, start + args.ingest_batch))
            ]
            trades_ingest(items=items, actor=actor)
        ingested = time.monotonic() - started
        print(f"ingested {args.trades} trades in {ingested:.1f} s; waiting for settlement...")
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            left = SettlementInstruction.objects.exclude(status__in=[S.SETTLED, S.FAILED]).count()
            if left == 0:
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
        cpu_worker = sum(cpu_seconds(w.pid) - cpu_before[w.pid] for w in workers)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)

    statuses = defaultdict(int)
    for status in SettlementInstruction.objects.values_list("status", flat=True):
        statuses[status] += 1
    settled_at = dict(
        SettlementInstruction.objects.filter(status=S.SETTLED)
        .values("trade_id")
        .annotate(at=Max("updated_at"))
        .values_list("trade_id", "at")
    )
    received = dict(Trade.objects.values_list("pk", "received_at"))
    latencies = [(settled_at[t] - received[t]).total_seconds() for t in settled_at]
    print(f"\nlegs by status: {dict(statuses)}")
    print(
        f"settled trades: {len(latencies)} of {args.trades} in {elapsed:.1f} s "
        f"-> {len(latencies) / elapsed:.1f} settlements/s (trades; each = 2 legs + 1 chain transaction)"
    )
    if latencies:
        print(
            f"latency accepted -> settled: p50 {percentile(latencies, 50):.2f} s, "
            f"p99 {percentile(latencies, 99):.2f} s, max {max(latencies):.2f} s"
        )

    # where the time goes: mean time between pipeline stages, from the transition log
    stages: dict[int, dict[str, object]] = defaultdict(dict)
    for entity, entity_id, to_status, at in TransitionLog.objects.filter(
        entity_type__in=["instruction", "chaintransfer"]
    ).values_list("entity_type", "entity_id", "to_status", "at"):
        stages[(entity, entity_id)][to_status if entity == "instruction" else f"tx:{to_status}"] = at
    legs = dict(SettlementInstruction.objects.filter(leg="delivery").values_list("pk", "trade_id"))
    from settlement.models import ChainTransfer

    tx_of = dict(ChainTransfer.objects.values_list("instruction_id", "pk"))
    gaps: dict[str, list[float]] = defaultdict(list)
    for leg_id, trade_id in legs.items():
        s = stages.get(("instruction", leg_id), {})
        tx = stages.get(("chaintransfer", tx_of.get(leg_id)), {})
        points = [
            ("accepted", received[trade_id]),
            ("locked", s.get(S.LOCKED)),
            ("signed", s.get(S.PROCESSING)),
            ("broadcast", tx.get("tx:broadcast")),
            ("confirmed", tx.get("tx:confirmed")),
            ("settled", s.get(S.SETTLED)),
        ]
        for (a, ta), (b, tb) in pairwise(points):
            if ta and tb:
                gaps[f"{a} -> {b}"].append((tb - ta).total_seconds())
    print("\nmean time per stage:")
    for name, values in gaps.items():
        print(f"  {name:24s} {sum(values) / len(values):7.3f} s   (p99 {percentile(values, 99):.3f} s)")

    time.sleep(1)
    after = db_counters()
    print("\nper trade (this database, ingest included; the machine's load does not change these): ", end="")
    print(", ".join(f"{(after[k] - before[k]) / args.trades:.1f} {k}" for k in before), end="")
    print(f", {cpu_worker / args.trades * 1000:.0f} ms of worker CPU ({args.workers} workers)")

    rail = chain_rail("ethereum")
    mismatches = 0
    for participant in [buyer, *sellers]:
        wallet = participant.wallets.get(chain=Chain.ETHEREUM)
        ledger = sum(
            LedgerAccount.objects.filter(
                owner=participant, asset=eth, kind__in=[AccountKind.AVAILABLE, AccountKind.LOCKED]
            ).values_list("balance", flat=True),
            Decimal(0),
        )
        if ledger != rail.balance(wallet.address):
            mismatches += 1
    print(f"\nledger == chain for {1 + len(sellers) - mismatches} of {1 + len(sellers)} wallets")
    anvil.stop()


if __name__ == "__main__":
    with children() as started:  # every process it starts is stopped, even on failure or Ctrl-C
        main(started)
