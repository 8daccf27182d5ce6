"""Crypto T+0 trades as a whole: the shared names of the pipeline, and failing, expiring and
cancelling a trade before it is on chain (both legs together, every lock of both released:
delivery versus payment)."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from django.db import InterfaceError, OperationalError, transaction

from common.actors import Actor
from common.choices import AssetKind, CaseKind, InstructionStatus, LockStatus
from common.exceptions import DomainError
from common.ports import case_open, escalate, notify
from ledger.services.ledger import ledger_void
from rails.crypto.registry import chain_rail
from reference.models import Asset
from settlement.models import SettlementInstruction, Trade
from settlement.services.halts import PIPELINE, active_halt
from settlement.services.instructions import _apply, _trade_legs_for_update, _void_if_pending, trade_cancel

logger = logging.getLogger(__name__)
S = InstructionStatus
NETWORK_FEES = "network-fees"
# database errors worth a retry of the whole batch (connection lost, server restarting)
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class SettlementHalted(DomainError):
    code = "settlement_halted"
    http_status = 409


class WalletMissing(DomainError):
    code = "wallet_missing"


def on_chain(asset: Asset) -> bool:
    return asset.kind == AssetKind.CRYPTO and chain_rail(asset.chain) is not None


def quantize_up(value: Decimal, precision: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_CEILING)


# --- failing a trade -----------------------------------------------------------------------------


def _release_leg(leg: SettlementInstruction, *, actor: Actor, reason: str) -> None:
    """Void what a leg holds: its funds lock, its network-fee reserve and its pending fee
    charges (row already locked by the caller)."""
    for lock in (leg.lock, leg.fee_lock):
        if lock is not None:
            lock.refresh_from_db(fields=("status",))
    _void_if_pending(leg, actor=actor, reason=reason)


def _fail_legs(legs: list[SettlementInstruction], *, reason: str, actor: Actor) -> None:
    """Void every pending lock (funds and fee reserve) of the trade's legs and fail them.
    Rows are already locked by the caller."""
    for leg in legs:
        if leg.status not in (S.PENDING, S.LOCKED, S.PROCESSING):
            continue
        _release_leg(leg, actor=actor, reason=f"void: {reason}"[:200])
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


def crypto_trade_fail(*, trade: Trade, reason: str, actor: Actor = PIPELINE) -> list[SettlementInstruction]:
    """Fail a crypto T+0 trade that has not gone on chain (legs pending or locked): every lock of
    both legs is voided, both parties are told and a case is opened. Legs already on their way
    (processing) are left alone: their value may be on the chain."""
    with transaction.atomic():
        legs = _trade_legs_for_update(trade)
        if not legs or any(leg.status not in (S.PENDING, S.LOCKED) for leg in legs):
            return legs
        _fail_legs(legs, reason=reason, actor=actor)
        escalate(legs[0], reason=reason)
        return legs


def crypto_trade_expire(*, trade: Trade, now: datetime, actor: Actor = PIPELINE) -> bool:
    """The lock-expiry sweeper found an expired lock on a crypto T+0 trade. Nothing happens while
    a leg is on its way (processing: its value may be on the chain) or when no lock of the trade
    is really past its expiry. A trade with a leg still waiting (pending or locked) fails as a
    whole (DvP: every live leg, every lock voided), both parties are told and a case is opened,
    saying so when the asset's settlement was halted. A lock left over on finished legs is only
    voided. Returns True when something was released."""
    with transaction.atomic():
        legs = _trade_legs_for_update(trade)
        if not legs or any(leg.status == S.PROCESSING for leg in legs):
            return False  # in flight: never by time
        locks = [lock for leg in legs for lock in (leg.lock, leg.fee_lock) if lock is not None]
        for lock in locks:
            lock.refresh_from_db(fields=("status", "expires_at"))
        expired = [lock for lock in locks if lock.status == LockStatus.PENDING and lock.expires_at < now]
        if not expired:
            return False
        if not any(leg.status in (S.PENDING, S.LOCKED) for leg in legs):
            for lock in expired:
                ledger_void(lock=lock, actor=actor, reason="lock expired")
            return True
        halted = [leg.asset.code for leg in legs if on_chain(leg.asset) and active_halt(leg.asset) is not None]
        reason = "lock expired before settlement"
        if halted:
            reason += f" while {', '.join(sorted(set(halted)))} settlement was halted"
        _fail_legs(legs, reason=reason, actor=actor)
        case_open(
            kind=CaseKind.ESCALATION,
            reason=f"trade {trade}: {reason}",
            instruction=legs[0],
            asset=legs[0].asset,
            dedupe_key=f"lock-expired:{trade.pk}:a{legs[0].attempt}",
        )
        return True


def crypto_trade_cancel(*, trade: Trade, actor: Actor, reason: str) -> list[SettlementInstruction]:
    """Cancel a crypto T+0 trade before it goes on chain: the one per-trade cancel
    (``trade_cancel``): both legs together (DvP), each leg's funds lock, network-fee reserve and
    pending fee charges voided; refused once a leg is on its way (processing) or settled."""
    return trade_cancel(trade=trade, actor=actor, reason=reason)
