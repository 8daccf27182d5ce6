"""Batch stage 4: watch the batch's chain transactions and act on what the chain says, as the
per-trade pipeline does for one transfer, but for every transaction of the batch with one
batched status call:

* confirmed (enough confirmations): what it paid is read back from the chain (every payout with
  its reference, recipient and amount must be what was signed) and every trade it carried
  settles in one set-based transaction: the funds locks posted to the payees, the cash legs with
  their fees, the network fee booked once per chain transaction, split evenly over its legs
  (the remainder to the first) out of their reserves, the rest of each reserve released;
* reverted in a block: the fee was spent but nothing moved: the fee is booked the same way,
  every trade it carried fails with its holds released, and operations get a case;
* unknown to the node for ``CLEARHOUSE_DROPPED_AFTER_CHECKS`` checks in a row (dropped, or its
  block reorganised away): the same bytes are sent again;
* expired (a Solana blockhash past its validity, never seen): re-signed with the same payouts
  and nonce and sent;
* its nonce taken by another transaction (double spend): failed, the asset halted, a case.

Each action is a compare-and-set on the transaction's status and hash as read before asking the
chain; settling happens once (only a broadcast transaction can be confirmed).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.actors import Actor
from common.choices import AccountKind, InstructionStatus
from common.ports import escalate
from ledger.models import LedgerAccount
from ledger.services.audit import transition_log_deferred
from ledger.services.batch import PostRequest, ledger_post_many
from ledger.services.ledger import system_account_for
from ledger.services.transitions_many import transitions_run_many
from rails.base import TransferStatus as ChainStatus
from rails.crypto.registry import chain_rail_of
from settlement.crypto.batch_chain import payout_reference
from settlement.crypto.batch_faults import (
    batch_finish_if_final,
    tx_rebroadcast_recorded,
    tx_resign,
    txs_double_spent,
    txs_reverted,
)
from settlement.crypto.batch_fees import gas_row, gas_shares, pending_charges
from settlement.crypto.batch_form import batch_assets
from settlement.crypto.batch_lock import LEG_RELATED, batch_notify, by_trade, held
from settlement.crypto.trades import NETWORK_FEES, on_chain
from settlement.locking import lock_batch, lock_batch_legs, lock_chain_txs
from settlement.models import (
    BatchStatus,
    ChainTransaction,
    ChainTransfer,
    CryptoBatch,
    FeeCharge,
    SettlementInstruction,
)
from settlement.models.fees import FeeChargeStatus, FeeKind, FeeParty
from settlement.models.pipeline import TransferStatus as TS
from settlement.services.fees import fee_charges_mark, fee_revenue_account
from settlement.services.halts import PIPELINE
from settlement.services.instructions import ENTITY

S = InstructionStatus


@dataclass
class CheckResult:
    settled: int = 0
    failed: int = 0
    waiting: int = 0
    rebroadcast: int = 0
    resigned: int = 0
    done: bool = False
    notes: list[str] = field(default_factory=list)


def batch_check(*, batch_id: int, actor: Actor = PIPELINE) -> CheckResult:
    """Look at the chain once for every broadcast transaction of the batch and act."""
    result = CheckResult()
    batch = CryptoBatch.objects.get(pk=batch_id)
    if batch.status == BatchStatus.DONE:
        return CheckResult(done=True)
    if batch.status != BatchStatus.BROADCAST:
        return result
    rail = chain_rail_of(batch.chain)
    seen = list(ChainTransaction.objects.filter(batch=batch, status=TS.BROADCAST).order_by("pk"))
    statuses = rail.status_many([(tx.tx_hash, tx.from_address, tx.raw_tx) for tx in seen]) if seen else []
    required = _required_confirmations(batch)
    confirmed, reverted, resend, expired, double = [], [], [], [], []
    for tx, status in zip(seen, statuses, strict=True):
        if status.found and status.block_number is not None:
            if status.succeeded is False:
                reverted.append((tx, status))
            elif status.confirmations >= required:
                confirmed.append((tx, status, rail.payouts_in(tx.tx_hash)))
            else:
                _note(tx, confirmations=status.confirmations, block_number=status.block_number, unseen_checks=0)
                result.waiting += 1
        elif status.found:
            _note(tx)
            result.waiting += 1
        elif status.double_spent(tx.nonce):
            double.append((tx, status))
        elif status.expired:
            expired.append(tx)
        else:
            unseen = tx.unseen_checks + 1
            _note(tx, unseen_checks=unseen, confirmations=0, block_number=None)
            if unseen >= settings.CLEARHOUSE_DROPPED_AFTER_CHECKS:
                resend.append(tx)
            result.waiting += 1
    if confirmed or reverted or double:
        _record(batch_id, confirmed=confirmed, reverted=reverted, double=double, actor=actor, result=result)
    for tx in expired:
        tx_resign(tx, actor=actor)
        result.resigned += 1
    resend.extend(ChainTransaction.objects.filter(pk__in=[tx.pk for tx in expired]))
    if resend:
        outcomes = rail.broadcast_many([tx.raw_tx for tx in resend])
        for tx, outcome in zip(resend, outcomes, strict=True):
            if outcome is None:
                tx_rebroadcast_recorded(tx, actor=actor)
                result.rebroadcast += 1
            else:
                ChainTransaction.objects.filter(pk=tx.pk, tx_hash=tx.tx_hash).update(last_error=str(outcome)[:2000])
    result.done = batch_finish_if_final(batch_id, actor=actor)
    return result


def _required_confirmations(batch: CryptoBatch) -> int:
    return max((a.required_confirmations for a in batch_assets(batch) if on_chain(a)), default=1)


def _note(tx: ChainTransaction, **changes: Any) -> None:
    """Polled: not stuck (the sweeper goes by ``updated_at``). Compare-and-set on the hash."""
    ChainTransaction.objects.filter(pk=tx.pk, status=TS.BROADCAST, tx_hash=tx.tx_hash).update(
        updated_at=timezone.now(), **changes
    )


def _record(
    batch_id: int,
    *,
    confirmed: list[tuple[ChainTransaction, ChainStatus, list[tuple[int, str, str, Decimal]]]],
    reverted: list[tuple[ChainTransaction, ChainStatus]],
    double: list[tuple[ChainTransaction, ChainStatus]],
    actor: Actor,
    result: CheckResult,
) -> None:
    with transaction.atomic(), transition_log_deferred():
        batch = lock_batch(batch_id).get()
        trades = by_trade(lock_batch_legs(batch, related=LEG_RELATED))
        wanted = [tx.pk for tx, *_ in confirmed + reverted + double]
        current = {tx.pk: tx for tx in lock_chain_txs(pk__in=wanted)}

        def still(tx: ChainTransaction) -> ChainTransaction | None:
            now = current.get(tx.pk)
            return now if now is not None and now.status == TS.BROADCAST and now.tx_hash == tx.tx_hash else None

        transfers_of: dict[int, list[ChainTransfer]] = defaultdict(list)
        for row in ChainTransfer.objects.filter(chain_tx_id__in=wanted).order_by("output_index"):
            transfers_of[row.chain_tx_id].append(row)
        settled: dict[int, list[SettlementInstruction]] = {}
        posts: list[PostRequest] = []
        fee_work: list[tuple[SettlementInstruction, list[FeeCharge]]] = []
        gas_rows: list[FeeCharge] = []
        ok_txs: list[ChainTransaction] = []
        legs_of = {leg.pk: leg for legs in trades.values() for leg in legs}
        fee_of: dict[int, Decimal] = {}  # leg pk -> its share of its chain transaction's fee
        fee_accounts: dict[int, int] = {}
        for tx, status, paid in confirmed:
            now = still(tx)
            if now is None:
                continue
            rows = transfers_of[now.pk]
            expected = [
                (r.output_index, payout_reference(legs_of[r.instruction_id]), r.to_address, r.amount) for r in rows
            ]
            if _paid_key(paid) != _paid_key(expected):
                escalate(
                    legs_of[rows[0].instruction_id],
                    reason=f"chain transaction {now.tx_hash} paid {paid!r}, signed {expected!r}"[:500],
                )
                result.notes.append(f"mismatch {now.tx_hash}")
                continue
            now.fee, now.confirmations, now.block_number = status.fee, status.confirmations, status.block_number
            ok_txs.append(now)
            shares = gas_shares(status.fee or Decimal(0), [legs_of[r.instruction_id] for r in rows])
            fee_of.update(shares)
            for row in rows:
                leg = legs_of[row.instruction_id]
                settled[leg.trade_id] = trades[leg.trade_id]
                posts.append(_fee_post(leg, share=shares[leg.pk], chain=now.chain, accounts=fee_accounts))
                if shares[leg.pk] > 0:
                    gas_rows.append(gas_row(leg, fee=shares[leg.pk], tx_hash=now.tx_hash))
        cash_legs = [leg for legs in settled.values() for leg in legs if not on_chain(leg.asset)]
        charges = defaultdict(list)
        for charge in FeeCharge.objects.filter(
            instruction__in=cash_legs, status=FeeChargeStatus.PENDING, kind=FeeKind.SCHEDULE
        ):
            charges[charge.instruction_id].append(charge)
        payee_accounts = _available_accounts(
            [(leg.payee_id, leg.asset_id) for legs in settled.values() for leg in legs]
        )
        revenue: dict[int, int] = {}
        for leg in cash_legs:
            leg_charges = [c for c in charges.get(leg.pk, []) if c.attempt == leg.attempt]
            total = sum((c.fee for c in leg_charges), Decimal(0))
            payee_fee = sum((c.fee for c in leg_charges if c.party == FeeParty.PAYEE), Decimal(0))
            if total and leg.asset_id not in revenue:
                revenue[leg.asset_id] = fee_revenue_account(leg.asset).pk
            extra = ((revenue[leg.asset_id], total),) if total else ()
            posts.append(
                PostRequest(
                    held(leg.lock),
                    payee_accounts[(leg.payee_id, leg.asset_id)],
                    leg.amount - payee_fee,
                    extra,
                    f"settle {leg}",
                )
            )
            if leg_charges:
                fee_work.append((leg, leg_charges))
        fund_posts = [
            PostRequest(held(leg.lock), payee_accounts[(leg.payee_id, leg.asset_id)], leg.amount, (), f"settle {leg}")
            for legs in settled.values()
            for leg in legs
            if on_chain(leg.asset)
        ]
        posts = fund_posts + posts
        journals = ledger_post_many(requests=posts, actor=actor)
        for leg, leg_charges in fee_work:
            fee_charges_mark(
                charges=pending_charges(leg_charges),
                status=FeeChargeStatus.POSTED,
                journal=journals[held(leg.lock).pk],
                actor=actor,
                reason=f"settle {leg}",
            )
        for row in gas_rows:
            row.journal = journals[held(row.instruction.fee_lock).pk] if row.instruction else None
        FeeCharge.objects.bulk_create(gas_rows)
        transitions_run_many(
            ok_txs,
            "mark_confirmed",
            entity="chaintransaction",
            actor=actor,
            reason="confirmed",
            fields=("fee", "confirmations", "block_number"),
            metadata=lambda tx: {"block": tx.block_number, "confirmations": tx.confirmations, "fee": tx.fee},
        )
        confirmed_rows = []
        for tx in ok_txs:
            for row in transfers_of[tx.pk]:
                row.confirmations, row.block_number = tx.confirmations, tx.block_number
                row.fee = fee_of.get(row.instruction_id, Decimal(0))
                confirmed_rows.append(row)
        transitions_run_many(
            confirmed_rows,
            "mark_confirmed",
            entity="chaintransfer",
            actor=actor,
            reason="confirmed (batch)",
            fields=("fee", "confirmations", "block_number"),
        )
        trade_tx = {
            legs_of[row.instruction_id].trade_id: (tx.tx_hash, tx.block_number)
            for tx in ok_txs
            for row in transfers_of[tx.pk]
        }
        transitions_run_many(
            [leg for legs in settled.values() for leg in legs],
            "mark_settled",
            entity=ENTITY,
            actor=actor,
            reason=lambda leg: (
                "settled on chain (DvP)" if on_chain(leg.asset) else "settled on the internal ledger (DvP)"
            ),
            metadata=lambda leg: {
                "tx": trade_tx[leg.trade_id][0],
                "block": trade_tx[leg.trade_id][1],
                "batch": batch.pk,
            },
        )
        result.settled += len(settled)
        batch.settled += len(settled)
        if settled:
            batch_notify(event="settled", trades=settled, batch=batch, stage=f"tx{min(t.pk for t in ok_txs)}")
        live_reverted = [(now, status) for tx, status in reverted if (now := still(tx)) is not None]
        live_double = [(now, status) for tx, status in double if (now := still(tx)) is not None]
        txs_reverted(batch, live_reverted, legs_of=legs_of, trades=trades, transfers_of=transfers_of, actor=actor)
        txs_double_spent(batch, live_double, actor=actor)
        result.failed += len(live_reverted) + len(live_double)
        batch.save(update_fields=("settled", "failed", "updated_at"))


def _paid_key(rows: list[tuple[int, str, str, Decimal]]) -> list[tuple[int, str, str, Decimal]]:
    return sorted((int(i), ref, to.lower(), Decimal(amount)) for i, ref, to, amount in rows)


def _fee_post(leg: SettlementInstruction, *, share: Decimal, chain: str, accounts: dict[int, int]) -> PostRequest:
    """The leg's share of its chain transaction's fee out of its reserve to the network-fee
    account (looked up once per asset: ``accounts``); the rest of the reserve goes back."""
    if leg.asset_id not in accounts:
        accounts[leg.asset_id] = system_account_for(code=f"{NETWORK_FEES}:{chain}", asset=leg.asset).pk
    return PostRequest(held(leg.fee_lock), accounts[leg.asset_id], share, (), f"network fee (batch), leg {leg.pk}")


def _available_accounts(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Available-account ids of (owner, asset) pairs: one query (created with the trades)."""
    owners, assets = {o for o, _ in pairs}, {a for _, a in pairs}
    rows = LedgerAccount.objects.filter(owner_id__in=owners, asset_id__in=assets, kind=AccountKind.AVAILABLE)
    return {(o, a): pk for pk, o, a in rows.values_list("pk", "owner_id", "asset_id")}
