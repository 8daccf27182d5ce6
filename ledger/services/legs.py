"""Legs of a journal and the checks and balance changes every ledger write shares: the single-item
services of ``ledger.services.ledger`` and the batch services of ``ledger.services.batch`` go
through these, so both refuse and write alike."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, connection

from common.exceptions import InsufficientFunds, UnbalancedJournal, ValidationFailed
from common.money import fits_precision, format_amount
from ledger.models import LedgerAccount
from reference.models import Asset

OVERDRAFT_CONSTRAINT = "ledger_account_no_overdraft"


@dataclass(frozen=True)
class Leg:
    account: LedgerAccount
    amount: Decimal


def check_balanced(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise UnbalancedJournal("a journal moves value between at least two postings")
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for leg in legs:
        if leg.amount == 0:
            raise UnbalancedJournal("a posting of zero moves nothing")
        if not fits_precision(leg.amount, leg.account.asset.precision):
            raise ValidationFailed(
                f"{leg.amount} has more decimals than {leg.account.asset.code} allows ({leg.account.asset.precision})"
            )
        totals[leg.account.asset_id] += leg.amount
    unbalanced = {asset_id: total for asset_id, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedJournal(f"postings do not sum to zero per asset: {unbalanced}", detail=unbalanced)


def shortfall(account: LedgerAccount, *, balance: Decimal, delta: Decimal) -> InsufficientFunds | None:
    """The refusal of ``delta`` on ``account`` holding ``balance``, or None when it may take it."""
    if account.allow_negative or balance + delta >= 0:
        return None
    precision = account.asset.precision
    return InsufficientFunds(
        f"{account} holds {format_amount(balance, precision)}, cannot move {format_amount(-delta, precision)}",
        detail={"account": account.pk, "balance": str(balance), "needed": str(-delta)},
    )


def validate_amount(asset: Asset, amount: Decimal) -> None:
    if amount <= 0:
        raise ValidationFailed(f"amount must be positive, got {amount}")
    if not fits_precision(amount, asset.precision):
        raise ValidationFailed(f"{amount} has more decimals than {asset.code} allows ({asset.precision})")


_BALANCES_APPLY = (
    'UPDATE "settlement_ledgeraccount" AS account SET balance = account.balance + delta.amount '
    "FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::numeric[]) AS amount) AS delta "
    "WHERE account.id = delta.id"
)


def balances_apply(deltas: Mapping[int, Decimal]) -> None:
    """Add ``deltas`` (account id -> signed amount) to the balances of accounts the caller holds
    locked: one statement however many accounts. A balance going below zero where it may not raises
    ``IntegrityError`` (the CHECK ``ledger_account_no_overdraft``; see ``is_overdraft``)."""
    if not deltas:
        return
    ids = list(deltas)
    with connection.cursor() as cursor:
        cursor.execute(_BALANCES_APPLY, [ids, [deltas[account_id] for account_id in ids]])
        if cursor.rowcount != len(ids):
            raise RuntimeError(f"balances of {len(ids)} accounts to change, {cursor.rowcount} found")


def is_overdraft(exc: IntegrityError) -> bool:
    """Whether the database refused a statement for the no-overdraft CHECK constraint (and not, say,
    a duplicate reference)."""
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == OVERDRAFT_CONSTRAINT


def release_rest(*, amount: Decimal, moved: Decimal, extra: Iterable[Decimal]) -> Decimal:
    """What a lock of ``amount`` gives back to its available account when ``moved`` is posted and
    the ``extra`` legs (fees) are paid out of it."""
    return amount - moved - sum(extra, Decimal(0))


def resolution_legs(
    *,
    amount: Decimal,
    moved: Decimal,
    locked: LedgerAccount,
    to_account: LedgerAccount,
    available: LedgerAccount,
    extra_legs: Sequence[Leg],
) -> list[Leg]:
    """The legs of the journal that resolves a lock of ``amount``: all of it out of the locked
    account, ``moved`` to ``to_account``, the extra legs (e.g. fees to the revenue account) and the
    rest back to the available account (a partial post releases the rest, as a pending transfer does)."""
    legs = [Leg(locked, -amount)]
    if moved:
        legs.append(Leg(to_account, moved))
    legs.extend(extra_legs)
    rest = release_rest(amount=amount, moved=moved, extra=(leg.amount for leg in extra_legs))
    if rest:
        legs.append(Leg(available, rest))
    return legs


def deltas_add(deltas: dict[int, Decimal], legs: Iterable[tuple[int, Decimal]]) -> dict[int, Decimal]:
    """Add (account id, signed amount) legs to ``deltas`` (account id -> change); returns it."""
    for account_id, amount in legs:
        deltas[account_id] = deltas.get(account_id, Decimal(0)) + amount
    return deltas
