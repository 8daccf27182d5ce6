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

This module holds steps 1-2 (lock, sign), the orchestration of a batch and the sweeper's query;
``chain_transfers`` the chain steps after signing, ``crypto_trades`` failing, expiring and
cancelling a whole trade, ``cases`` notifications, review cases and halts. Every public name is
importable from here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from common.actors import Actor, stamp_history
from common.choices import CaseStatus, InstructionStatus
from common.exceptions import InsufficientFunds
from common.ports import case_open, escalate, notify
from ledger.services.audit import LogEntry, transition_log_append, transition_log_deferred
from ledger.services.ledger import ledger_lock
from rails.base import RailRejected, RailTransientError
from rails.crypto.registry import chain_rail_of
from reference.models import Asset, WalletAddress
from settlement.crypto.trades import (
    NETWORK_FEES,
    TRANSIENT_DB_ERRORS,
    SettlementHalted,
    WalletMissing,
    _fail_legs,
    crypto_trade_cancel,
    crypto_trade_expire,
    crypto_trade_fail,
    on_chain,
    quantize_up,
)
from settlement.crypto.transfers import (
    CheckOutcome,
    _settle_all,
    transfer_broadcast,
    transfer_check,
    transfer_confirm,
    transfer_double_spent,
    transfer_give_up,
    transfer_record_error,
    transfer_reject,
    transfer_resign,
)
from settlement.locking import lock_wallets
from settlement.models import ChainTransfer, SettlementInstruction, Trade
from settlement.models.pipeline import TransferStatus as TS
from settlement.routing import settles_gross_q
from settlement.services.halts import PIPELINE, active_halt, halt_lift, halt_open
from settlement.services.instructions import _apply, _hold_and_lock, _known_accounts, _trade_legs_for_update

# The pipeline's public names, wherever they are defined (callers import them from here).
__all__ = [
    "NETWORK_FEES",
    "PIPELINE",
    "TRANSIENT_DB_ERRORS",
    "AdvanceResult",
    "CheckOutcome",
    "SettlementHalted",
    "StuckWork",
    "WalletMissing",
    "active_halt",
    "case_open",
    "crypto_trade_cancel",
    "crypto_trade_expire",
    "crypto_trade_fail",
    "crypto_trade_lock",
    "crypto_trade_prepare",
    "crypto_trades_advance",
    "escalate",
    "fee_reserves_for",
    "halt_lift",
    "halt_open",
    "notify",
    "on_chain",
    "quantize_up",
    "stuck_crypto_work",
    "transfer_broadcast",
    "transfer_check",
    "transfer_confirm",
    "transfer_double_spent",
    "transfer_give_up",
    "transfer_record_error",
    "transfer_reject",
    "transfer_resign",
]

logger = logging.getLogger(__name__)
S = InstructionStatus


# --- step 1: lock both legs ----------------------------------------------------------------------


def fee_reserves_for(assets: Iterable[Asset]) -> dict[int, Decimal]:
    """Network-fee reserve per on-chain asset, asked of the chain (call outside transactions)."""
    out: dict[int, Decimal] = {}
    for asset in assets:
        if asset.pk not in out and on_chain(asset):
            out[asset.pk] = quantize_up(chain_rail_of(asset.chain).fee_reserve(), asset.precision)
    return out


