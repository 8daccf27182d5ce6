"""Crypto T+0 pipeline: lock both legs → sign and store the chain transaction → broadcast →
wait for confirmations → post the ledger → settled → notify.

Each step is a service that re-reads state under row locks and does nothing when its work is
already done, so a task may run twice, or be re-dispatched by the sweeper after a crash, without
double-broadcasting or double-posting. Network calls never happen inside a database
transaction: the signed transaction (hash, nonce, raw bytes) is committed first and broadcast
afterwards, and every later broadcast sends those very bytes.

Legs whose asset has a chain rail move on chain; the other leg (typically fiat cash) moves on
the internal ledger in the same transaction that records the chain leg's confirmation:
delivery versus payment, both legs settle or neither does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from rails.base import RailError, RailRejected, RailTransientError
from rails.base import TransferStatus as ChainStatus
from rails.crypto.registry import chain_rail
from settlement.choices import AssetKind, InstructionStatus, LockStatus
from settlement.exceptions import DomainError, IllegalTransition, InsufficientFunds, ValidationFailed
from settlement.models import (
    Asset,
    ChainTransfer,
    Notification,
    ReviewCase,
    SettlementHalt,
    SettlementInstruction,
    Trade,
    WalletAddress,
)
from settlement.models.pipeline import Audience, CaseKind, CaseStatus, DeliveryStatus
from settlement.models.pipeline import TransferStatus as TS
from settlement.money import format_amount
from settlement.services.actors import Actor, SystemActor, actor_label, stamp_history
from settlement.services.audit import LogEntry, transition_log_append, transition_run
from settlement.services.fees import gas_charge_record
from settlement.services.instructions import _apply, _hold_and_lock, _settle_locked, _trade_legs_for_update
from settlement.services.ledger import ledger_lock, ledger_post, ledger_post_journal, ledger_void, system_account_for

logger = logging.getLogger(__name__)
S = InstructionStatus
PIPELINE = SystemActor("crypto-pipeline")
NETWORK_FEES = "network-fees"


class SettlementHalted(DomainError):
    code = "settlement_halted"
    http_status = 409


class WalletMissing(DomainError):
    code = "wallet_missing"


def on_chain(asset: Asset) -> bool:
    return asset.kind == AssetKind.CRYPTO and chain_rail(asset.chain) is not None


def quantize_up(value: Decimal, precision: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_CEILING)


# --- notifications, cases, halts ---------------------------------------------------------------


def notify(
    *,
    event: str,
    instruction: SettlementInstruction | None,
    message: str,
    dedupe_key: str,
    participant_ids: Iterable[int] = (),
    ops: bool = False,
    payload: dict | None = None,
) -> list[Notification]:
    """Store notifications (idempotent by ``dedupe_key``). Participants with a webhook URL get it
    POSTed after commit; undelivered ones are retried by the sweeper."""
    from settlement.models import Participant

    hooks = dict(Participant.objects.filter(pk__in=list(participant_ids)).values_list("pk", "webhook_url"))
    rows = [
        Notification(
            audience=Audience.PARTICIPANT,
            participant_id=pid,
            event=event,
            instruction=instruction,
            message=message,
            payload=payload or {},
            dedupe_key=f"{dedupe_key}:p{pid}",
            delivery_status=DeliveryStatus.PENDING if hooks.get(pid) else DeliveryStatus.NONE,
        )
        for pid in participant_ids
    ]
    if ops:
        rows.append(
            Notification(
                audience=Audience.OPS,
                event=event,
                instruction=instruction,
                message=message,
                payload=payload or {},
                dedupe_key=f"{dedupe_key}:ops",
            )
        )
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    keys = [row.dedupe_key for row in rows if row.delivery_status == DeliveryStatus.PENDING]
    if keys:
        from settlement.dispatch import dispatch_webhooks

        transaction.on_commit(lambda: dispatch_webhooks(dedupe_keys=keys))
    return rows


def case_open(
    *,
    kind: str,
    reason: str,
    dedupe_key: str,
    instruction: SettlementInstruction | None = None,
    asset: Asset | None = None,
) -> ReviewCase:
    """Open a manual-review case (once per ``dedupe_key``) and tell operations. Its own atomic
    block: callers outside a transaction (a pipeline step that just caught a rail error) get the
    case, its notification and its log entry together or not at all."""
    with transaction.atomic():
        case, created = ReviewCase.objects.get_or_create(
            dedupe_key=dedupe_key[:200],
            defaults={"kind": kind, "reason": reason, "instruction": instruction, "asset": asset},
        )
        if created:
            from settlement.services.alerts import ops_alert

            notify(
                event=f"case_{kind}", instruction=instruction, message=reason, dedupe_key=f"case:{case.pk}", ops=True
            )
            ops_alert(
                title=f"Review case #{case.pk} ({kind})",
                body=reason,
                link=f"/admin/settlement/reviewcase/{case.pk}/change/",
                level="warning",
                roles=("operator",),
                dedupe_key=f"case:{case.pk}",
            )
            transition_log_append(
                entries=[LogEntry("reviewcase", case.pk, "", "open", reason, {"kind": kind})], actor=PIPELINE
            )
            logger.warning("review case %s opened (%s): %s", case.pk, kind, reason)
    return case


def escalate(instruction: SettlementInstruction, *, reason: str) -> ReviewCase:
    return case_open(
        kind=CaseKind.ESCALATION,
        reason=reason,
        instruction=instruction,
        dedupe_key=f"escalate:{instruction.pk}:a{instruction.attempt}:{reason[:80]}",
    )


def case_resolve(*, case: ReviewCase, actor: Actor, resolution: str) -> ReviewCase:
    if not resolution.strip():
        raise ValidationFailed("resolving a case needs a resolution note")
    with transaction.atomic():
        case = ReviewCase.objects.select_for_update().get(pk=case.pk)
        if case.status != CaseStatus.OPEN:
            raise IllegalTransition(f"case {case.pk} is already {case.status}")
        case.resolved_at = timezone.now()
        case.resolved_by = None if isinstance(actor, SystemActor) else actor
        case.resolution = resolution
        transition_run(case, case.mark_resolved, entity="reviewcase", actor=actor, reason=resolution)
        return case


def instruction_escalate(*, instruction: SettlementInstruction, actor: Actor, reason: str) -> ReviewCase:
    """Ops: put an instruction in the manual-review queue (an escalation case), whatever its
    status; one open escalation per instruction."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("escalating needs a reason")
    with transaction.atomic():
        instruction = SettlementInstruction.objects.select_for_update().get(pk=instruction.pk)
        cases = ReviewCase.objects.filter(instruction=instruction, kind=CaseKind.ESCALATION)
        open_case = cases.filter(status=CaseStatus.OPEN).first()
        if open_case is not None:
            raise IllegalTransition(f"instruction {instruction.pk} is already escalated (case {open_case.pk})")
        status = instruction.status
        case = case_open(
            kind=CaseKind.ESCALATION,
            reason=f"escalated by {actor_label(actor)}: {reason}",
            dedupe_key=f"escalation:instruction:{instruction.pk}:{cases.count() + 1}",
            instruction=instruction,
            asset=instruction.asset,
        )
        transition_log_append(
            entries=[LogEntry("instruction", instruction.pk, status, status, reason, {"case": case.pk})],
            actor=actor,
        )
        return case


