"""Batch stages 2 and 3: sign and store the batch's chain transactions (one per sending house
wallet and chunk of ``rail.max_payouts`` legs), then broadcast them in one batched RPC call.

Signing happens in the stage's database transaction and commits the signed bytes, hashes and
nonces before anything is sent; every later broadcast sends those very bytes. Broadcasting
happens outside any transaction, and what it learnt is recorded as a compare-and-set on the
status and hash each chain transaction had when read.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from django.db import transaction
from simple_history.utils import bulk_create_with_history

from common.actors import Actor, actor_user
from common.choices import InstructionStatus
from common.ports import escalate
from ledger.services.audit import LogEntry, transition_log_append, transition_log_deferred
from ledger.services.transitions_many import transitions_run_many
from rails.base import Payout, RailRejected, RailTransientError
from rails.crypto.registry import chain_rail_of
from reference.models import WalletAddress
from settlement.crypto.batch_form import batch_assets
from settlement.crypto.batch_lock import LEG_RELATED, batch_move, by_trade, held, legs_fail_many
from settlement.crypto.trades import on_chain
from settlement.crypto.wallets import wallet_nonce_give_back
from settlement.locking import lock_batch, lock_batch_legs, lock_chain_txs, lock_wallets_of
from settlement.models import BatchStatus, ChainTransaction, ChainTransfer, CryptoBatch, SettlementInstruction
from settlement.models.pipeline import TransferStatus as TS
from settlement.services.halts import PIPELINE, active_halt
from settlement.services.instructions import ENTITY

S = InstructionStatus


def payout_reference(leg: SettlementInstruction) -> str:
    """The reference a leg's payment carries on chain (as the per-trade pipeline's transfers)."""
    return f"{leg.reference}:a{leg.attempt}"


def batch_halted(batch: CryptoBatch) -> bool:
    """True while an asset moving on the batch's chain is halted (nothing is signed or sent)."""
    return any(on_chain(a) and active_halt(a) is not None for a in batch_assets(batch))


