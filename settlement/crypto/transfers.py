"""Chain transfers of the crypto T+0 pipeline once signed: broadcast (the stored bytes, again if
need be), give up, rejection, confirmations, re-signing an expired transaction, double spends,
and settling the trade when every chain leg is confirmed.

Every step that talks to the chain is a compare-and-set on the exact state it read (status and
tx hash): a duplicate or stale task can never act twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.actors import Actor, stamp_history
from common.choices import AccountKind, CaseKind, InstructionStatus, LockStatus
from common.exceptions import IllegalTransition
from common.money import format_amount
from common.ports import case_open, escalate, notify
from ledger.services.audit import LogEntry, transition_log_append, transition_log_deferred
from ledger.services.ledger import account_for, ledger_charge, ledger_post, ledger_post_journal, system_account_for
from rails.base import RailError
from rails.base import TransferStatus as ChainStatus
from rails.crypto.registry import chain_rail_of
from settlement.crypto.trades import NETWORK_FEES, SettlementHalted, _fail_legs, on_chain, quantize_up
from settlement.crypto.wallets import wallet_nonce_give_back, wallet_nonce_taken
from settlement.locking import lock_transfers
from settlement.models import ChainTransfer, SettlementInstruction
from settlement.models.pipeline import TransferStatus as TS
from settlement.services.fees import gas_charge_record
from settlement.services.halts import PIPELINE, active_halt, halt_open
from settlement.services.instructions import _settle_locked, _trade_legs_for_update

logger = logging.getLogger(__name__)
S = InstructionStatus


# --- step 3: broadcast ------------------------------------------------------------------------------


def transfer_broadcast(*, transfer: ChainTransfer, actor: Actor = PIPELINE) -> ChainTransfer:
    """Send the stored transaction (again, if need be). Transient rail errors propagate for retry."""
    transfer = ChainTransfer.objects.select_related("instruction__asset").get(pk=transfer.pk)
    if transfer.status not in (TS.SIGNED, TS.BROADCAST):
        return transfer
    if active_halt(transfer.instruction.asset) is not None:
        raise SettlementHalted(f"{transfer.instruction.asset.code} settlement is halted")
    sent = transfer.tx_hash
    chain_rail_of(transfer.chain).broadcast(transfer.raw_tx)  # outside any transaction
    with transaction.atomic():
        transfer = lock_transfers(pk=transfer.pk).get()
        if transfer.status not in (TS.SIGNED, TS.BROADCAST) or transfer.tx_hash != sent:
            return transfer  # finished, or re-signed meanwhile: whoever re-signed sends the new bytes
        from_status = transfer.status
        transfer.broadcast_count += 1
        transfer.unseen_checks = 0
        transfer.last_error = ""
        if transfer.status == TS.SIGNED:
            transfer.mark_broadcast()
        stamp_history(transfer, actor=actor, reason="broadcast")
        transfer.save()
        transition_log_append(
            entries=[
                LogEntry(
                    "chaintransfer",
                    transfer.pk,
                    from_status,
                    transfer.status,
                    "broadcast" if transfer.broadcast_count == 1 else "rebroadcast (same signed bytes, same nonce)",
                    {"tx": transfer.tx_hash, "count": transfer.broadcast_count},
                )
            ],
            actor=actor,
        )
        return transfer


def transfer_record_error(*, transfer: ChainTransfer, error: str) -> None:
    ChainTransfer.objects.filter(pk=transfer.pk).update(last_error=error[:2000], updated_at=timezone.now())


def transfer_give_up(*, transfer: ChainTransfer, reason: str, actor: Actor = PIPELINE) -> ChainTransfer:
    """Broadcast retries are exhausted. If the chain knows the transaction after all, keep waiting
    for it. Only if the chain says these bytes can never land any more (unknown *and* expired,
    e.g. a Solana blockhash past its validity) do both legs fail (locks voided). Otherwise (it
    could still land, or the chain cannot be asked) the case goes to operations and everything
    stays as it is: the locks are in-flight work and do not expire by time.

    A compare-and-set on what it observed: nothing happens if the transfer moved on or was
    re-signed (another hash) meanwhile."""
    seen_status, seen_hash = transfer.status, transfer.tx_hash
    try:
        status: ChainStatus | None = chain_rail_of(transfer.chain).status(
            tx_hash=seen_hash, sender=transfer.from_address, raw=transfer.raw_tx
        )
    except RailError:
        status = None
    if status is not None and status.found:
        return transfer
    never_lands = status is not None and status.expired
    with transaction.atomic(), transition_log_deferred():  # one head lock, at the end
        legs = _trade_legs_for_update(transfer.instruction.trade)
        transfer = lock_transfers(pk=transfer.pk).get()
        if transfer.status != seen_status or transfer.tx_hash != seen_hash:
            return transfer
        if never_lands:
            _transfer_fail(transfer, reason=reason, actor=actor)
            _fail_legs(legs, reason=reason, actor=actor)
            escalate(transfer.instruction, reason=f"broadcast gave up: {reason}")
        else:
            escalate(
                transfer.instruction,
                reason=f"broadcast gave up: {reason}; the transaction may still land, funds stay locked",
            )
        return transfer


def transfer_reject(*, transfer: ChainTransfer, reason: str, actor: Actor = PIPELINE) -> ChainTransfer:
    """The node refused the stored transaction for good (``RailRejected``: e.g. the wallet is short
    on chain, or the fee cap is below the base fee). A transaction never accepted (signed) fails
    with both legs, every lock released, and a case; one that was accepted before (broadcast) may
    still land, so it only gets a case and keeps its locks. Compare-and-set on status and hash."""
    seen_status, seen_hash = transfer.status, transfer.tx_hash
    with transaction.atomic(), transition_log_deferred():  # one head lock, at the end
        legs = _trade_legs_for_update(transfer.instruction.trade)
        transfer = lock_transfers(pk=transfer.pk).get()
        if transfer.status != seen_status or transfer.tx_hash != seen_hash:
            return transfer
        if transfer.status == TS.SIGNED:
            reason = f"rejected by the chain: {reason}"
            _transfer_fail(transfer, reason=reason, actor=actor)
            _fail_legs(legs, reason=reason, actor=actor)
            escalate(transfer.instruction, reason=reason)
        elif transfer.status == TS.BROADCAST:
            escalate(transfer.instruction, reason=f"rebroadcast rejected by the chain: {reason}")
        return transfer


def _transfer_fail(transfer: ChainTransfer, *, reason: str, actor: Actor) -> None:
    """Mark a transfer that never reached the chain failed and give its nonce back if it was the
    wallet's last one (otherwise later transactions wait on the gap: the case says so)."""
    from_status = transfer.status
    transfer.mark_failed()
    transfer.last_error = reason
    stamp_history(transfer, actor=actor, reason=reason[:100])
    transfer.save()
    transition_log_append(
        entries=[LogEntry("chaintransfer", transfer.pk, from_status, TS.FAILED, reason, {"nonce": transfer.nonce})],
        actor=actor,
    )
    wallet_nonce_give_back(
        chain=transfer.chain,
        address=transfer.from_address,
        nonce=transfer.nonce,
        state_before=transfer.wallet_state_before,
    )