def case_assign(*, case: ReviewCase, actor: Actor, reason: str = "taken") -> ReviewCase:
    """Ops: take a case (it shows as yours in the queue)."""
    with transaction.atomic():
        case = ReviewCase.objects.select_for_update().get(pk=case.pk)
        if case.status != CaseStatus.OPEN:
            raise IllegalTransition(f"case {case.pk} is already {case.status}")
        case.assignee = actor if not isinstance(actor, SystemActor) else None
        stamp_history(case, actor=actor, reason=reason)
        case.save(update_fields=("assignee",))
        transition_log_append(
            entries=[LogEntry("reviewcase", case.pk, "open", "open", reason, {"assignee": actor_label(actor)})],
            actor=actor,
        )
        return case


def active_halt(asset: Asset) -> SettlementHalt | None:
    return SettlementHalt.objects.filter(asset=asset, lifted_at__isnull=True).first()


def halt_open(*, asset: Asset, reason: str, actor: Actor) -> SettlementHalt:
    """Open the asset's circuit breaker: nothing more is signed or broadcast for it until lifted."""
    with transaction.atomic():
        halt = active_halt(asset)
        if halt is None:
            halt = SettlementHalt(asset=asset, reason=reason, opened_by=actor_label(actor))
            stamp_history(halt, actor=actor, reason=reason[:100])
            halt.save()
            transition_log_append(
                entries=[LogEntry("halt", halt.pk, "", "open", reason, {"asset": asset.code})], actor=actor
            )
            notify(
                event="halt",
                instruction=None,
                message=f"{asset.code} settlement halted: {reason}",
                dedupe_key=f"halt:{halt.pk}",
                ops=True,
            )
        return halt


