"""Values shared by the message families: currency amounts, dates, text fields, identifiers
(IBAN, BIC, ABA), reason codes, accounts, parties and control sums."""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.us import rtn as stdnum_rtn

from rails.formats.errors import FormatError
from rails.formats.iso20022.documents import _Builder, _find, _findall, _path, _text
from rails.formats.iso20022.records import CreditTransfer

# ISO 4217 minor units that differ from the usual two decimals.
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI"], 0),
    **dict.fromkeys(["VND", "VUV", "XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


# A reason code shaped like an ISO external code (AC01, AM04, NARR) goes to Rsn/Cd, anything else
# (Fedwire's E433, bank-proprietary codes) to Rsn/Prtry.
_ISO_REASON_RE = re.compile(r"[A-Z]{2}[0-9]{2}|[A-Z]{4}")
_AMOUNT_RE = re.compile(r"\+?(\d+(\.\d*)?|\.\d+)")
_DATE_RE = re.compile(r"(\d{4}-\d{2}-\d{2})(Z|[+-]\d{2}:\d{2})?")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")


# --------------------------------------------------------------------------------------------
# Values


def minor_units(currency: str) -> int:
    """Decimals of ``currency`` per ISO 4217 (2 unless listed as an exception)."""
    return _MINOR_UNITS.get(currency, 2)


def _check_currency(currency: str, what: str) -> str:
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise FormatError(f"{what}: currency must be a 3-letter ISO 4217 code, got {currency!r}")
    return currency


def _quantize(value: Decimal, currency: str) -> Decimal | None:
    """``value`` with exactly the currency's decimals, or None if that would lose digits."""
    quantum = Decimal(1).scaleb(-minor_units(currency))
    try:
        quantized = value.quantize(quantum)
    except InvalidOperation:
        return None
    return quantized if quantized == value else None


def _money(amount: Decimal, currency: str, what: str, *, positive: bool = True) -> str:
    """The XML text of a builder's amount: a Decimal within the currency's decimals."""
    _check_currency(currency, what)
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise FormatError(f"{what}: amount must be a finite decimal.Decimal, got {amount!r}")
    if amount < 0 or (positive and amount == 0):
        raise FormatError(f"{what}: amount must be {'positive' if positive else 'zero or more'}, got {amount}")
    quantized = _quantize(amount, currency)
    if quantized is None:
        raise FormatError(f"{what}: {amount} has more decimals than {currency} allows ({minor_units(currency)})")
    if len(quantized.as_tuple().digits) > 18:
        raise FormatError(f"{what}: {amount} has more than the 18 digits an ISO 20022 amount allows")
    return format(quantized, "f")


def _amount(el: Any) -> tuple[Decimal, str]:
    """A parsed amount element (text plus Ccy attribute), quantized to its currency's decimals."""
    text = (el.text or "").strip()
    currency = el.get("Ccy", "")
    if not _AMOUNT_RE.fullmatch(text):
        raise FormatError(f"invalid amount {text!r}", path=_path(el), line=el.sourceline)
    if not _CURRENCY_RE.fullmatch(currency):
        raise FormatError(f"invalid currency {currency!r}", path=_path(el), line=el.sourceline)
    quantized = _quantize(Decimal(text), currency)
    if quantized is None:
        raise FormatError(
            f"amount {text} has more decimals than {currency} allows ({minor_units(currency)})",
            path=_path(el),
            line=el.sourceline,
        )
    return quantized, currency


def _datetime_text(value: datetime, what: str) -> str:
    if not isinstance(value, datetime):
        raise FormatError(f"{what}: expected a datetime, got {value!r}")
    return value.isoformat()


def _date_text(value: date, what: str) -> str:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise FormatError(f"{what}: expected a date, got {value!r}")
    return value.isoformat()


def _parse_datetime(el: Any) -> datetime:
    text = (el.text or "").strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise FormatError(f"invalid date-time {text!r}", path=_path(el), line=el.sourceline) from exc


def _parse_date(el: Any) -> date:
    text = (el.text or "").strip()
    match = _DATE_RE.fullmatch(text)
    if match is not None:
        with suppress(ValueError):
            return date.fromisoformat(match.group(1))
    raise FormatError(f"invalid date {text!r}", path=_path(el), line=el.sourceline)


def _date_choice(el: Any | None) -> date | None:
    """A DateAndDateTimeChoice (Dt or DtTm) as a date; None if absent."""
    if el is None:
        return None
    dt = _find(el, "Dt")
    if dt is not None:
        return _parse_date(dt)
    dttm = _find(el, "DtTm")
    if dttm is not None:
        return _parse_datetime(dttm).date()
    raise FormatError("expected Dt or DtTm", path=_path(el), line=el.sourceline)


def _required_date_choice(el: Any) -> date:
    on = _date_choice(el)
    if on is None:  # pragma: no cover - _date_choice only returns None for a missing element
        raise FormatError("missing date", path=_path(el), line=el.sourceline)
    return on


def _text_field(value: str, what: str, max_length: int, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise FormatError(f"{what}: expected a string, got {value!r}")
    if required and not value.strip():
        raise FormatError(f"{what}: must not be empty")
    if len(value) > max_length or value != value.strip():
        raise FormatError(f"{what}: at most {max_length} characters without surrounding blanks, got {value!r}")
    return value


def _check_iban(value: str, what: str) -> str:
    if not stdnum_iban.is_valid(value) or value != stdnum_iban.compact(value):
        raise FormatError(f"{what}: invalid IBAN {value!r} (expected the compact, upper-case form)")
    return value


def _check_bic(value: str, what: str) -> str:
    if not stdnum_bic.is_valid(value) or value != stdnum_bic.compact(value):
        raise FormatError(f"{what}: invalid BIC {value!r}")
    return value


def _check_aba(value: str, what: str) -> str:
    if not stdnum_rtn.is_valid(value) or value != stdnum_rtn.compact(value):
        raise FormatError(f"{what}: invalid ABA routing number {value!r}")
    return value


def _check_country(value: str, what: str) -> str:
    if value and not _COUNTRY_RE.fullmatch(value):
        raise FormatError(f"{what}: country must be an ISO 3166 alpha-2 code, got {value!r}")
    return value


def _reason_path(code: str) -> str:
    return "Cd" if _ISO_REASON_RE.fullmatch(code) else "Prtry"


def _add_account_id(b: _Builder, parent: Any, identifier: str) -> None:
    """AccountIdentification under ``parent``: Id/IBAN when ``identifier`` is a valid IBAN, else Id/Othr/Id."""
    if stdnum_iban.is_valid(identifier) and identifier == stdnum_iban.compact(identifier):
        b.add(parent, "Id/IBAN", identifier)
    else:
        b.add(parent, "Id/Othr/Id", identifier)


def _add_account(b: _Builder, parent: Any, tag: str, identifier: str) -> None:
    """A CashAccount element ``tag`` identified by ``identifier`` (see _add_account_id)."""
    _add_account_id(b, b.add(parent, tag), identifier)


def _account_id(account: Any | None) -> str:
    """IBAN or, when absent, Othr/Id of a CashAccount element ("" if none)."""
    if account is None:
        return ""
    return _text(account, "Id/IBAN") or _text(account, "Id/Othr/Id")


def _party_name(party: Any | None) -> str:
    """Nm of a party, whether it is a PartyIdentification or a Party40Choice (Pty/Nm)."""
    if party is None:
        return ""
    return _text(party, "Nm") or _text(party, "Pty/Nm")


def _remittance(tx: Any) -> str:
    """Unstructured remittance lines, else the structured references (creditor ref, document numbers)."""
    lines = [(u.text or "").strip() for u in _findall(tx, "RmtInf/Ustrd")]
    lines = [line for line in lines if line]
    if lines:
        return " ".join(lines)
    refs = [(r.text or "").strip() for r in _findall(tx, "RmtInf/Strd/CdtrRefInf/Ref")]
    refs += [(n.text or "").strip() for n in _findall(tx, "RmtInf/Strd/RfrdDocInf/Nb")]
    return " ".join(ref for ref in refs if ref)


def _agent_ids(agent: Any | None) -> tuple[str, str]:
    """(BIC, ABA routing number) of a BranchAndFinancialInstitutionIdentification."""
    if agent is None:
        return "", ""
    bic = _text(agent, "FinInstnId/BICFI") or _text(agent, "FinInstnId/BIC")
    aba = ""
    member = _find(agent, "FinInstnId/ClrSysMmbId")
    if member is not None:
        system = _text(member, "ClrSysId/Cd")
        member_id = _text(member, "MmbId")
        if system == "USABA" or (not system and member_id.startswith("USABA")):
            aba = member_id.removeprefix("USABA")
    return bic, aba


def _check_control_sum(el: Any, declared_path: str, total: Decimal) -> None:
    declared = _find(el, declared_path)
    if declared is None:
        return
    text = (declared.text or "").strip()
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise FormatError(f"invalid {declared_path} {text!r}", path=_path(declared), line=declared.sourceline) from exc
    if value != total:
        raise FormatError(
            f"{declared_path} {text} does not equal the sum of the transactions ({total})",
            path=_path(declared),
            line=declared.sourceline,
        )


def _check_transfer_common(t: CreditTransfer, i: int) -> None:
    if not isinstance(t, CreditTransfer):
        raise FormatError(f"transfers[{i}]: expected a CreditTransfer, got {type(t).__name__}")
    _text_field(t.end_to_end_id, f"transfers[{i}].end_to_end_id", 35)
    _text_field(t.remittance, f"transfers[{i}].remittance", 140, required=False)
    _date_text(t.value_date, f"transfers[{i}].value_date")
    for role, party in (("debtor", t.debtor), ("creditor", t.creditor)):
        what = f"transfers[{i}].{role}"
        _text_field(party.name, f"{what}.name", 70)
        _check_country(party.country, f"{what}.country")