# --- step 4: confirmations and settlement ----------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    state: str  # settled | confirmed | waiting | rebroadcast | resigned | double_spend | reverted | done
    confirmations: int = 0


def transfer_check(*, transfer: ChainTransfer, actor: Actor = PIPELINE) -> CheckOutcome:
    """Look at the chain once and act: settle, keep waiting, rebroadcast a dropped or reorged
    transaction (same bytes, same nonce), or halt on a double spend."""
    transfer = ChainTransfer.objects.select_related("instruction__asset", "instruction__trade").get(pk=transfer.pk)
    if transfer.status != TS.BROADCAST:
        return CheckOutcome("done")
    status: ChainStatus = chain_rail_of(transfer.chain).status(
        tx_hash=transfer.tx_hash, sender=transfer.from_address, raw=transfer.raw_tx
    )
    asset = transfer.instruction.asset
    if status.found and status.block_number is not None:
        if status.succeeded is False:
            escalate(transfer.instruction, reason=f"transaction {transfer.tx_hash} reverted on chain")
            return CheckOutcome("reverted")
        if status.confirmations >= asset.required_confirmations:
            settled = transfer_confirm(transfer=transfer, status=status, actor=actor)
            return CheckOutcome("settled" if settled else "confirmed", status.confirmations)
        ChainTransfer.objects.filter(pk=transfer.pk, status=TS.BROADCAST, tx_hash=transfer.tx_hash).update(
            confirmations=status.confirmations,
            block_number=status.block_number,
            unseen_checks=0,
            updated_at=timezone.now(),  # polled: not stuck (the sweeper goes by updated_at)
        )
        return CheckOutcome("waiting", status.confirmations)
    if status.found:  # in the mempool
        ChainTransfer.objects.filter(pk=transfer.pk, status=TS.BROADCAST).update(updated_at=timezone.now())
        return CheckOutcome("waiting")
    if status.double_spent(transfer.nonce):
        transfer_double_spent(transfer=transfer, sender_nonce=status.sender_nonce or 0, actor=actor)
        return CheckOutcome("double_spend")
    if status.expired:  # can never land any more: safe to sign a replacement
        resigned = transfer_resign(transfer=transfer, actor=actor)  # no-op unless still the hash we saw
        transfer_broadcast(transfer=resigned, actor=actor)
        return CheckOutcome("resigned")
    # Unknown to the node: dropped from the mempool, or its block was reorganised away.
    unseen = transfer.unseen_checks + 1
    counted = ChainTransfer.objects.filter(pk=transfer.pk, status=TS.BROADCAST, tx_hash=transfer.tx_hash).update(
        unseen_checks=unseen, confirmations=0, block_number=None, updated_at=timezone.now()
    )
    if counted and unseen >= settings.CLEARHOUSE_DROPPED_AFTER_CHECKS:
        transfer_broadcast(transfer=transfer, actor=actor)
        return CheckOutcome("rebroadcast")
    return CheckOutcome("waiting")