def halt_lift(*, halt: SettlementHalt, actor: Actor, reason: str) -> SettlementHalt:
    if not reason.strip():
        raise ValidationFailed("lifting a halt needs a reason")
    with transaction.atomic():
        halt = SettlementHalt.objects.select_for_update().get(pk=halt.pk)
        if halt.lifted_at is not None:
            raise IllegalTransition(f"halt {halt.pk} was already lifted")
        halt.lifted_at = timezone.now()
        halt.lifted_by = None if isinstance(actor, SystemActor) else actor
        halt.lift_reason = reason
        stamp_history(halt, actor=actor, reason=reason[:100])
        halt.save()
        transition_log_append(entries=[LogEntry("halt", halt.pk, "open", "lifted", reason, {})], actor=actor)
        return halt


# --- failing a trade -----------------------------------------------------------------------------


def _fail_legs(legs: list[SettlementInstruction], *, reason: str, actor: Actor) -> None:
    """Void every pending lock (funds and fee reserve) of the trade's legs and fail them.
    Rows are already locked by the caller."""
    for leg in legs:
        if leg.status not in (S.PENDING, S.LOCKED, S.PROCESSING):
            continue
        for lock in (leg.lock, leg.fee_lock):
            if lock is not None and lock.status == LockStatus.PENDING:
                ledger_void(lock=lock, actor=actor, reason=f"void: {reason}"[:200])
        leg.failure_reason = reason
        _apply(leg, leg.mark_failed, actor=actor, reason=reason, update_fields=("failure_reason",))
    trade = legs[0].trade
    notify(
        event="failed",
        instruction=legs[0],
        message=f"trade {trade} failed: {reason}",
        dedupe_key=f"failed:{trade.pk}:a{legs[0].attempt}",
        participant_ids=[trade.buyer_id, trade.seller_id],
        payload={"trade": trade.external_id, "source": trade.source, "reason": reason},
    )


# --- step 1: lock both legs ----------------------------------------------------------------------


def fee_reserves_for(assets: Iterable[Asset]) -> dict[int, Decimal]:
    """Network-fee reserve per on-chain asset, asked of the chain (call outside transactions)."""
    out: dict[int, Decimal] = {}
    for asset in assets:
        if asset.pk not in out and on_chain(asset):
            out[asset.pk] = quantize_up(chain_rail(asset.chain).fee_reserve(), asset.precision)
    return out


def crypto_trade_lock(
    *, trade: Trade, fee_reserves: dict[int, Decimal], actor: Actor = PIPELINE
) -> list[SettlementInstruction]:
    """pending → locked for both legs, plus a network-fee reserve on each on-chain leg's payer.

    Short of funds (either leg): both legs fail, no lock survives, both parties are notified.
    """
    with transaction.atomic():
        legs = _trade_legs_for_update(trade)
        if any(leg.status != S.PENDING for leg in legs):
            return legs
        try:
            with transaction.atomic():
                for leg in legs:
                    _hold_and_lock(leg, actor=actor, reason="lock funds (crypto DvP)", expires_at=None)
                    if on_chain(leg.asset):
                        reserve = fee_reserves[leg.asset_id]
                        leg.fee_lock = ledger_lock(
                            owner=leg.payer,
                            asset=leg.asset,
                            amount=reserve,
                            reference=f"{leg.reference}:a{leg.attempt}:fee",
                            actor=actor,
                        )
                        leg.save(update_fields=("fee_lock",))
        except InsufficientFunds as exc:
            legs = _trade_legs_for_update(trade)  # rolled back to pending with the savepoint
            _fail_legs(legs, reason=f"insufficient funds: {exc.message}", actor=actor)
        return legs


# --- step 2: sign and store the chain transaction -------------------------------------------------


