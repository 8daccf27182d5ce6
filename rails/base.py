"""The small interface every rail implements, and the errors it raises.

A rail never touches the database: the settlement services persist what a rail returns (the
signed transaction, its hash, the nonce) *before* asking the rail to broadcast, so a crash at any
point can be resumed without paying twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


class RailError(Exception):
    """Base of everything a rail raises."""


class RailTransientError(RailError):
    """Worth retrying with backoff: timeouts, node unavailable."""


class RailTimeout(RailTransientError):
    pass


class RailUnavailable(RailTransientError):
    pass


class RailRejected(RailError):
    """The network refused the transfer for good (bad signature, insufficient gas, ...)."""


@dataclass(frozen=True)
class SignedTransfer:
    """A transfer ready to broadcast; safe to store (it contains no key)."""

    tx_hash: str
    raw: str  # hex of the signed transaction
    nonce: int
    fee_cap: Decimal  # the most the network fee can be, in the asset's units
    # Rail-specific wallet state after this transaction (Bitcoin: the change output the next
    # transaction of the wallet spends). Stored with the wallet in the same database transaction
    # as the signed transfer; Ethereum and Solana keep none.
    state_after: dict[str, Any] = field(default_factory=dict)


MAX_PAYOUT_REFERENCE = 64


@dataclass(frozen=True)
class Payout:
    """One settlement paid inside a chain transaction that pays many (``sign_payouts``)."""

    to_address: str
    amount: Decimal  # asset units, > 0
    reference: str  # the settlement's reference: printable ASCII, 1 to 64 characters

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or not self.amount > 0:
            raise ValueError(f"payout amount must be a positive Decimal, got {self.amount!r}")
        reference = self.reference
        if not 0 < len(reference) <= MAX_PAYOUT_REFERENCE or not all(" " <= c <= "~" for c in reference):
            raise ValueError(
                f"payout reference must be 1-{MAX_PAYOUT_REFERENCE} printable ASCII characters: {reference!r}"
            )


@dataclass(frozen=True)
class TransferStatus:
    found: bool  # the network knows the transaction (mempool or block)
    confirmations: int = 0
    block_number: int | None = None
    succeeded: bool | None = None  # None until it is in a block
    fee: Decimal | None = None  # actual network fee once in a block
    sender_nonce: int | None = None  # next nonce of the sender on the confirmed chain
    conflicted: bool = False  # an input of ours was spent by another transaction (UTXO chains)
    expired: bool = False  # unknown and can never land any more (Solana: blockhash expired)

    def double_spent(self, nonce: int) -> bool:
        """Our transaction is unknown and what it spends was consumed by another transaction:
        the sender's nonce moved past ours (account chains) or an input was spent elsewhere."""
        if self.found:
            return False
        return self.conflicted or (self.sender_nonce is not None and self.sender_nonce > nonce)


class BaseUnits:
    """Conversion between an asset amount and the chain's integer base unit (wei, satoshi,
    lamport); an amount finer than one base unit is refused, never rounded."""

    decimals: int
    symbol: str
    base_unit: str

    @classmethod
    def to_base_units(cls, amount: Decimal) -> int:
        units = amount.scaleb(cls.decimals)
        if units != units.to_integral_value():
            raise ValueError(f"{amount} {cls.symbol} is finer than one {cls.base_unit}")
        return int(units)

    @classmethod
    def from_base_units(cls, units: int) -> Decimal:
        return Decimal(units).scaleb(-cls.decimals)
