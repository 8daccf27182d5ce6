"""What can go wrong with a batch's chain transaction once sent, and finishing a batch:
a reverted transaction, a double spend, a re-signature after expiry, a rebroadcast of the same
bytes. Every function is a compare-and-set on the transaction's status and hash; callers hold the
batch row (the first lock of every batch stage)."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from common.actors import Actor
from common.choices import CaseKind, InstructionStatus
from common.ports import case_open, escalate
from ledger.services.audit import LogEntry, transition_log_append, transition_log_deferred
from ledger.services.batch import PostRequest, ledger_post_many
from ledger.services.ledger import system_account_for
from ledger.services.transitions_many import transitions_run_many
from rails.base import Payout
from rails.base import TransferStatus as ChainStatus
from rails.crypto.registry import chain_rail_of
from settlement.crypto.batch_chain import _transfers_follow, payout_reference, txs_fail
from settlement.crypto.batch_fees import gas_row, gas_shares
from settlement.crypto.batch_lock import batch_move, held, legs_fail_many
from settlement.crypto.trades import NETWORK_FEES
from settlement.crypto.wallets import wallet_nonce_taken
from settlement.locking import lock_batch, lock_chain_txs
from settlement.models import (
    BatchStatus,
    ChainTransaction,
    ChainTransfer,
    CryptoBatch,
    FeeCharge,
    SettlementInstruction,
)
from settlement.models.pipeline import TransferStatus as TS
from settlement.services.halts import PIPELINE, halt_open

S = InstructionStatus


def txs_reverted(
    batch: CryptoBatch,
    reverted: list[tuple[ChainTransaction, ChainStatus]],
    *,
    legs_of: dict[int, SettlementInstruction],
    trades: dict[int, list[SettlementInstruction]],
    transfers_of: dict[int, list[ChainTransfer]],
    actor: Actor,
) -> None:
    """Transactions that reverted in a block: the chain took their fee and moved nothing. The fee
    is booked from the legs' reserves (ledger follows the chain), every trade they carried fails
    with its other holds released, and operations get a case per transaction."""
    if not reverted:
        return
    posts: list[PostRequest] = []
    gas_rows: list[FeeCharge] = []
    reasons: dict[int, str] = {}
    for tx, status in reverted:
        rows = transfers_of[tx.pk]
        legs = [legs_of[r.instruction_id] for r in rows]
        shares = gas_shares(status.fee or Decimal(0), legs)
        for leg in legs:
            account = system_account_for(code=f"{NETWORK_FEES}:{tx.chain}", asset=leg.asset)
            posts.append(
                PostRequest(held(leg.fee_lock), account.pk, shares[leg.pk], (), f"network fee of reverted {tx.tx_hash}")
            )
            if shares[leg.pk] > 0:
                gas_rows.append(gas_row(leg, fee=shares[leg.pk], tx_hash=tx.tx_hash))
            reasons[leg.trade_id] = f"chain transaction {tx.tx_hash} reverted on chain (block {status.block_number})"
        tx.fee, tx.block_number = status.fee, status.block_number
        tx.last_error = f"reverted in block {status.block_number}"
    journals = ledger_post_many(requests=posts, actor=actor)
    for row in gas_rows:
        row.journal = journals[held(row.instruction.fee_lock).pk] if row.instruction else None
    FeeCharge.objects.bulk_create(gas_rows)
    txs = [tx for tx, _ in reverted]
    transitions_run_many(
        txs,
        "mark_failed",
        entity="chaintransaction",
        actor=actor,
        reason=lambda tx: tx.last_error,
        fields=("fee", "block_number", "last_error"),
    )
    _transfers_follow([tx.pk for tx in txs], "mark_failed", actor=actor, reason="chain transaction reverted")
    failing = {t: trades[t] for t in sorted(reasons)}
    legs_fail_many(failing, reasons=reasons, batch=batch, stage=f"revert{min(tx.pk for tx in txs)}", actor=actor)
    for tx in txs:
        escalate(legs_of[transfers_of[tx.pk][0].instruction_id], reason=f"transaction {tx.tx_hash} reverted on chain")


def txs_double_spent(batch: CryptoBatch, double: list[tuple[ChainTransaction, ChainStatus]], *, actor: Actor) -> None:
    """Transactions whose nonce another transaction used: they can never confirm. They fail with
    every trade they carried (our value never moved), the asset's settlement halts until
    operations lift it, and an investigation case is opened."""
    if not double:
        return
    for tx, status in double:
        tx.last_error = (
            f"double spend: nonce {tx.nonce} of {tx.from_address} was used by another transaction; "
            f"ours ({tx.tx_hash}) can never confirm"
        )
        wallet_nonce_taken(chain=tx.chain, address=tx.from_address, sender_nonce=status.sender_nonce or 0)
    txs = [tx for tx, _ in double]
    first_leg = {
        row.chain_tx_id: row.instruction
        for row in ChainTransfer.objects.filter(chain_tx__in=txs, output_index=0).select_related("instruction__asset")
    }
    txs_fail(batch, txs, actor=actor, give_nonce_back=False)
    for tx in txs:
        leg = first_leg[tx.pk]
        halt_open(asset=leg.asset, reason=tx.last_error, actor=actor)
        case_open(
            kind=CaseKind.INVESTIGATION,
            reason=tx.last_error,
            instruction=leg,
            asset=leg.asset,
            dedupe_key=f"double-spend:tx{tx.pk}",
        )


def tx_resign(tx: ChainTransaction, *, actor: Actor = PIPELINE) -> ChainTransaction:
    """Replace a transaction the chain can no longer accept (Solana: blockhash expired, never
    seen) with a new signature of the same payouts, nonce and references. Only called once the
    rail says the old one can never land, so at most one version can ever move value; a stale
    or duplicate call finds the hash already replaced and does nothing."""
    seen_hash = tx.tx_hash
    with transaction.atomic(), transition_log_deferred():
        lock_batch(tx.batch_id).get()
        now = lock_chain_txs(pk=tx.pk).get()
        if now.status != TS.BROADCAST or now.tx_hash != seen_hash:
            return now
        rows = list(ChainTransfer.objects.filter(chain_tx=now).select_related("instruction").order_by("output_index"))
        signed = chain_rail_of(now.chain).sign_payouts(
            from_address=now.from_address,
            payouts=[Payout(r.to_address, r.amount, payout_reference(r.instruction)) for r in rows],
            nonce=now.nonce,
            fee_cap=now.fee_cap,
            state=now.wallet_state_before,
        )
        ChainTransaction.objects.filter(pk=now.pk).update(
            tx_hash=signed.tx_hash, raw_tx=signed.raw, resign_count=now.resign_count + 1, unseen_checks=0
        )
        ChainTransfer.objects.filter(chain_tx=now).update(tx_hash=signed.tx_hash)
        reason = f"re-signed: {seen_hash} expired without landing"
        transition_log_append(
            entries=[LogEntry("chaintransaction", now.pk, now.status, now.status, reason, {"tx": signed.tx_hash})],
            actor=actor,
        )
        return ChainTransaction.objects.get(pk=now.pk)


def tx_rebroadcast_recorded(tx: ChainTransaction, *, actor: Actor = PIPELINE) -> None:
    """The same bytes were sent again (dropped or reorganised away): counted and logged."""
    with transaction.atomic(), transition_log_deferred():
        lock_batch(tx.batch_id).get()
        now = lock_chain_txs(pk=tx.pk).get()
        if now.status != TS.BROADCAST or now.tx_hash != tx.tx_hash:
            return
        ChainTransaction.objects.filter(pk=now.pk).update(broadcast_count=now.broadcast_count + 1, unseen_checks=0)
        transition_log_append(
            entries=[
                LogEntry(
                    "chaintransaction",
                    now.pk,
                    now.status,
                    now.status,
                    "rebroadcast (same signed bytes, same nonce)",
                    {"tx": now.tx_hash, "count": now.broadcast_count + 1},
                )
            ],
            actor=actor,
        )


def batch_finish_if_final(batch_id: int, *, actor: Actor = PIPELINE) -> bool:
    """broadcast → done once every chain transaction is confirmed or failed and no leg is left
    non-final. Returns True when the batch is done."""
    with transaction.atomic(), transition_log_deferred():
        batch = lock_batch(batch_id).get()
        if batch.status == BatchStatus.DONE:
            return True
        if batch.status != BatchStatus.BROADCAST:
            return False
        if ChainTransaction.objects.filter(batch=batch, status__in=[TS.SIGNED, TS.BROADCAST]).exists():
            return False
        open_legs = SettlementInstruction.objects.filter(batch=batch, status__in=[S.PENDING, S.LOCKED, S.PROCESSING])
        if open_legs.exists():
            return False
        batch_move(batch, "mark_done", actor=actor, reason=f"done: {batch.settled} settled, {batch.failed} failed")
        return True