def crypto_trade_prepare(*, trade: Trade, actor: Actor = PIPELINE) -> list[ChainTransfer]:
    """locked → processing: sign each on-chain leg's transaction and store it (not yet sent).

    While an asset of the trade is halted nothing is signed: the legs stay locked and are picked
    up again once the halt is lifted. Returns the trade's transfers still to broadcast/confirm.
    """
    with transaction.atomic():
        legs = _trade_legs_for_update(trade)
        if any(leg.status != S.LOCKED for leg in legs):
            return list(ChainTransfer.objects.filter(instruction__in=legs, status__in=[TS.SIGNED, TS.BROADCAST]))
        for leg in legs:
            if on_chain(leg.asset) and active_halt(leg.asset) is not None:
                raise SettlementHalted(f"{leg.asset.code} settlement is halted")
        transfers = [_sign_leg(leg, actor=actor) for leg in legs if on_chain(leg.asset)]
        for leg in legs:
            tx = [t.tx_hash for t in transfers if t.instruction_id == leg.pk]
            _apply(
                leg,
                leg.mark_processing,
                actor=actor,
                reason="transaction signed" if tx else "awaiting the chain leg (DvP)",
                metadata={"tx": tx} if tx else None,
            )
        if not transfers:  # every leg is on the internal ledger
            _settle_all(legs, transfers={}, actor=actor)
        return transfers


def _sign_leg(leg: SettlementInstruction, *, actor: Actor) -> ChainTransfer:
    chain = leg.asset.chain
    rail = chain_rail(chain)
    sender = WalletAddress.objects.select_for_update().filter(participant_id=leg.payer_id, chain=chain).first()
    receiver = WalletAddress.objects.filter(participant_id=leg.payee_id, chain=chain).first()
    if sender is None or receiver is None:
        raise WalletMissing(f"{leg.payer if sender is None else leg.payee} has no {chain} wallet")
    nonce = sender.next_nonce
    signed = rail.sign_transfer(
        from_address=sender.address,
        to_address=receiver.address,
        amount=leg.amount,
        nonce=nonce,
        fee_cap=leg.fee_lock.amount,
        state=sender.chain_state,
        reference=f"{leg.reference}:a{leg.attempt}",
    )
    WalletAddress.objects.filter(pk=sender.pk).update(next_nonce=nonce + 1, chain_state=signed.state_after)
    transfer = ChainTransfer(
        instruction=leg,
        attempt=leg.attempt,
        chain=chain,
        from_address=sender.address,
        to_address=receiver.address,
        amount=leg.amount,
        nonce=signed.nonce,
        tx_hash=signed.tx_hash,
        raw_tx=signed.raw,
        fee_cap=signed.fee_cap,
        wallet_state_before=sender.chain_state,
    )
    stamp_history(transfer, actor=actor, reason="signed")
    transfer.save()
    transition_log_append(
        entries=[
            LogEntry("chaintransfer", transfer.pk, "", TS.SIGNED, "signed", {"tx": signed.tx_hash, "nonce": nonce})
        ],
        actor=actor,
    )
    return transfer


# --- step 3: broadcast ------------------------------------------------------------------------------