def batch_sign(*, batch_id: int, actor: Actor = PIPELINE) -> str:
    """locked → signed: the chain transactions signed and stored, the legs processing. Returns
    "signed", "halted" (an asset of the batch is halted: nothing signed, the batch stays locked
    until the halt is lifted) or "noop" (not locked: a duplicate task, or the stage done)."""
    with transaction.atomic(), transition_log_deferred():
        batch = lock_batch(batch_id).first()
        if batch is None or batch.status != BatchStatus.LOCKED:
            return "noop"
        if batch_halted(batch):
            return "halted"
        rail = chain_rail_of(batch.chain)
        trades = by_trade(lock_batch_legs(batch, related=LEG_RELATED))
        # a trade whose lock expired meanwhile was failed by the expiry sweeper: not signed
        live = {t: legs for t, legs in trades.items() if all(leg.status == S.LOCKED for leg in legs)}
        chain_legs = [leg for legs in live.values() for leg in legs if on_chain(leg.asset)]
        senders: dict[int, WalletAddress] = {}
        for wallet in lock_wallets_of(participant_ids={leg.payer_id for leg in chain_legs}, chain=batch.chain):
            senders.setdefault(wallet.participant_id, wallet)
        receivers: dict[int, WalletAddress] = {}
        payees = {leg.payee_id for leg in chain_legs}
        for wallet in WalletAddress.objects.filter(participant_id__in=payees, chain=batch.chain).order_by("pk"):
            receivers.setdefault(wallet.participant_id, wallet)
        failed: dict[int, str] = {}
        per_sender: dict[int, list[SettlementInstruction]] = defaultdict(list)
        for leg in chain_legs:
            if leg.payer_id not in senders or leg.payee_id not in receivers:
                who = leg.payer if leg.payer_id not in senders else leg.payee
                failed[leg.trade_id] = f"{who} has no {batch.chain} wallet"
            else:
                per_sender[leg.payer_id].append(leg)
        txs: list[ChainTransaction] = []
        transfers: list[tuple[ChainTransaction, list[ChainTransfer]]] = []
        for payer_id in sorted(per_sender, key=lambda p: senders[p].pk):
            wallet = senders[payer_id]
            legs = per_sender[payer_id]
            for start in range(0, len(legs), rail.max_payouts):
                chunk = legs[start : start + rail.max_payouts]
                try:
                    signed = rail.sign_payouts(
                        from_address=wallet.address,
                        payouts=[
                            Payout(receivers[leg.payee_id].address, leg.amount, payout_reference(leg)) for leg in chunk
                        ],
                        nonce=wallet.next_nonce,
                        fee_cap=sum((held(leg.fee_lock).amount for leg in chunk), Decimal(0)),
                        state=wallet.chain_state,
                    )
                except RailRejected as exc:  # e.g. a recipient the contract may not pay
                    failed.update({leg.trade_id: f"could not sign: {exc}"[:500] for leg in chunk})
                    continue
                tx = ChainTransaction(
                    batch=batch,
                    chain=batch.chain,
                    from_address=wallet.address,
                    nonce=signed.nonce,
                    tx_hash=signed.tx_hash,
                    raw_tx=signed.raw,
                    payouts=len(chunk),
                    wallet_state_before=wallet.chain_state,
                    fee_cap=signed.fee_cap,
                )
                wallet.next_nonce, wallet.chain_state = signed.nonce + 1, signed.state_after
                txs.append(tx)
                transfers.append((tx, [_transfer(leg, tx, index, receivers) for index, leg in enumerate(chunk)]))
        user = actor_user(actor)
        bulk_create_with_history(txs, ChainTransaction, default_user=user, default_change_reason="signed")
        rows = []
        for tx, chunk_rows in transfers:
            for row in chunk_rows:
                row.chain_tx = tx
            rows.extend(chunk_rows)
        bulk_create_with_history(rows, ChainTransfer, default_user=user, default_change_reason="signed (batch)")
        WalletAddress.objects.bulk_update(list(senders.values()), ["next_nonce", "chain_state"])
        transition_log_append(
            entries=[
                LogEntry(
                    "chaintransaction",
                    tx.pk,
                    "",
                    TS.SIGNED,
                    "signed",
                    {"tx": tx.tx_hash, "nonce": tx.nonce, "payouts": tx.payouts},
                )
                for tx in txs
            ]
            + [
                LogEntry(
                    "chaintransfer", row.pk, "", TS.SIGNED, "signed", {"tx": row.tx_hash, "output": row.output_index}
                )
                for row in rows
            ],
            actor=actor,
        )
        tx_of = {row.instruction_id: row.tx_hash for row in rows}
        moving = [leg for t, legs in live.items() if t not in failed for leg in legs]
        trade_tx = {leg.trade_id: tx_of[leg.pk] for leg in moving if leg.pk in tx_of}
        transitions_run_many(
            moving,
            "mark_processing",
            entity=ENTITY,
            actor=actor,
            reason=lambda leg: "transaction signed" if leg.pk in tx_of else "awaiting the chain leg (DvP)",
            metadata=lambda leg: {"tx": [trade_tx[leg.trade_id]], "batch": batch.pk},
        )
        if failed:
            legs_fail_many({t: trades[t] for t in failed}, reasons=failed, batch=batch, stage="sign", actor=actor)
            for trade_id, reason in failed.items():
                escalate(trades[trade_id][0], reason=reason)
        batch_move(batch, "mark_signed", actor=actor, reason=f"{len(txs)} chain transactions for {len(rows)} legs")
        return "signed"


def _transfer(
    leg: SettlementInstruction, tx: ChainTransaction, index: int, receivers: dict[int, WalletAddress]
) -> ChainTransfer:
    return ChainTransfer(
        instruction=leg,
        attempt=leg.attempt,
        chain=tx.chain,
        from_address=tx.from_address,
        to_address=receivers[leg.payee_id].address,
        amount=leg.amount,
        nonce=tx.nonce,
        tx_hash=tx.tx_hash,
        raw_tx="",
        fee_cap=leg.fee_lock.amount if leg.fee_lock else Decimal(0),
        output_index=index,
    )


