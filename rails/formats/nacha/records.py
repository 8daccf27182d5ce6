"""NACHA codes and layout constants, the ACH/ISO 20022 return-reason mapping, and the data of a
file (``AchFile`` > ``AchBatch`` > ``AchEntry``; amounts are ``Decimal`` dollars)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

RECORD_LENGTH = 94
BLOCKING_FACTOR = 10

# NACHA return reason codes (Operating Rules, Appendix Four): returns R01-R53, dishonored and
# contested dishonored returns R61-R77, IAT returns R80-R85.
RETURN_CODES = frozenset(
    [f"R{n:02d}" for n in range(1, 54) if n not in (48, 49)]
    + ["R61", "R62"]
    + [f"R{n}" for n in range(67, 78)]
    + [f"R{n}" for n in range(80, 86)]
)
# Notification of change codes C01-C14, refused NOC codes C61-C69.
CHANGE_CODES = frozenset([f"C{n:02d}" for n in range(1, 15)] + [f"C{n}" for n in range(61, 70)])

# Transaction codes for demand (2x), savings (3x), general ledger (4x) and loan (5x) accounts. The
# second digit says the direction: 1-4 credit (1 return/NOC, 2 live, 3 prenote, 4 zero dollar with
# remittance), 5-9 debit (6 return/NOC, 7 live, 8 prenote, 9 zero dollar).
TRANSACTION_CODES = frozenset(
    {21, 22, 23, 24, 26, 27, 28, 29, 31, 32, 33, 34, 36, 37, 38, 39, 41, 42, 43, 44, 46, 47, 48, 49}
    | {51, 52, 53, 55, 56}
)
SERVICE_CLASSES = {200: "mixed", 220: "credits only", 225: "debits only"}
SUPPORTED_SEC_CODES = frozenset({"CCD", "PPD"})

_ACH_TO_ISO = {"R01": "AM04", "R02": "AC04", "R03": "AC01", "R04": "AC01"}
_ISO_TO_ACH = {"AM04": "R01", "AC04": "R02", "AC01": "R03"}
_REFERENCE_RE = re.compile(r"[A-Z0-9 .,/()&'*#:;+=@!$%\-]{1,15}")
_ACCOUNT_RE = re.compile(r"[A-Z0-9 \-]{1,17}")


def ach_return_to_iso(code: str) -> str:
    """ISO 20022 return reason for a NACHA return code: R01 AM04, R02 AC04, R03/R04 AC01, else NARR."""
    return _ACH_TO_ISO.get(code.strip().upper(), "NARR")


def iso_to_ach_return(code: str) -> str:
    """NACHA return code for an ISO 20022 reason: AM04 R01, AC04 R02, AC01 R03; "" when there is none."""
    return _ISO_TO_ACH.get(code.strip().upper(), "")


@dataclass(frozen=True)
class AchEntry:
    """One entry detail record.

    ``trace_ref`` is our reference, in the entry's identification number field (15 characters).
    ``return_code`` (R01...) and ``change_code`` (C01...) come from a return (addenda 99) or a
    notification of change (addenda 98). ``trace_number`` is the entry's ACH trace number (assigned
    when the file is built) and ``original_trace`` the trace number of the entry a return or NOC
    refers to.
    """

    trace_ref: str
    amount: Decimal
    debit: bool
    routing: str
    account: str
    name: str
    return_code: str = ""
    change_code: str = ""
    trace_number: str = ""
    original_trace: str = ""


@dataclass(frozen=True)
class AchBatch:
    number: int
    service_class: int
    sec_code: str
    company_name: str
    company_id: str
    entry_description: str
    effective_date: date | None
    origin_routing: str
    entries: list[AchEntry] = field(default_factory=list)


@dataclass(frozen=True)
class AchFile:
    immediate_destination: str
    immediate_origin: str
    created_at: datetime
    file_id_modifier: str
    destination_name: str
    origin_name: str
    batches: list[AchBatch] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def entries(self) -> list[AchEntry]:
        return [entry for batch in self.batches for entry in batch.entries]


def _aba_ok(routing: str) -> bool:
    if not re.fullmatch(r"\d{9}", routing):
        return False
    weights = (3, 7, 1, 3, 7, 1, 3, 7, 1)
    return sum(int(d) * w for d, w in zip(routing, weights, strict=True)) % 10 == 0
