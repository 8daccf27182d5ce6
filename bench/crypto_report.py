"""Figures of a bench/crypto_settlement.py run, from the database after the run: settlement rates,
latency accepted -> settled with and without the confirmation wait, time per stage, settlements per
chain transaction, and the per-trade costs measured around it."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from functools import cache
from itertools import pairwise
from typing import Any

from bench.common import percentile


def _history_marks(model: Any) -> dict[int, dict[str, datetime]]:
    """When each row of ``model`` first reached broadcast / confirmed, from its simple-history rows
    (for records whose steps write no transition-log entry)."""
    from settlement.models.pipeline import TransferStatus as TS

    found: dict[int, dict[str, datetime]] = defaultdict(dict)
    for pk, status, at in (
        model.history.filter(status__in=[TS.BROADCAST, TS.CONFIRMED])
        .order_by("history_date")
        .values_list("id", "status", "history_date")
    ):
        found[pk].setdefault(status, at)
    return found


@cache
def batch_tx_marks() -> dict[int, dict[str, datetime]]:
    from settlement.models import ChainTransaction

    return _history_marks(ChainTransaction)


def _timeline() -> dict[str, Any]:
    """Per trade: accepted, settled (its last leg's settled entry), and the confirmation wait of
    its delivery leg's transfer (confirmed - broadcast, from the transfer's own log entries, or
    from its batch chain transaction's when the transfer has none)."""
    from common.choices import InstructionStatus as S
    from ledger.models import TransitionLog
    from settlement.models import ChainTransfer, SettlementInstruction, Trade
    from settlement.models.pipeline import TransferStatus as TS

    leg_trade = dict(SettlementInstruction.objects.values_list("pk", "trade_id"))
    delivery = dict(SettlementInstruction.objects.filter(leg="delivery").values_list("pk", "trade_id"))
    received = dict(Trade.objects.values_list("pk", "received_at"))
    marks: dict[tuple[str, int], dict[str, datetime]] = defaultdict(dict)
    for entity, pk, to, at in TransitionLog.objects.filter(
        entity_type__in=["instruction", "chaintransfer", "chaintransaction"],
        to_status__in=[S.LOCKED, S.PROCESSING, S.SETTLED, TS.BROADCAST, TS.CONFIRMED],
    ).values_list("entity_type", "entity_id", "to_status", "at"):
        marks[entity, pk].setdefault(to, at)  # the first time it got there
    settled: dict[int, datetime] = {}
    for (entity, pk), by_status in marks.items():
        if entity == "instruction" and S.SETTLED in by_status:
            trade = leg_trade[pk]
            settled[trade] = max(settled.get(trade, by_status[S.SETTLED]), by_status[S.SETTLED])
    transfer_of: dict[int, tuple[int, int | None]] = {}
    per_tx: Counter[tuple[str, str]] = Counter()
    for pk, leg, chain_tx, chain, tx_hash in ChainTransfer.objects.filter(status=TS.CONFIRMED).values_list(
        "pk", "instruction_id", "chain_tx_id", "chain", "tx_hash"
    ):
        transfer_of[leg] = (pk, chain_tx)
        per_tx[chain, tx_hash] += 1
    trades: dict[int, dict[str, Any]] = {}
    for leg, trade in delivery.items():
        if trade not in settled:
            continue
        own = marks.get(("instruction", leg), {})
        transfer, chain_tx = transfer_of.get(leg, (None, None))
        tx_marks = marks.get(("chaintransfer", transfer), {}) if transfer else {}
        if TS.CONFIRMED not in tx_marks and chain_tx:
            tx_marks = marks.get(("chaintransaction", chain_tx), {}) or batch_tx_marks().get(chain_tx, {})
        trades[trade] = {
            "accepted": received[trade],
            "locked": own.get(S.LOCKED),
            "signed": own.get(S.PROCESSING),
            "broadcast": tx_marks.get(TS.BROADCAST),
            "confirmed": tx_marks.get(TS.CONFIRMED),
            "settled": settled[trade],
        }
    return {"trades": trades, "per_tx": per_tx}


def print_figures(*, n_trades: int, seconds: float) -> dict[str, float]:
    """Print rates, latencies, stage times and settlements per chain transaction; return the key
    figures."""
    data = _timeline()
    trades, per_tx = data["trades"], data["per_tx"]
    figures: dict[str, float] = {"settled": len(trades)}
    print(f"\nsettled trades: {len(trades)} of {n_trades}")
    if not trades:
        return figures
    first = min(t["accepted"] for t in trades.values())
    ends = sorted(t["settled"] for t in trades.values())
    span = (ends[-1] - first).total_seconds()
    figures["rate"] = len(trades) / span if span else 0.0
    lo, hi = ends[len(ends) // 10], ends[(len(ends) * 9) // 10]
    steady_span = (hi - lo).total_seconds()
    figures["steady"] = (len(ends) * 8 // 10) / steady_span if steady_span else 0.0
    print(
        f"settlements/s overall: {figures['rate']:.1f} (first accepted -> last settled, {span:.1f} s; "
        f"wall clock of the run {seconds:.1f} s)"
    )
    print(f"settlements/s steady state: {figures['steady']:.1f} (10th -> 90th percentile of settlement times)")
    latency = [(t["settled"] - t["accepted"]).total_seconds() for t in trades.values()]
    waits = {
        k: (t["confirmed"] - t["broadcast"]).total_seconds()
        for k, t in trades.items()
        if t["confirmed"] and t["broadcast"]
    }
    no_wait = [(t["settled"] - t["accepted"]).total_seconds() - waits.get(k, 0.0) for k, t in trades.items()]
    for name, values in (("", latency), (" without the confirmation wait", no_wait)):
        print(
            f"latency accepted -> settled{name}: p50 {percentile(values, 50):.2f} s, "
            f"p99 {percentile(values, 99):.2f} s, max {max(values):.2f} s"
        )
    figures["p50"], figures["p99"] = percentile(latency, 50), percentile(latency, 99)
    print(f"  (confirmation wait known for {len(waits)} of {len(trades)} trades)")
    gaps: dict[str, list[float]] = defaultdict(list)
    order = ["accepted", "locked", "signed", "broadcast", "confirmed", "settled"]
    for t in trades.values():
        for a, b in pairwise(order):
            if t[a] and t[b]:
                gaps[f"{a} -> {b}"].append((t[b] - t[a]).total_seconds())
    print("mean time per stage:")
    for name, values in gaps.items():
        print(f"  {name:24s} {sum(values) / len(values):8.3f} s   (p99 {percentile(values, 99):.3f} s)")
    by_chain: dict[str, list[int]] = defaultdict(list)
    for (chain, _), count in per_tx.items():
        by_chain[chain].append(count)
    total_tx = sum(len(v) for v in by_chain.values())
    figures["per_tx"] = sum(per_tx.values()) / total_tx if total_tx else 0.0
    print(
        f"settlements per chain transaction: {figures['per_tx']:.2f} overall ("
        + ", ".join(f"{c} {sum(v) / len(v):.2f} over {len(v)} tx, max {max(v)}" for c, v in sorted(by_chain.items()))
        + ")"
    )
    return figures


def print_costs(
    *, n_trades: int, cpu: dict[str, float], before: dict[str, int], after: dict[str, int], statements: int
) -> None:
    print(f"\nper trade ({n_trades} trades; the scratch database unless marked whole server):")
    delta = {k: after[k] - before[k] for k in before}
    rows = delta["rows inserted"] + delta["rows updated"] + delta["rows deleted"]
    print(
        f"  SQL statements {statements / n_trades:.1f} (workers + driver, counted at the Django cursor), "
        f"commits {delta['commits'] / n_trades:.1f}, rollbacks {delta['rollbacks'] / n_trades:.2f}, "
        f"rows written {rows / n_trades:.1f} (ins {delta['rows inserted'] / n_trades:.1f} / "
        f"upd {delta['rows updated'] / n_trades:.1f} / del {delta['rows deleted'] / n_trades:.1f}), "
        f"WAL {delta['WAL bytes (whole server)'] / n_trades / 1024:.1f} KiB (whole server)"
    )
    print("  CPU ms per trade by process:")
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        print(f"    {name:48s} {seconds / n_trades * 1000:8.2f} ms   ({seconds:.1f} s in all)")