def transfer_resign(*, transfer: ChainTransfer, actor: Actor = PIPELINE) -> ChainTransfer:
    """Replace a signed transaction the chain can no longer accept (Solana: its blockhash expired
    and the cluster never saw it) with a new signature for the same transfer, nonce and
    reference. Only called once the rail says the old one can never land, so at most one of the
    two versions can ever move value.

    A compare-and-set on what the caller observed: ``transfer`` is the row as the caller read it
    before asking the chain, and nothing is signed unless the stored row still has that status
    and that very ``tx_hash``. A duplicate or stale check (the sweeper and the poller racing) finds
    the hash already replaced and does nothing, so one expiry yields one replacement."""
    seen_status, seen_hash = transfer.status, transfer.tx_hash
    with transaction.atomic():
        transfer = lock_transfers(related=("instruction__fee_lock",), pk=transfer.pk).get()
        if transfer.status not in (TS.SIGNED, TS.BROADCAST):
            return transfer
        if transfer.status != seen_status or transfer.tx_hash != seen_hash:
            return transfer  # someone else acted on this observation already
        leg = transfer.instruction
        if leg.fee_lock is None:  # never: a leg is signed only once its network fee is locked
            raise ValueError(f"{leg.reference} has no network-fee lock")
        signed = chain_rail_of(transfer.chain).sign_transfer(
            from_address=transfer.from_address,
            to_address=transfer.to_address,
            amount=transfer.amount,
            nonce=transfer.nonce,
            fee_cap=leg.fee_lock.amount,
            state=transfer.wallet_state_before,
            reference=f"{leg.reference}:a{leg.attempt}",
        )
        previous = transfer.tx_hash
        transfer.tx_hash, transfer.raw_tx, transfer.fee_cap = signed.tx_hash, signed.raw, signed.fee_cap
        transfer.resign_count += 1
        transfer.unseen_checks = 0
        reason = f"re-signed: {previous} expired without landing"
        stamp_history(transfer, actor=actor, reason=reason[:100])
        transfer.save()
        transition_log_append(
            entries=[
                LogEntry("chaintransfer", transfer.pk, transfer.status, transfer.status, reason, {"tx": signed.tx_hash})
            ],
            actor=actor,
        )
        return transfer


