#!/usr/bin/env python
"""Fiat settlement benchmark: a fiat netting window of EUR/USD trades over many participants is
closed and its plan settled through real Celery workers against the bank network simulator
running as its own process (HTTP on loopback, messages validated against their schemas, the test
clock settling at once).

Run by hand (not part of `make test`):

    .venv/bin/python bench/fiat_settlement.py --participants 1000 --trades 20000

It creates a scratch database (default `clearhouse_bench_fiat`, dropped first), starts the bank
simulator and the workers, seeds participants with a USD (ABA) and a EUR (IBAN) account funded
the same at the bank and on the ledger, ingests the trades, closes the window (dispatching the
pay-ins after commit) and fetches the bank's reports as beat would (here every 0.2 s, handing them
to the workers to apply), until every netted instruction has settled. It prints:

* initiation latency per message: funds locked → message accepted by the bank (the service
  time of one initiation), and instruction ready → accepted (including the queue wait behind
  the rest of the window), p50/p99;
* fiat settlements/s: netted payments settled per second from window close to the last one, and
  the trade legs settled with them;
* a check that every participant's ledger balance equals its bank balance.

With ``--profile`` everything runs in this process under cProfile (tasks inline). To count the
SQL statements and transactions per net payment of that run (on any checkout, old or new):

    .venv/bin/python bench/sql_count.py bench/fiat_settlement.py --profile --participants 200 --trades 4000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Children, children, percentile, scratch_database, scratch_redis, wait_port, wait_workers  # noqa: E402
from config.celery import worker_argv  # noqa: E402


def _post(url: str, body: dict) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def main(kids: Children) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--trades", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=50, help="netted instructions per task")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="clearhouse_bench_fiat")
    parser.add_argument(
        "--broker", default="", help="Redis URL to use (flushed first); default: a redis-server of the bench's own"
    )
    parser.add_argument("--port", type=int, default=18650)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--profile", action="store_true", help="no workers: run everything in this process under cProfile, print top"
    )
    args = parser.parse_args()

    bank_url = f"http://127.0.0.1:{args.port}"
    own_broker = not args.broker
    if own_broker:
        args.broker = scratch_redis(kids)
    env = scratch_database(
        server=args.server,
        db=args.db,
        env={
            "CELERY_BROKER_URL": args.broker,
            "CELERY_TASK_ALWAYS_EAGER": "1" if args.profile else "0",
            "CLEARHOUSE_BANK_URL": bank_url,
            "CLEARHOUSE_CRYPTO_BATCH": str(args.batch),
        },
    )
    if not own_broker:
        subprocess.run(["redis-cli", "-u", args.broker, "flushdb"], check=True, stdout=subprocess.DEVNULL)
    bank = kids.start(
        "bank simulator",
        [sys.executable, "manage.py", "run_network_simulator", "bank", "--port", str(args.port), "--instant"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    wait_port(args.port, what="bank simulator", process=bank)
    from django.db.models import Count
    from django.utils import timezone
    from schwifty import IBAN

    from common.actors import SystemActor
    from common.choices import AssetKind, MarketCalendar
    from common.choices import InstructionStatus as S
    from ledger.models import LedgerAccount, TransitionLog
    from ledger.services.ledger import ledger_deposit
    from netting.models import NettedInstruction, NettedStatus, NettingWindow, RailAttempt, WindowStatus
    from netting.pipeline import rail_reports_fetch
    from netting.services import window_close
    from reference.models import Asset, BankAccount, Instrument, Participant
    from settlement.models import SettlementInstruction
    from settlement.services.trades import TradeInput, trades_ingest

    actor = SystemActor("bench")
    usd = Asset.objects.create(
        code="USD", name="US dollar", kind=AssetKind.FIAT, precision=2, settlement_cycle=1, calendar=MarketCalendar.FED
    )
    eur = Asset.objects.create(
        code="EUR", name="Euro", kind=AssetKind.FIAT, precision=2, settlement_cycle=1, calendar=MarketCalendar.TARGET
    )
    instrument = Instrument.objects.create(symbol="EUR/USD", base=eur, quote=usd, price_precision=4)
    start = {"USD": Decimal("10000000.00"), "EUR": Decimal("10000000.00")}
    parties = []
    seeded = time.monotonic()
    for i in range(args.participants):
        party = Participant.objects.create(code=f"P{i:04d}", name=f"Participant {i}")
        iban = str(IBAN.generate("DE", bank_code="37040044", account_code=f"{i + 1:010d}"))
        BankAccount.objects.create(
            participant=party, currency=usd, holder_name=party.name, aba_routing="011000015", account_number=f"9{i:08d}"
        )
        BankAccount.objects.create(
            participant=party, currency=eur, holder_name=party.name, iban=iban, bic="COBADEFFXXX"
        )
        _post(f"{bank_url}/sim/open_account", {"account": f"9{i:08d}", "currency": "USD", "balance": "10000000.00"})
        _post(f"{bank_url}/sim/open_account", {"account": iban, "currency": "EUR", "balance": "10000000.00"})
        for asset in (usd, eur):
            ledger_deposit(
                owner=party, asset=asset, amount=start[asset.code], reference=f"seed:{i}:{asset}", actor=actor
            )
        parties.append(party)
    print(f"seeded {len(parties)} participants (ledger and bank) in {time.monotonic() - seeded:.1f} s")

    rng = random.Random(11)
    now = timezone.now()
    for first in range(0, args.trades, 5000):
        items = []
        for n in range(first, min(args.trades, first + 5000)):
            buyer, seller = rng.sample(parties, 2)
            items.append(
                TradeInput(
                    source="bench",
                    external_id=f"FX{n}",
                    instrument=instrument,
                    buyer=buyer,
                    seller=seller,
                    quantity=Decimal(rng.randint(1000, 100000)),
                    price=Decimal(f"1.{rng.randint(500, 1500):04d}"),
                    executed_at=now,
                )
            )
        trades_ingest(items=items, actor=actor)
    print(f"ingested {args.trades} EUR/USD trades")

    workers = [
        kids.start(f"worker fiat{i}", worker_argv(sys.executable, f"fiat{i}"), cwd=ROOT, env=env)
        for i in range(0 if args.profile else args.workers)
    ]
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    else:
        wait_workers(env, args.workers)
    try:
        window = NettingWindow.objects.get(asset_class="fiat", status=WindowStatus.OPEN)
        closed_at = time.monotonic()
        window = window_close(window=window, actor=actor)
        print(
            f"window closed in {time.monotonic() - closed_at:.2f} s: {window.gross_legs} legs -> "
            f"{window.net_payments} net payments"
        )
        deadline = time.monotonic() + args.timeout
        total = NettedInstruction.objects.filter(window=window).count()
        while time.monotonic() < deadline:
            rail_reports_fetch(network="bank", actor=actor, dispatch=not args.profile)  # the workers apply them
            left = NettedInstruction.objects.filter(window=window).exclude(status=NettedStatus.SETTLED).count()
            if left == 0:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - closed_at
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)

    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    by_status = dict(
        NettedInstruction.objects.filter(window=window).values_list("status").annotate(n=Count("pk")).order_by()
    )
    legs_settled = SettlementInstruction.objects.filter(netting_window=window, status=S.SETTLED).count()
    print(f"\nnetted instructions by status: {by_status}")
    print(
        f"{by_status.get(NettedStatus.SETTLED, 0)} of {total} net payments settled in {elapsed:.1f} s "
        f"-> {by_status.get(NettedStatus.SETTLED, 0) / elapsed:.1f} fiat settlements/s "
        f"({legs_settled} trade legs settled with them: {legs_settled / elapsed:.0f} legs/s)"
    )
    locked_at = {
        row["entity_id"]: row["at"]
        for row in TransitionLog.objects.filter(entity_type="nettedinstruction", to_status="locked").values(
            "entity_id", "at"
        )
    }
    from django.db.models import Max

    from netting.models import Direction

    closed_wall = window.closed_at
    phases = {
        "pay-ins accepted": RailAttempt.objects.filter(
            instruction__window=window, instruction__direction=Direction.PAY_IN
        ).aggregate(m=Max("accepted_at"))["m"],
        "pay-ins settled": NettedInstruction.objects.filter(window=window, direction=Direction.PAY_IN).aggregate(
            m=Max("updated_at")
        )["m"],
        "pay-outs settled": NettedInstruction.objects.filter(window=window, direction=Direction.PAY_OUT).aggregate(
            m=Max("updated_at")
        )["m"],
        "legs settled": SettlementInstruction.objects.filter(netting_window=window).aggregate(m=Max("updated_at"))["m"],
    }
    print(
        "phases after the window closed: "
        + ", ".join(f"{name} {(at - closed_wall).total_seconds():.1f} s" for name, at in phases.items() if at)
    )
    service, queued = [], []
    for attempt in RailAttempt.objects.filter(instruction__window=window, accepted_at__isnull=False).select_related(
        "instruction"
    ):
        ni = attempt.instruction
        if ni.pk in locked_at:
            service.append((attempt.accepted_at - locked_at[ni.pk]).total_seconds() * 1000)
        if ni.direction == Direction.PAY_IN:  # ready at the close; a pay-out is ready when its pay-ins are
            queued.append((attempt.accepted_at - ni.created_at).total_seconds() * 1000)
    if service:
        print(
            f"initiation (funds locked -> accepted by the bank): p50 {percentile(service, 50):.1f} ms, "
            f"p99 {percentile(service, 99):.1f} ms over {len(service)} messages"
        )
        print(
            f"pay-in initiation incl. queue (window closed -> accepted): p50 {percentile(queued, 50) / 1000:.1f} s, "
            f"p99 {percentile(queued, 99) / 1000:.1f} s"
        )
    mismatches = 0
    for account in BankAccount.objects.select_related("participant", "currency"):
        key = account.iban or account.account_number
        request = urllib.request.Request(f"{bank_url}/sim/balance", data=json.dumps({"account": key}).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            bank_balance = Decimal(json.loads(response.read())["result"])
        ledger = LedgerAccount.objects.get(owner=account.participant, asset=account.currency, kind="available").balance
        mismatches += bank_balance != ledger
    print(f"ledger == bank for {BankAccount.objects.count() - mismatches} of {BankAccount.objects.count()} accounts")
    bank.terminate()


if __name__ == "__main__":
    with children() as started:  # every process it starts is stopped, even on failure or Ctrl-C
        main(started)