def crypto_trade_lock(
    *, trade: Trade, fee_reserves: dict[int, Decimal], actor: Actor = PIPELINE
) -> list[SettlementInstruction]:
    """pending → locked for both legs, plus a network-fee reserve on each on-chain leg's payer.

    Short of funds (either leg): both legs fail, no lock survives, both parties are notified.
    The log entries of the transaction are appended together at its end (one head lock).
    """
    with transaction.atomic(), transition_log_deferred():
        legs = _trade_legs_for_update(trade)
        if any(leg.status != S.PENDING for leg in legs):
            return legs
        # Funds and fee reserve expire together; once a leg is on its way over the chain
        # (processing) neither expires by time (``locks_void_expired`` leaves in-flight locks alone).
        expires_at = timezone.now() + settings.CLEARHOUSE_LOCK_TTL
        try:
            with transaction.atomic(), transition_log_deferred():  # dropped with the savepoint
                for leg in legs:
                    _hold_and_lock(leg, actor=actor, reason="lock funds (crypto DvP)", expires_at=expires_at)
                    if on_chain(leg.asset):
                        reserve = fee_reserves[leg.asset_id]
                        leg.fee_lock = ledger_lock(
                            owner=leg.payer,
                            asset=leg.asset,
                            amount=reserve,
                            reference=f"{leg.reference}:a{leg.attempt}:fee",
                            actor=actor,
                            expires_at=expires_at,
                            accounts=_known_accounts(leg, leg.payer_id),
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
    with transaction.atomic(), transition_log_deferred():
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
    rail = chain_rail_of(chain)
    sender = lock_wallets(participant_id=leg.payer_id, chain=chain).first()
    receiver = WalletAddress.objects.filter(participant_id=leg.payee_id, chain=chain).first()
    if sender is None or receiver is None:
        raise WalletMissing(f"{leg.payer if sender is None else leg.payee} has no {chain} wallet")
    if leg.fee_lock is None:  # never: a leg is signed only once its network fee is locked
        raise ValueError(f"{leg.reference} has no network-fee lock")
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


# --- orchestration (what one task run does for a batch of trades) ----------------------------------


@dataclass
class AdvanceResult:
    broadcast: list[int] = field(default_factory=list)  # transfers to watch for confirmations
    retry: list[int] = field(default_factory=list)  # transfers whose broadcast failed transiently
    settled: int = 0
    failed: int = 0
    halted: int = 0
    rest: list[int] = field(default_factory=list)  # trades not started before the deadline


def crypto_trades_advance(
    *, trade_ids: list[int], actor: Actor = PIPELINE, deadline: float | None = None
) -> AdvanceResult:
    """Take each trade as far as it can go now: lock, sign, broadcast. Safe to call again for
    the same trades at any point (each step is a no-op once done).

    With ``deadline`` (``time.monotonic()``) no trade is started after it: the ones left are in
    ``result.rest`` for the caller to hand on, and what was signed is broadcast first."""
    result = AdvanceResult()
    trades = list(
        Trade.objects.filter(pk__in=trade_ids).select_related("instrument__base", "instrument__quote").order_by("pk")
    )
    assets = {a.pk: a for t in trades for a in (t.instrument.base, t.instrument.quote)}
    reserves = fee_reserves_for(assets.values())  # may raise RailTransientError: the task retries
    to_send: list[ChainTransfer] = []
    for index, trade in enumerate(trades):
        if deadline is not None and index and time.monotonic() > deadline:
            result.rest = [t.pk for t in trades[index:]]
            break
        try:
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
                crypto_trade_fail(trade=trade, reason=f"could not sign: {exc}", actor=actor)
                result.failed += 1
        except TRANSIENT_DB_ERRORS:
            raise  # the task retries the whole chunk: every step is idempotent
        except Exception as exc:  # one bad trade must not block the trades behind it
            logger.exception("crypto trade %s failed unexpectedly", trade.pk)
            _escalate_unexpected(trade, error=exc)
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
        except RailRejected as exc:
            transfer_reject(transfer=transfer, reason=str(exc), actor=actor)
            result.failed += 1
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as exc:
            logger.exception("broadcast of chain transfer %s failed unexpectedly", transfer.pk)
            _escalate_unexpected(transfer.instruction.trade, error=exc)
    return result


def _escalate_unexpected(trade: Trade, *, error: Exception) -> None:
    """A defect or an unforeseen answer: the trade waits for operations in a case (the sweeper
    leaves trades with an open case alone), so it is neither retried forever nor lost."""
    leg = SettlementInstruction.objects.filter(trade=trade).order_by("pk").first()
    if leg is not None:
        escalate(leg, reason=f"unexpected error: {type(error).__name__}: {error}"[:500])


# --- sweeper ---------------------------------------------------------------------------------------


@dataclass
class StuckWork:
    trades: list[int]  # crypto T+0 trades with legs pending/locked
    signed: list[int]  # transfers signed but never acknowledged by the node
    broadcast: list[int]  # transfers waiting for confirmations for too long


def stuck_crypto_work(*, older_than_seconds: int, limit: int = 1000) -> StuckWork:
    """Work that a lost task, a killed worker or a restarted broker left behind."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    # a case on either leg of a trade puts the whole trade in operations' hands
    open_case = Q(instruction__trade__instructions__cases__status=CaseStatus.OPEN)
    trades = list(
        SettlementInstruction.objects.filter(
            settles_gross_q("trade__instrument"),
            updated_at__lt=cutoff,
            status__in=[S.PENDING, S.LOCKED],
            batch__isnull=True,  # the batch engine's own sweeper looks after batches
        )
        .exclude(trade__instructions__cases__status=CaseStatus.OPEN)
        .order_by()
        .values_list("trade_id", flat=True)
        .distinct()[:limit]
    )

    def idle_transfers(status: str) -> list[int]:
        return list(
            ChainTransfer.objects.filter(status=status, updated_at__lt=cutoff, chain_tx__isnull=True)
            .exclude(open_case)
            .order_by()
            .values_list("pk", flat=True)
            .distinct()[:limit]
        )

    return StuckWork(trades=trades, signed=idle_transfers(TS.SIGNED), broadcast=idle_transfers(TS.BROADCAST))