def batch_broadcast(*, batch_id: int, actor: Actor = PIPELINE) -> str:
    """Send every signed (or, on a retry, already sent) chain transaction of the batch in one
    batched call, in nonce order per sender; record the outcome. Returns "broadcast" (stage done),
    "retry" (some sends failed transiently: call again later), "halted" or "noop"."""
    batch = CryptoBatch.objects.get(pk=batch_id)
    if batch.status != BatchStatus.SIGNED:
        return "noop"
    if batch_halted(batch):
        return "halted"
    seen = list(ChainTransaction.objects.filter(batch=batch, status=TS.SIGNED).order_by("from_address", "nonce"))
    outcomes = chain_rail_of(batch.chain).broadcast_many([tx.raw_tx for tx in seen]) if seen else []
    result = "broadcast"
    with transaction.atomic(), transition_log_deferred():
        batch = lock_batch(batch_id).get()
        if batch.status != BatchStatus.SIGNED:
            return "noop"
        current = {tx.pk: tx for tx in lock_chain_txs(pk__in=[tx.pk for tx in seen])}
        sent, rejected = [], []
        for tx, outcome in zip(seen, outcomes, strict=True):
            now = current[tx.pk]
            if now.status != TS.SIGNED or now.tx_hash != tx.tx_hash:
                continue  # moved on meanwhile
            if outcome is None:
                now.broadcast_count += 1
                now.unseen_checks, now.last_error = 0, ""
                sent.append(now)
            elif isinstance(outcome, RailTransientError):
                ChainTransaction.objects.filter(pk=now.pk).update(last_error=str(outcome)[:2000])
                result = "retry"
            else:
                now.last_error = f"rejected by the chain: {outcome}"[:2000]
                rejected.append(now)
        transitions_run_many(
            sent,
            "mark_broadcast",
            entity="chaintransaction",
            actor=actor,
            reason="broadcast",
            fields=("broadcast_count", "unseen_checks", "last_error"),
            metadata=lambda tx: {"tx": tx.tx_hash},
        )
        _transfers_follow([tx.pk for tx in sent], "mark_broadcast", actor=actor, reason="broadcast (batch)")
        if rejected:
            txs_fail(batch, rejected, actor=actor, give_nonce_back=True)
        if result == "broadcast":
            batch_move(batch, "mark_broadcast", actor=actor, reason=f"{len(sent)} sent, {len(rejected)} rejected")
        return result


def _transfers_follow(tx_ids: list[int], method: str, *, actor: Actor, reason: str) -> None:
    """The legs' chain transfers follow their chain transaction's status (history and log)."""
    if not tx_ids:
        return
    rows = list(ChainTransfer.objects.filter(chain_tx_id__in=tx_ids).order_by("pk"))
    transitions_run_many(rows, method, entity="chaintransfer", actor=actor, reason=reason)


def txs_fail(batch: CryptoBatch, txs: list[ChainTransaction], *, actor: Actor, give_nonce_back: bool) -> None:
    """Chain transactions that never moved value (refused, or their nonce taken by another
    transaction): failed, with their transfers; every trade they carried fails (locks released)
    and goes to operations. A refused transaction gives its nonce back when it was the wallet's
    last one. Rows already locked by the caller (batch row, transactions)."""
    transitions_run_many(
        txs,
        "mark_failed",
        entity="chaintransaction",
        actor=actor,
        reason=lambda tx: tx.last_error,
        fields=("last_error",),
    )
    _transfers_follow([tx.pk for tx in txs], "mark_failed", actor=actor, reason="chain transaction failed")
    if give_nonce_back:
        for tx in sorted(txs, key=lambda t: -t.nonce):
            wallet_nonce_give_back(
                chain=tx.chain, address=tx.from_address, nonce=tx.nonce, state_before=tx.wallet_state_before
            )
    reason_of = {tx.pk: tx.last_error for tx in txs}
    trades_of: dict[int, list[int]] = defaultdict(list)
    for trade_id, tx_id in ChainTransfer.objects.filter(chain_tx__in=txs).values_list(
        "instruction__trade_id", "chain_tx_id"
    ):
        trades_of[tx_id].append(trade_id)
    trade_reason = {t: reason_of[tx_id] for tx_id, ids in trades_of.items() for t in ids}
    trades = by_trade(lock_batch_legs(batch, related=LEG_RELATED).filter(trade_id__in=trade_reason))
    legs_fail_many(trades, reasons=trade_reason, batch=batch, stage=f"tx{min(reason_of)}", actor=actor)
    for tx in txs:
        ids = [t for t in trades_of.get(tx.pk, []) if t in trades]
        if ids:
            escalate(trades[ids[0]][0], reason=f"chain transaction {tx.tx_hash} failed: {tx.last_error}"[:500])