def transfer_confirm(*, transfer: ChainTransfer, status: ChainStatus, actor: Actor = PIPELINE) -> bool:
    """Record the confirmation of one transfer; when every chain leg of the trade is confirmed,
    settle the whole trade in the same transaction. Returns True when the trade settled.

    ``status`` is what the chain said of ``transfer.tx_hash`` as the caller read it: a transfer
    re-signed meanwhile (another hash) is not confirmed by it."""
    seen_hash = transfer.tx_hash
    with transaction.atomic(), transition_log_deferred():  # one head lock, at the end
        legs = _trade_legs_for_update(transfer.instruction.trade)
        transfer = lock_transfers(pk=transfer.pk).get()
        if transfer.status == TS.BROADCAST and transfer.tx_hash != seen_hash:
            return False
        if transfer.status == TS.BROADCAST:
            transfer.mark_confirmed()
            transfer.fee = status.fee
            transfer.confirmations = status.confirmations
            transfer.block_number = status.block_number
            stamp_history(transfer, actor=actor, reason="confirmed")
            transfer.save()
            transition_log_append(
                entries=[
                    LogEntry(
                        "chaintransfer",
                        transfer.pk,
                        TS.BROADCAST,
                        TS.CONFIRMED,
                        "confirmed",
                        {"block": status.block_number, "confirmations": status.confirmations, "fee": status.fee},
                    )
                ],
                actor=actor,
            )
        attempt_of = {leg.pk: leg.attempt for leg in legs}
        current = {
            t.instruction_id: t
            for t in ChainTransfer.objects.filter(instruction__in=legs, status=TS.CONFIRMED)
            if t.attempt == attempt_of[t.instruction_id]
        }
        if any(on_chain(leg.asset) and leg.pk not in current for leg in legs):
            return False  # another chain leg is still on its way
        if all(leg.status == S.SETTLED for leg in legs):
            return True
        _settle_all(legs, transfers=current, actor=actor)
        return True


def _settle_all(legs: list[SettlementInstruction], *, transfers: dict[int, ChainTransfer], actor: Actor) -> None:
    for leg in legs:
        if leg.status != S.PROCESSING:
            raise IllegalTransition(f"instruction {leg.pk} is {leg.status}, not processing")
    for leg in legs:
        transfer = transfers.get(leg.pk)
        if transfer is not None:
            _book_gas(leg, transfer=transfer, actor=actor)
        _settle_locked(
            leg,
            actor=actor,
            reason="settled on chain (DvP)" if transfer else "settled on the internal ledger (DvP)",
            metadata={"tx": transfer.tx_hash, "block": transfer.block_number} if transfer else None,
        )
    trade = legs[0].trade
    notify(
        event="settled",
        instruction=legs[0],
        message=f"trade {trade} settled: "
        + ", ".join(f"{leg.leg} {format_amount(leg.amount, leg.asset.precision)} {leg.asset.code}" for leg in legs),
        dedupe_key=f"settled:{trade.pk}:a{legs[0].attempt}",
        participant_ids=[trade.buyer_id, trade.seller_id],
        payload={
            "trade": trade.external_id,
            "source": trade.source,
            "legs": [
                {"leg": leg.leg, "asset": leg.asset.code, "amount": format_amount(leg.amount, leg.asset.precision)}
                for leg in legs
            ],
            "tx": [t.tx_hash for t in transfers.values()],
        },
    )