def transfer_broadcast(*, transfer: ChainTransfer, actor: Actor = PIPELINE) -> ChainTransfer:
    """Send the stored transaction (again, if need be). Transient rail errors propagate for retry."""
    transfer = ChainTransfer.objects.select_related("instruction__asset").get(pk=transfer.pk)
    if transfer.status not in (TS.SIGNED, TS.BROADCAST):
        return transfer
    if active_halt(transfer.instruction.asset) is not None:
        raise SettlementHalted(f"{transfer.instruction.asset.code} settlement is halted")
    chain_rail(transfer.chain).broadcast(transfer.raw_tx)  # outside any transaction
    with transaction.atomic():
        transfer = ChainTransfer.objects.select_for_update().get(pk=transfer.pk)
        if transfer.status not in (TS.SIGNED, TS.BROADCAST):
            return transfer
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
    for it; if the chain says it has never seen it, fail both legs (locks voided) and escalate;
    if the chain cannot be asked, escalate and leave everything as it is."""
    try:
        seen: bool | None = (
            chain_rail(transfer.chain)
            .status(tx_hash=transfer.tx_hash, sender=transfer.from_address, raw=transfer.raw_tx)
            .found
        )
    except RailError:
        seen = None
    if seen:
        return transfer
    with transaction.atomic():
        legs = _trade_legs_for_update(transfer.instruction.trade)
        transfer = ChainTransfer.objects.select_for_update().get(pk=transfer.pk)
        if seen is False and transfer.status in (TS.SIGNED, TS.BROADCAST):
            _transfer_fail(transfer, reason=reason, actor=actor)
            _fail_legs(legs, reason=reason, actor=actor)
        escalate(transfer.instruction, reason=f"broadcast gave up: {reason}")
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
    WalletAddress.objects.filter(
        chain=transfer.chain, address=transfer.from_address, next_nonce=transfer.nonce + 1
    ).update(next_nonce=transfer.nonce, chain_state=transfer.wallet_state_before)


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
    status: ChainStatus = chain_rail(transfer.chain).status(
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
        # updated_at: a transfer someone is watching is not idle (the sweeper leaves it alone)
        ChainTransfer.objects.filter(pk=transfer.pk).update(
            confirmations=status.confirmations,
            block_number=status.block_number,
            unseen_checks=0,
            updated_at=timezone.now(),
        )
        return CheckOutcome("waiting", status.confirmations)
    if status.found:  # in the mempool
        ChainTransfer.objects.filter(pk=transfer.pk).update(updated_at=timezone.now())
        return CheckOutcome("waiting")
    if status.double_spent(transfer.nonce):
        transfer_double_spent(transfer=transfer, sender_nonce=status.sender_nonce or 0, actor=actor)
        return CheckOutcome("double_spend")
    if status.expired:  # can never land any more: safe to sign a replacement
        transfer_resign(transfer=transfer, actor=actor)
        transfer_broadcast(transfer=transfer, actor=actor)
        return CheckOutcome("resigned")
    # Unknown to the node: dropped from the mempool, or its block was reorganised away.
    unseen = transfer.unseen_checks + 1
    ChainTransfer.objects.filter(pk=transfer.pk).update(
        unseen_checks=unseen, confirmations=0, block_number=None, updated_at=timezone.now()
    )
    if unseen >= settings.CLEARHOUSE_DROPPED_AFTER_CHECKS:
        transfer_broadcast(transfer=transfer, actor=actor)
        return CheckOutcome("rebroadcast")
    return CheckOutcome("waiting")


def transfer_resign(*, transfer: ChainTransfer, actor: Actor = PIPELINE) -> ChainTransfer:
    """Replace a signed transaction the chain can no longer accept (Solana: its blockhash expired
    and the cluster never saw it) with a new signature for the same transfer, nonce and
    reference. Only called once the rail says the old one can never land, so at most one of the
    two versions can ever move value."""
    with transaction.atomic():
        transfer = (
            ChainTransfer.objects.select_for_update(of=("self",))
            .select_related("instruction__fee_lock")
            .get(pk=transfer.pk)
        )
        if transfer.status not in (TS.SIGNED, TS.BROADCAST):
            return transfer
        leg = transfer.instruction
        signed = chain_rail(transfer.chain).sign_transfer(
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
    settle the whole trade in the same transaction. Returns True when the trade settled."""
    with transaction.atomic():
        legs = _trade_legs_for_update(transfer.instruction.trade)
        transfer = ChainTransfer.objects.select_for_update().get(pk=transfer.pk)
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
        if transfer is not None and leg.fee_lock is not None and leg.fee_lock.status == LockStatus.PENDING:
            fee_account = system_account_for(code=f"{NETWORK_FEES}:{transfer.chain}", asset=leg.asset)
            spent = min(quantize_up(transfer.fee or Decimal(0), leg.asset.precision), leg.fee_lock.amount)
            ledger_post(
                lock=leg.fee_lock,
                to_account=fee_account,
                actor=actor,
                amount=spent,
                reason=f"network fee of {transfer.tx_hash}",
            )
            gas_charge_record(
                instruction=leg,
                fee=spent,
                journal=ledger_post_journal(leg.fee_lock),
                tx_hash=transfer.tx_hash,
            )
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


