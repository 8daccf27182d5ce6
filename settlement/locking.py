"""Row locks of settlement: instructions and a trade's legs, chain transfers, wallets, fee
charges, halts and API tokens.

The global lock order is stated once, in ``ledger.locking``: (netting window row →) netted
instruction rows → settlement instruction rows → ledger locks → ledger accounts (pk order) →
transition-log head. Here: a trade's legs are locked together, in pk order, before any account
they touch; a chain transfer is locked after its instruction's lock has been taken (the pipeline
holds the trade's legs first); a fee charge after the ledger work of its journal. Every helper
returns a query: the lock is taken when the caller runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.models import QuerySet

from reference.models import WalletAddress
from settlement.models import ApiToken, ChainTransaction, ChainTransfer, CryptoBatch, SettlementInstruction, Trade
from settlement.models.fees import FeeCharge
from settlement.models.pipeline import SettlementHalt


def lock_instructions(*, related: Sequence[str] = (), **filters: object) -> QuerySet[SettlementInstruction]:
    """Settlement instructions matching ``filters``, FOR UPDATE; with ``related`` the joined rows
    are read with them and only the instruction rows are locked (FOR UPDATE OF)."""
    query = SettlementInstruction.objects.select_for_update(of=("self",) if related else ())
    if related:
        query = query.select_related(*related)
    return query.filter(**filters)


def lock_trade_legs(trade: Trade, *, related: Sequence[str] = ()) -> QuerySet[SettlementInstruction]:
    """Both legs of a trade, FOR UPDATE OF the leg rows, in pk order (one leg never moves
    without the other; take them before any ledger account)."""
    return lock_instructions(related=related, trade=trade).order_by("pk")


def lock_transfers(*, related: Sequence[str] = (), **filters: object) -> QuerySet[ChainTransfer]:
    """Chain transfers matching ``filters``, FOR UPDATE (OF the transfer row when ``related``)."""
    query = ChainTransfer.objects.select_for_update(of=("self",) if related else ())
    if related:
        query = query.select_related(*related)
    return query.filter(**filters)


def lock_wallets(**filters: object) -> QuerySet[WalletAddress]:
    """House wallets matching ``filters``, FOR UPDATE (a sender's nonce is taken under it)."""
    return WalletAddress.objects.select_for_update().filter(**filters)


def lock_fee_charges(ids: Iterable[int]) -> QuerySet[FeeCharge]:
    """Fee charges by id, FOR UPDATE in pk order."""
    return FeeCharge.objects.select_for_update().filter(pk__in=ids).order_by("pk")


def lock_halt(pk: int) -> QuerySet[SettlementHalt]:
    return SettlementHalt.objects.select_for_update().filter(pk=pk)


def lock_token(pk: int) -> QuerySet[ApiToken]:
    return ApiToken.objects.select_for_update().filter(pk=pk)


# --- the batch engine: batch row → its legs (pk order) → ledger → wallets → chain transactions --


def lock_batch(pk: int) -> QuerySet[CryptoBatch]:
    """A crypto batch row, FOR UPDATE: every stage of the batch engine takes it first, so two
    tasks for the same batch run one after the other and the second sees the stage done."""
    return CryptoBatch.objects.select_for_update().filter(pk=pk)


def claim_unbatched_legs(query: QuerySet[SettlementInstruction], *, limit: int) -> QuerySet[SettlementInstruction]:
    """Pending legs not in a batch yet, FOR UPDATE SKIP LOCKED in pk order (a leg an operations
    action or another former holds is left for the next round)."""
    return query.select_for_update(skip_locked=True, of=("self",)).order_by("pk")[:limit]


def lock_batch_legs(batch: CryptoBatch, *, related: Sequence[str] = ()) -> QuerySet[SettlementInstruction]:
    """Every leg of a batch, FOR UPDATE OF the leg rows, in pk order."""
    return lock_instructions(related=related, batch=batch).order_by("pk")


def lock_wallets_of(*, participant_ids: Iterable[int], chain: str) -> QuerySet[WalletAddress]:
    """The house wallets of many participants on ``chain``, FOR UPDATE in pk order."""
    wallets = WalletAddress.objects.select_for_update().filter(participant_id__in=participant_ids, chain=chain)
    return wallets.order_by("pk")


def lock_chain_txs(**filters: object) -> QuerySet[ChainTransaction]:
    """Chain transactions of the batch engine, FOR UPDATE in pk order (after the batch row)."""
    return ChainTransaction.objects.select_for_update().filter(**filters).order_by("pk")