def _book_gas(leg: SettlementInstruction, *, transfer: ChainTransfer, actor: Actor) -> None:
    """Book the network fee the chain took for ``transfer``: out of the leg's fee reserve (the
    rest of the reserve goes back). The chain spent it whatever the ledger holds, so should the
    reserve have been released (it must not be: in-flight locks never expire by time), the fee
    comes from the payer's available balance and an investigation case is opened: the ledger
    follows the chain, it never silently keeps gas the wallet no longer has."""
    fee_account = system_account_for(code=f"{NETWORK_FEES}:{transfer.chain}", asset=leg.asset)
    spent = quantize_up(transfer.fee or Decimal(0), leg.asset.precision)
    reserve = leg.fee_lock
    if reserve is not None:
        reserve.refresh_from_db(fields=("status",))
    if reserve is not None and reserve.status == LockStatus.PENDING:
        spent = min(spent, reserve.amount)
        posted = ledger_post(
            lock=reserve, to_account=fee_account, actor=actor, amount=spent, reason=f"network fee of {transfer.tx_hash}"
        )
        journal = ledger_post_journal(posted)  # the journal ledger_post wrote: no query
    elif spent > 0:
        reason = f"network fee of {transfer.tx_hash} booked from available: its reserve had been released"
        journal = ledger_charge(
            debit=account_for(owner=leg.payer, asset=leg.asset, kind=AccountKind.AVAILABLE),
            credit=fee_account,
            amount=spent,
            reference=f"{leg.reference}:a{leg.attempt}:gas",
            actor=actor,
            memo=reason,
        )
        case_open(
            kind=CaseKind.INVESTIGATION,
            reason=f"instruction {leg.pk}: {reason}",
            instruction=leg,
            asset=leg.asset,
            dedupe_key=f"gas-unreserved:{transfer.pk}",
        )
    else:
        return
    gas_charge_record(instruction=leg, fee=spent, journal=journal, tx_hash=transfer.tx_hash)


def transfer_double_spent(*, transfer: ChainTransfer, sender_nonce: int, actor: Actor = PIPELINE) -> None:
    """Our transaction's nonce was consumed by another transaction: ours can never confirm.

    The transfer and both legs fail (locks voided: our value never moved), the asset's settlement
    halts until operations lift it, an investigation case is opened and everyone is told.
    Compare-and-set on what the caller observed: nothing happens if the transfer was re-signed
    (another hash) or moved on meanwhile.
    """
    seen_hash = transfer.tx_hash
    asset = transfer.instruction.asset
    reason = (
        f"double spend: what transfer #{transfer.nonce} of {transfer.from_address} spends was used by "
        f"another transaction; ours ({transfer.tx_hash}) can never confirm"
    )
    with transaction.atomic(), transition_log_deferred():  # one head lock, at the end
        legs = _trade_legs_for_update(transfer.instruction.trade)
        transfer = lock_transfers(pk=transfer.pk).get()
        if transfer.status != TS.BROADCAST or transfer.tx_hash != seen_hash:
            return
        _transfer_fail(transfer, reason=reason, actor=actor)
        wallet_nonce_taken(chain=transfer.chain, address=transfer.from_address, sender_nonce=sender_nonce)
        halt_open(asset=asset, reason=reason, actor=actor)
        case_open(
            kind=CaseKind.INVESTIGATION,
            reason=reason,
            instruction=transfer.instruction,
            asset=asset,
            dedupe_key=f"double-spend:{transfer.pk}",
        )
        _fail_legs(legs, reason=reason, actor=actor)