def transfer_double_spent(*, transfer: ChainTransfer, sender_nonce: int, actor: Actor = PIPELINE) -> None:
    """Our transaction's nonce was consumed by another transaction: ours can never confirm.

    The transfer and both legs fail (locks voided: our value never moved), the asset's settlement
    halts until operations lift it, an investigation case is opened and everyone is told.
    """
    asset = transfer.instruction.asset
    reason = (
        f"double spend: what transfer #{transfer.nonce} of {transfer.from_address} spends was used by "
        f"another transaction; ours ({transfer.tx_hash}) can never confirm"
    )
    with transaction.atomic():
        legs = _trade_legs_for_update(transfer.instruction.trade)
        transfer = ChainTransfer.objects.select_for_update().get(pk=transfer.pk)
        if transfer.status != TS.BROADCAST:
            return
        _transfer_fail(transfer, reason=reason, actor=actor)
        WalletAddress.objects.filter(
            chain=transfer.chain, address=transfer.from_address, next_nonce__lt=sender_nonce
        ).update(next_nonce=sender_nonce)
        # UTXO chains: the change output our next transaction would spend is gone with ours;
        # the next signature starts again from what the node lists as unspent.
        WalletAddress.objects.filter(chain=transfer.chain, address=transfer.from_address).update(chain_state={})
        halt_open(asset=asset, reason=reason, actor=actor)
        case_open(
            kind=CaseKind.INVESTIGATION,
            reason=reason,
            instruction=transfer.instruction,
            asset=asset,
            dedupe_key=f"double-spend:{transfer.pk}",
        )
        _fail_legs(legs, reason=reason, actor=actor)


# --- orchestration (what one task run does for a batch of trades) ----------------------------------


@dataclass
class AdvanceResult:
    broadcast: list[int] = field(default_factory=list)  # transfers to watch for confirmations
    retry: list[int] = field(default_factory=list)  # transfers whose broadcast failed transiently
    settled: int = 0
    failed: int = 0
    halted: int = 0


def crypto_trades_advance(*, trade_ids: list[int], actor: Actor = PIPELINE) -> AdvanceResult:
    """Take each trade as far as it can go now: lock, sign, broadcast. Safe to call again for
    the same trades at any point (each step is a no-op once done)."""
    result = AdvanceResult()
    trades = list(
        Trade.objects.filter(pk__in=trade_ids).select_related("instrument__base", "instrument__quote").order_by("pk")
    )
    assets = {a.pk: a for t in trades for a in (t.instrument.base, t.instrument.quote)}
    reserves = fee_reserves_for(assets.values())  # may raise RailTransientError: the task retries
    to_send: list[ChainTransfer] = []
    for trade in trades:
        legs = crypto_trade_lock(trade=trade, fee_reserves=reserves, actor=actor)
        if any(leg.status == S.FAILED for leg in legs):
            result.failed += 1
            continue
        try:
            to_send.extend(crypto_trade_prepare(trade=trade, actor=actor))
        except SettlementHalted:
            result.halted += 1
        except WalletMissing as exc:
            escalate(legs[0], reason=exc.message)
        except RailRejected as exc:  # the chain cannot take this transfer as built (e.g. wallet short on chain)
            escalate(legs[0], reason=f"could not sign: {exc}")
    # nonce order per sender, so a node never sees a gap
    for transfer in sorted(to_send, key=lambda t: (t.from_address, t.nonce)):
        if transfer.status == TS.BROADCAST:
            result.broadcast.append(transfer.pk)
            continue
        try:
            transfer_broadcast(transfer=transfer, actor=actor)
            result.broadcast.append(transfer.pk)
        except SettlementHalted:
            result.halted += 1
        except RailTransientError as exc:
            transfer_record_error(transfer=transfer, error=str(exc))
            result.retry.append(transfer.pk)
    return result


# --- sweeper ---------------------------------------------------------------------------------------


@dataclass
class StuckWork:
    trades: list[int]  # crypto T+0 trades with legs pending/locked
    signed: list[int]  # transfers signed but never acknowledged by the node
    broadcast: list[int]  # transfers waiting for confirmations for too long


def stuck_crypto_work(*, older_than_seconds: int, limit: int = 1000) -> StuckWork:
    """Work that a lost task, a killed worker or a restarted broker left behind."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    open_case = Q(instruction__cases__status=CaseStatus.OPEN)
    trades = list(
        SettlementInstruction.objects.filter(
            updated_at__lt=cutoff,
            status__in=[S.PENDING, S.LOCKED],
            trade__instrument__base__kind=AssetKind.CRYPTO,
            trade__instrument__base__settlement_cycle=0,
        )
        .exclude(cases__status=CaseStatus.OPEN)
        .order_by()
        .values_list("trade_id", flat=True)
        .distinct()[:limit]
    )

    def idle_transfers(status: str) -> list[int]:
        return list(
            ChainTransfer.objects.filter(status=status, updated_at__lt=cutoff)
            .exclude(open_case)
            .order_by()
            .values_list("pk", flat=True)
            .distinct()[:limit]
        )

    return StuckWork(trades=trades, signed=idle_transfers(TS.SIGNED), broadcast=idle_transfers(TS.BROADCAST))
