"""The data the message families build from and parse into (every amount a ``Decimal``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

# --------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Party:
    """A debtor or creditor: its name and country, its account and its bank (agent)."""

    name: str
    country: str
    iban: str = ""
    bic: str = ""
    aba: str = ""
    account: str = ""


@dataclass(frozen=True)
class CreditTransfer:
    end_to_end_id: str
    amount: Decimal
    currency: str
    debtor: Party
    creditor: Party
    remittance: str
    value_date: date


@dataclass(frozen=True)
class PaymentStatus:
    """One status line of a pain.002 / pacs.002.

    ``end_to_end_id`` is empty for a status about the whole original message (GrpSts) or about
    one of its payment-information blocks (PmtInfSts) reported without transactions. ``uetr``
    is the original UETR when the report carries one (Fedwire reports identify the payment by it).
    """

    original_message_id: str
    end_to_end_id: str
    status: str
    reason_code: str = ""
    reason_text: str = ""
    uetr: str = ""


@dataclass(frozen=True)
class Balance:
    """A statement balance other than the opening and closing ones; ``amount`` is signed."""

    type: str
    amount: Decimal
    currency: str
    date: date


@dataclass(frozen=True)
class Booking:
    """One camt entry (Ntry). ``amount`` is positive, ``credit_debit`` says which way it went.

    ``return_reason`` is the return reason code (RtrInf/Rsn) of a returned payment, if any.
    ``charges`` is what the bank charged on the entry (in its currency; a refunded charge counts
    negative); ``charges_included`` says whether ``amount`` already contains it (a debit grows by
    the charge, a credit shrinks by it), as the bank's ChrgInclInd says.
    ``principal`` is then the signed amount of the payment itself.
    """

    entry_ref: str
    account: str
    amount: Decimal
    currency: str
    credit_debit: str
    booking_date: date
    value_date: date
    end_to_end_id: str = ""
    counterparty_name: str = ""
    counterparty_account: str = ""
    remittance: str = ""
    status: str = "BOOK"
    return_reason: str = ""
    charges: Decimal = Decimal(0)
    charges_included: bool = True
    charge_type: str = ""

    @property
    def principal(self) -> Decimal:
        """The signed payment amount (credit positive) without the charges the entry includes."""
        signed = self.amount if self.credit_debit == "CRDT" else -self.amount
        return signed + self.charges if self.charges_included else signed


@dataclass(frozen=True)
class Statement:
    """One camt.053 statement (Stmt); balances are signed (negative when DBIT).

    ``other_balances`` holds every balance besides the two used as opening and closing balance.
    """

    statement_id: str
    account: str
    currency: str
    created_at: datetime
    from_date: date
    to_date: date
    opening_balance: Decimal
    closing_balance: Decimal
    entries: list[Booking]
    other_balances: list[Balance] = field(default_factory=list)
