"""ISO 20022 messages for the fiat rails: build, validate and parse.

Messages and versions
---------------------
- pain.001 (customer credit transfer initiation): built as pain.001.001.03 with sepaxml (SEPA, EUR);
  read in .001.03 (including the SIX Swiss ``pain.001.001.03.ch.02`` namespace, validated against the
  ISO .001.03 XSD after mapping the namespace) and .001.09.
- pacs.008 (FI to FI customer credit transfer): built and read as pacs.008.001.08, either as a Fedwire
  Funds wire (USD, agents by ABA routing number, accounts by account number) or as a cross-border
  SWIFT transfer (agents by BIC, accounts by IBAN, any currency). pacs.008.001.07 is read structurally.
- pain.002 / pacs.002 (payment status reports): built as pain.002.001.10 and pacs.002.001.10.
- camt.053 / camt.054 (statement, debit/credit notification): built as .001.08.

Validation policy of the parsers: a document of a version we ship an XSD for (``SCHEMAS``) is
validated against that XSD first; a version we have no XSD for is read structurally (every element
the parser needs must be present, amounts and codes are checked, but nothing else is). On top of the
XSD, every amount read must not carry more decimals than its currency has (ISO 20022 rule
"CurrencyAmount", which the XSDs do not enforce), and declared money control totals (CtrlSum,
TtlIntrBkSttlmAmt) must equal the sum of the transactions.

A document may come bare (root ``Document``) or wrapped together with a business application
header (``<AppHdr>`` head.001) under any root element, as the prowide samples are.
"""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import xmlschema
from lxml import etree
from sepaxml import SepaTransfer
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.us import rtn as stdnum_rtn

__all__ = [
    "SCHEMAS",
    "Balance",
    "Booking",
    "CreditTransfer",
    "FormatError",
    "Party",
    "PaymentStatus",
    "Statement",
    "build_camt053",
    "build_camt054",
    "build_pacs002",
    "build_pacs008",
    "build_pain001",
    "build_pain002",
    "detect",
    "minor_units",
    "parse_camt053",
    "parse_camt054",
    "parse_pacs008",
    "parse_pain001",
    "parse_status_report",
    "validate",
]

XSD_DIR = Path(__file__).resolve().parent / "xsd"
ISO_NS = "urn:iso:std:iso:20022:tech:xsd:"
SIX_NS = "http://www.six-interbank-clearing.com/de/"

# Message versions we ship an XSD for (rails/formats/xsd/<name>.xsd).
SCHEMAS: frozenset[str] = frozenset(
    {
        "camt.053.001.02",
        "camt.053.001.08",
        "camt.054.001.02",
        "camt.054.001.08",
        "pacs.002.001.10",
        "pacs.008.001.08",
        "pain.001.001.03",
        "pain.001.001.09",
        "pain.002.001.10",
        "pain.002.001.11",
        "sese.023.001.11",
        "sese.025.001.11",
    }
)

_MESSAGE_RE = re.compile(r"[a-z]{4}\.\d{3}\.\d{3}\.\d{2}")
_SIX_RE = re.compile(re.escape(SIX_NS) + r"([a-z]{4}\.\d{3}\.\d{3}\.\d{2})\.ch\.(\d{2})\.xsd")

# ISO 4217 minor units that differ from the usual two decimals.
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI"], 0),
    **dict.fromkeys(["VND", "VUV", "XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}

# ISO external code sets used by the status builders (ExternalPaymentTransactionStatus1Code and
# ExternalPaymentGroupStatus1Code).
TRANSACTION_STATUSES = frozenset(
    {"ACCC", "ACCP", "ACFC", "ACIS", "ACPD", "ACSC", "ACSP", "ACTC", "ACWC", "ACWP", "BLCK", "CANC", "PATC"}
    | {"PDNG", "PRES", "RCVD", "RJCT"}
)
GROUP_STATUSES = TRANSACTION_STATUSES | {"PART"}
ENTRY_STATUSES = frozenset({"BOOK", "PDNG", "INFO", "FUTR"})
BALANCE_TYPES = frozenset({"OPBD", "PRCD", "OPAV", "ITBD", "ITAV", "CLBD", "CLAV", "FWAV", "INFO", "XPCD"})
# A reason code shaped like an ISO external code (AC01, AM04, NARR) goes to Rsn/Cd, anything else
# (Fedwire's E433, bank-proprietary codes) to Rsn/Prtry.
_ISO_REASON_RE = re.compile(r"[A-Z]{2}[0-9]{2}|[A-Z]{4}")
_AMOUNT_RE = re.compile(r"\+?(\d+(\.\d*)?|\.\d+)")
_DATE_RE = re.compile(r"(\d{4}-\d{2}-\d{2})(Z|[+-]\d{2}:\d{2})?")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")


class FormatError(ValueError):
    """A message or file that is malformed, invalid against its schema, or not supported.

    ``path`` is the element path (or record) at fault and ``line`` its line number, when known;
    both are part of the message.
    """

    def __init__(self, message: str, *, path: str = "", line: int | None = None) -> None:
        self.detail = message
        self.path = path
        self.line = line
        where = ""
        if path:
            where += f" at {path}"
        if line is not None:
            where += f" (line {line})"
        super().__init__(message + where)


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


# --------------------------------------------------------------------------------------------
# XML plumbing


def _parse_xml(xml: bytes | str) -> Any:
    """Parse untrusted XML: no DTD, no entities, no network."""
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    if not isinstance(xml, bytes | bytearray):
        raise FormatError(f"expected XML as bytes, got {type(xml).__name__}")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(bytes(xml), parser)
    except etree.XMLSyntaxError as exc:
        raise FormatError(f"not well-formed XML: {exc.msg}", line=exc.lineno) from exc
    if root is None:
        raise FormatError("empty XML document")
    if root.getroottree().docinfo.doctype:
        raise FormatError("DOCTYPE declarations are not accepted", line=1)
    return root


def _local(el: Any) -> str:
    return etree.QName(el).localname


def _is_element(node: Any) -> bool:
    return isinstance(node.tag, str)


def _path(el: Any) -> str:
    """Element path by local names, with [n] where siblings share a name: /Document/A/B[2]."""
    parts: list[str] = []
    while el is not None:
        name = _local(el)
        parent = el.getparent()
        if parent is not None:
            same = [child for child in parent if _is_element(child) and _local(child) == name]
            if len(same) > 1:
                name += f"[{same.index(el) + 1}]"
        parts.append(name)
        el = parent
    return "/" + "/".join(reversed(parts))


def _xpath(path: str) -> str:
    return "/".join(f"{{*}}{part}" for part in path.split("/"))


def _find(el: Any, path: str) -> Any:
    return el.find(_xpath(path))


def _findall(el: Any, path: str) -> list[Any]:
    return el.findall(_xpath(path))


def _text(el: Any, path: str) -> str:
    found = _find(el, path)
    if found is None or found.text is None:
        return ""
    return found.text.strip()


def _require(el: Any, path: str) -> Any:
    found = _find(el, path)
    if found is None:
        raise FormatError(f"missing mandatory element {path}", path=_path(el), line=el.sourceline)
    return found


def _require_text(el: Any, path: str) -> str:
    found = _require(el, path)
    text = (found.text or "").strip()
    if not text:
        raise FormatError("empty mandatory element", path=_path(found), line=found.sourceline)
    return text


def _document(root: Any) -> Any:
    """The Document element: the root itself, or the one Document child of a wrapper (AppHdr)."""
    if _local(root) == "Document":
        return root
    documents = [child for child in root if _is_element(child) and _local(child) == "Document"]
    if len(documents) != 1:
        raise FormatError("no ISO 20022 Document element", path=_path(root), line=root.sourceline)
    document = documents[0]
    header = next((child for child in root if _is_element(child) and _local(child) == "AppHdr"), None)
    if header is not None:
        declared = _text(header, "MsgDefIdr")
        actual = _message_of(document)
        if declared and declared != actual:
            raise FormatError(
                f"AppHdr declares {declared} but the Document is {actual}",
                path=_path(_find(header, "MsgDefIdr")),
                line=header.sourceline,
            )
    return document


def _message_of(document: Any) -> str:
    namespace = etree.QName(document).namespace
    if not namespace:
        raise FormatError(
            "Document has no namespace, so its message type and version are unknown",
            path=_path(document),
            line=document.sourceline,
        )
    if namespace.startswith(ISO_NS) and _MESSAGE_RE.fullmatch(namespace[len(ISO_NS) :]):
        return namespace[len(ISO_NS) :]
    six = _SIX_RE.fullmatch(namespace)
    if six:
        return f"{six.group(1)}.ch.{six.group(2)}"
    raise FormatError(f"unknown message namespace {namespace!r}", path=_path(document), line=document.sourceline)


def _base_message(message: str) -> str:
    """pain.001.001.03.ch.02 -> pain.001.001.03; an ISO message id is returned as is."""
    return message[:15]


def detect(xml: bytes) -> str:
    """The message id (e.g. ``camt.053.001.08``) from the Document's namespace.

    The SIX Swiss variants come back with their suffix, e.g. ``pain.001.001.03.ch.02``.
    """
    return _message_of(_document(_parse_xml(xml)))


@cache
def _schema(name: str) -> xmlschema.XMLSchema:
    if name not in SCHEMAS:
        raise FormatError(f"no XSD for {name}; schemas available: {', '.join(sorted(SCHEMAS))}")
    return xmlschema.XMLSchema(str(XSD_DIR / f"{name}.xsd"))


@cache
def _fast_schema(name: str) -> etree.XMLSchema:
    """libxml2's validator for the same XSD: ~40x faster than xmlschema, so valid messages (the
    hot path: every message built or received) are checked with it, and xmlschema is asked only
    to explain an invalid one."""
    _schema(name)  # same "no XSD" error
    return etree.XMLSchema(etree.parse(str(XSD_DIR / f"{name}.xsd")))


def _strip_namespaces(text: str) -> str:
    return re.sub(r"\{[^}]*\}", "", text)


def _validate_document(document: Any, schema: str) -> None:
    message = _message_of(document)
    target = document
    if message != schema:
        if _base_message(message) != schema:
            raise FormatError(f"document is {message}, not {schema}", path=_path(document), line=document.sourceline)
        # A SIX Swiss variant: same structure as the ISO version, validate it under the ISO namespace.
        target = copy.deepcopy(document)
        iso = ISO_NS + schema
        for el in target.iter():
            if _is_element(el):
                el.tag = f"{{{iso}}}{_local(el)}"
    if _fast_schema(schema).validate(target):
        return
    # Invalid: ask xmlschema for the first error, with the element path and line it names.
    error = next(iter(_schema(schema).iter_errors(target)), None)
    if error is None:  # the two validators disagree: trust the stricter one and say what libxml2 saw
        last = _fast_schema(schema).error_log.last_error
        raise FormatError(f"invalid {schema}: {last.message}", path=last.path or "", line=last.line)
    if error is not None:
        raise FormatError(
            f"invalid {schema}: {_strip_namespaces(error.reason or str(error))}",
            path=error.path or "",
            line=error.sourceline,
        )


def validate(xml: bytes, schema: str) -> None:
    """Validate ``xml`` against the XSD of ``schema`` (e.g. "pain.001.001.03"); raise FormatError."""
    _validate_document(_document(_parse_xml(xml)), schema)


def _load(xml: bytes, *families: str, readable: set[str] | None = None) -> tuple[Any, str]:
    """Parse, locate the Document, check its message family and validate when we ship its XSD.

    ``readable`` limits the versions accepted without an XSD (None: any version of the family).
    """
    document = _document(_parse_xml(xml))
    message = _message_of(document)
    base = _base_message(message)
    family = base[:8]
    if family not in families:
        raise FormatError(
            f"expected {' or '.join(families)}, got {message}", path=_path(document), line=document.sourceline
        )
    if base in SCHEMAS:
        _validate_document(document, base)
    elif readable is not None and base not in readable:
        supported = sorted({*readable, *(s for s in SCHEMAS if s.startswith(family))})
        raise FormatError(
            f"{message} is not supported (readable versions: {', '.join(supported)})",
            path=_path(document),
            line=document.sourceline,
        )
    return document, base


class _Builder:
    """Namespaced element builder for one Document."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.namespace = ISO_NS + message
        self.root = etree.Element(self._tag("Document"), nsmap={None: self.namespace})

    def _tag(self, name: str) -> str:
        return f"{{{self.namespace}}}{name}"

    def add(self, parent: Any, path: str, text: str | None = None, **attrib: str) -> Any:
        el = parent
        for part in path.split("/"):
            el = etree.SubElement(el, self._tag(part))
        try:
            if text is not None:
                el.text = text
            for key, value in attrib.items():
                el.set(key, value)
        except ValueError as exc:  # lxml refuses control characters and other non-XML text
            raise FormatError(f"{path}: {exc}") from exc
        return el

    def to_bytes(self) -> bytes:
        return etree.tostring(self.root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    def finish(self) -> bytes:
        out = self.to_bytes()
        validate(out, self.message)
        return out


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


# --------------------------------------------------------------------------------------------
# pain.001


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


def build_pain001(*, message_id: str, created_at: datetime, transfers: list[CreditTransfer]) -> bytes:
    """A SEPA credit transfer initiation, pain.001.001.03, produced with sepaxml.

    All transfers share one debtor; currency EUR; debtor and creditors by IBAN + BIC. Transfers
    are grouped into one payment-information block per value date (requested execution date), the
    blocks in order of first appearance, so parse_pain001 returns them grouped by date.
    sepaxml's random ids and clock are replaced by ``message_id`` (PmtInfId: ``message_id`` or
    ``message_id-n``) and ``created_at``; BtchBookg is false so that each transfer is booked (and
    reported on the statement) on its own. Names are transliterated to ASCII by sepaxml.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    if not transfers:
        raise FormatError("build_pain001: no transfers")
    debtor = transfers[0].debtor
    payments: list[dict[str, Any]] = []
    for i, t in enumerate(transfers):
        _check_transfer_common(t, i)
        if t.debtor != debtor:
            raise FormatError(f"transfers[{i}]: all transfers of a pain.001 must share one debtor")
        if t.currency != "EUR":
            raise FormatError(f"transfers[{i}]: a SEPA credit transfer is in EUR, got {t.currency!r}")
        cents = int(Decimal(_money(t.amount, t.currency, f"transfers[{i}].amount")) * 100)
        creditor = t.creditor
        payment: dict[str, Any] = {
            "name": creditor.name,
            "IBAN": _check_iban(creditor.iban, f"transfers[{i}].creditor.iban"),
            "BIC": _check_bic(creditor.bic, f"transfers[{i}].creditor.bic"),
            "amount": cents,
            "execution_date": t.value_date,
            "description": t.remittance,
            "endtoend_id": t.end_to_end_id,
        }
        if creditor.country:
            payment["address"] = {"country": creditor.country}
        payments.append(payment)
    config: dict[str, Any] = {
        "name": debtor.name,
        "IBAN": _check_iban(debtor.iban, "debtor.iban"),
        "BIC": _check_bic(debtor.bic, "debtor.bic"),
        "batch": True,
        "currency": "EUR",
    }
    if debtor.country:
        config["address"] = {"country": debtor.country}
    sepa = SepaTransfer(config, schema="pain.001.001.03", clean=True)
    for payment in payments:
        sepa.add_payment(payment)
    root = _parse_xml(sepa.export(validate=False))

    # Deterministic identifiers and time instead of sepaxml's random ones and its clock.
    initiation = _require(root, "CstmrCdtTrfInitn")
    _require(initiation, "GrpHdr/MsgId").text = message_id
    _require(initiation, "GrpHdr/CreDtTm").text = created_at.isoformat()
    blocks = _findall(initiation, "PmtInf")
    for n, block in enumerate(blocks, start=1):
        suffix = "" if len(blocks) == 1 else f"-{n}"
        _require(block, "PmtInfId").text = message_id[: 35 - len(suffix)] + suffix
        _require(block, "BtchBookg").text = "false"
        for remittance in _findall(block, "CdtTrfTxInf/RmtInf"):
            if not _text(remittance, "Ustrd"):
                remittance.getparent().remove(remittance)
    out = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    validate(out, "pain.001.001.03")
    return out


def parse_pain001(xml: bytes) -> tuple[str, list[CreditTransfer]]:
    """(message id, transfers) of a pain.001.001.03 or .001.09.

    The SIX Swiss ``pain.001.001.03.ch.02`` is accepted and validated against the ISO .001.03 XSD
    under the ISO namespace. An EqvtAmt transfer (amount given in the debtor's currency) comes back
    with that amount and currency. Party.country is PstlAdr/Ctry ("" if absent). The control sum
    (GrpHdr and PmtInf CtrlSum) must match; NbOfTxs is not checked (the real PostFinance sample
    declares 7 and carries 8).
    """
    document, _ = _load(xml, "pain.001", readable=set())
    initiation = _require(document, "CstmrCdtTrfInitn")
    message_id = _require_text(initiation, "GrpHdr/MsgId")
    transfers: list[CreditTransfer] = []
    total = Decimal(0)
    for block in _findall(initiation, "PmtInf"):
        execution = _require(block, "ReqdExctnDt")
        # .001.03: <ReqdExctnDt>2020-07-28</ReqdExctnDt>; .001.09: <ReqdExctnDt><Dt>...</Dt></ReqdExctnDt>
        value_date = _parse_date(execution) if len(execution) == 0 else _required_date_choice(execution)
        debtor_bic, debtor_aba = _agent_ids(_find(block, "DbtrAgt"))
        debtor_account = _require(block, "DbtrAcct")
        debtor = Party(
            name=_text(block, "Dbtr/Nm"),
            country=_text(block, "Dbtr/PstlAdr/Ctry"),
            iban=_text(debtor_account, "Id/IBAN"),
            bic=debtor_bic,
            aba=debtor_aba,
            account=_text(debtor_account, "Id/Othr/Id"),
        )
        block_total = Decimal(0)
        for tx in _findall(block, "CdtTrfTxInf"):
            amount_el = _find(tx, "Amt/InstdAmt")
            if amount_el is None:
                amount_el = _require(tx, "Amt/EqvtAmt/Amt")
            amount, currency = _amount(amount_el)
            creditor_bic, creditor_aba = _agent_ids(_find(tx, "CdtrAgt"))
            creditor_account = _find(tx, "CdtrAcct")
            creditor = Party(
                name=_text(tx, "Cdtr/Nm"),
                country=_text(tx, "Cdtr/PstlAdr/Ctry"),
                iban=_text(creditor_account, "Id/IBAN") if creditor_account is not None else "",
                bic=creditor_bic,
                aba=creditor_aba,
                account=_text(creditor_account, "Id/Othr/Id") if creditor_account is not None else "",
            )
            transfers.append(
                CreditTransfer(
                    end_to_end_id=_require_text(tx, "PmtId/EndToEndId"),
                    amount=amount,
                    currency=currency,
                    debtor=debtor,
                    creditor=creditor,
                    remittance=_remittance(tx),
                    value_date=value_date,
                )
            )
            block_total += amount
        _check_control_sum(block, "CtrlSum", block_total)
        total += block_total
    _check_control_sum(initiation, "GrpHdr/CtrlSum", total)
    return message_id, transfers


# --------------------------------------------------------------------------------------------
# pacs.008


def _uetr(message_id: str, end_to_end_id: str) -> str:
    """A UUIDv4-shaped UETR derived from the message and end-to-end ids (stable across rebuilds)."""
    digest = hashlib.sha256(f"{message_id}\x1f{end_to_end_id}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _add_agent(b: _Builder, parent: Any, tag: str, party: Party, fedwire: bool, what: str) -> None:
    fin = b.add(parent, f"{tag}/FinInstnId")
    if not fedwire and not party.bic and not party.aba:
        raise FormatError(f"{what}: a BIC (or an ABA routing number) identifies the agent")
    if party.bic and not fedwire:
        b.add(fin, "BICFI", _check_bic(party.bic, f"{what}.bic"))
    if party.aba or fedwire:
        member = b.add(fin, "ClrSysMmbId")
        b.add(member, "ClrSysId/Cd", "USABA")
        b.add(member, "MmbId", _check_aba(party.aba, f"{what}.aba"))


def _add_party(b: _Builder, parent: Any, tag: str, party: Party) -> None:
    party_el = b.add(parent, tag)
    b.add(party_el, "Nm", party.name)
    if party.country:
        b.add(party_el, "PstlAdr/Ctry", party.country)


def _add_party_account(b: _Builder, parent: Any, tag: str, party: Party, fedwire: bool, what: str) -> None:
    if fedwire:
        if not party.account:
            raise FormatError(f"{what}: a Fedwire party is identified by its account number (account)")
        b.add(parent, f"{tag}/Id/Othr/Id", _text_field(party.account, f"{what}.account", 34))
    elif party.iban:
        b.add(parent, f"{tag}/Id/IBAN", _check_iban(party.iban, f"{what}.iban"))
    elif party.account:
        b.add(parent, f"{tag}/Id/Othr/Id", _text_field(party.account, f"{what}.account", 34))
    else:
        raise FormatError(f"{what}: an IBAN (or an account number) identifies the account")


def build_pacs008(
    *,
    message_id: str,
    created_at: datetime,
    transfers: list[CreditTransfer],
    settlement_method: str = "CLRG",
    clearing_system: str = "FDW",
) -> bytes:
    """A pacs.008.001.08, validated against its XSD.

    With ``settlement_method="CLRG"`` and ``clearing_system="FDW"`` it is a Fedwire Funds customer
    transfer: USD, local instrument CTRC, charges SLEV, agents (debtor/creditor and instructing/
    instructed) by ABA routing number (ClrSysMmbId USABA), accounts by account number (Othr/Id);
    a party's BIC and IBAN are not sent. Any other combination (e.g. ``settlement_method="INDA"``,
    ``clearing_system=""``) is a cross-border SWIFT transfer: any currency, charges SHAR, agents by
    BIC (plus ABA if given), accounts by IBAN (account number if there is no IBAN). The instructing
    and instructed agents are the debtor's and creditor's agents (direct relationship). The UETR is
    derived from message and end-to-end id.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    if settlement_method not in {"CLRG", "INDA", "INGA", "COVE"}:
        raise FormatError(f"settlement_method must be CLRG, INDA, INGA or COVE, got {settlement_method!r}")
    if settlement_method == "CLRG" and not clearing_system:
        raise FormatError("settlement_method CLRG needs a clearing_system (e.g. FDW)")
    if clearing_system and (not isinstance(clearing_system, str) or len(clearing_system) > 3):
        raise FormatError(f"clearing_system must be an ISO cash clearing system code, got {clearing_system!r}")
    fedwire = settlement_method == "CLRG" and clearing_system == "FDW"
    if not transfers:
        raise FormatError("build_pacs008: no transfers")

    b = _Builder("pacs.008.001.08")
    transfer_el = b.add(b.root, "FIToFICstmrCdtTrf")
    header = b.add(transfer_el, "GrpHdr")
    b.add(header, "MsgId", message_id)
    b.add(header, "CreDtTm", created_at.isoformat())
    b.add(header, "NbOfTxs", str(len(transfers)))
    settlement = b.add(header, "SttlmInf")
    b.add(settlement, "SttlmMtd", settlement_method)
    if clearing_system:
        b.add(settlement, "ClrSys/Cd", clearing_system)
    for i, t in enumerate(transfers):
        _check_transfer_common(t, i)
        if fedwire and t.currency != "USD":
            raise FormatError(f"transfers[{i}]: a Fedwire transfer is in USD, got {t.currency!r}")
        amount = _money(t.amount, t.currency, f"transfers[{i}].amount")
        tx = b.add(transfer_el, "CdtTrfTxInf")
        b.add(tx, "PmtId/EndToEndId", t.end_to_end_id)
        pmt_id = tx[0]
        b.add(pmt_id, "UETR", _uetr(message_id, t.end_to_end_id))
        if fedwire:
            b.add(tx, "PmtTpInf/LclInstrm/Prtry", "CTRC")
        b.add(tx, "IntrBkSttlmAmt", amount, Ccy=t.currency)
        b.add(tx, "IntrBkSttlmDt", t.value_date.isoformat())
        b.add(tx, "ChrgBr", "SLEV" if settlement_method == "CLRG" else "SHAR")
        _add_agent(b, tx, "InstgAgt", t.debtor, fedwire, f"transfers[{i}].debtor")
        _add_agent(b, tx, "InstdAgt", t.creditor, fedwire, f"transfers[{i}].creditor")
        _add_party(b, tx, "Dbtr", t.debtor)
        _add_party_account(b, tx, "DbtrAcct", t.debtor, fedwire, f"transfers[{i}].debtor")
        _add_agent(b, tx, "DbtrAgt", t.debtor, fedwire, f"transfers[{i}].debtor")
        _add_agent(b, tx, "CdtrAgt", t.creditor, fedwire, f"transfers[{i}].creditor")
        _add_party(b, tx, "Cdtr", t.creditor)
        _add_party_account(b, tx, "CdtrAcct", t.creditor, fedwire, f"transfers[{i}].creditor")
        if t.remittance:
            b.add(tx, "RmtInf/Ustrd", t.remittance)
    return b.finish()


def _transfer_party(tx: Any, role: str) -> Party:
    party = _find(tx, role)
    account = _find(tx, f"{role}Acct")
    bic, aba = _agent_ids(_find(tx, f"{role}Agt"))
    country = ""
    if party is not None:
        country = _text(party, "PstlAdr/Ctry") or _text(party, "CtryOfRes")
    return Party(
        name=_party_name(party),
        country=country,
        iban=_text(account, "Id/IBAN") if account is not None else "",
        bic=bic,
        aba=aba,
        account=_text(account, "Id/Othr/Id") if account is not None else "",
    )


def parse_pacs008(xml: bytes) -> tuple[str, list[CreditTransfer]]:
    """(message id, transfers) of a pacs.008.001.08 (XSD-validated) or .001.07 (read structurally).

    A Party's ``aba`` is its agent's ClrSysMmbId when the clearing system is USABA, ``bic`` its
    agent's BICFI; ``iban``/``account`` come from the account. The value date is the transaction's
    IntrBkSttlmDt, else the group header's. CtrlSum and TtlIntrBkSttlmAmt, when present, must equal
    the sum of IntrBkSttlmAmt (the prowide .07 sample declares 10000 for a single 5000 transaction
    and is rejected for that).
    """
    document, _ = _load(xml, "pacs.008", readable={"pacs.008.001.07"})
    transfer_el = _require(document, "FIToFICstmrCdtTrf")
    header = _require(transfer_el, "GrpHdr")
    message_id = _require_text(header, "MsgId")
    header_date = _find(header, "IntrBkSttlmDt")
    transfers: list[CreditTransfer] = []
    total = Decimal(0)
    for tx in _findall(transfer_el, "CdtTrfTxInf"):
        amount, currency = _amount(_require(tx, "IntrBkSttlmAmt"))
        date_el = _find(tx, "IntrBkSttlmDt")
        if date_el is None:
            date_el = header_date
        if date_el is None:
            raise FormatError("no interbank settlement date (IntrBkSttlmDt)", path=_path(tx), line=tx.sourceline)
        transfers.append(
            CreditTransfer(
                end_to_end_id=_require_text(tx, "PmtId/EndToEndId"),
                amount=amount,
                currency=currency,
                debtor=_transfer_party(tx, "Dbtr"),
                creditor=_transfer_party(tx, "Cdtr"),
                remittance=_remittance(tx),
                value_date=_parse_date(date_el),
            )
        )
        total += amount
    _check_control_sum(header, "CtrlSum", total)
    _check_control_sum(header, "TtlIntrBkSttlmAmt", total)
    return message_id, transfers


# --------------------------------------------------------------------------------------------
# pain.002 / pacs.002


def _check_statuses(
    statuses: list[PaymentStatus], original_message_id: str, original_message_type: str
) -> tuple[PaymentStatus | None, list[PaymentStatus]]:
    _text_field(original_message_id, "original_message_id", 35)
    # OrgnlMsgNmId is Max35Text: an ISO message id such as pacs.008.001.08, or e.g. "NACHA".
    _text_field(original_message_type, "original_message_type", 35)
    group: PaymentStatus | None = None
    transactions: list[PaymentStatus] = []
    for i, s in enumerate(statuses):
        if not isinstance(s, PaymentStatus):
            raise FormatError(f"statuses[{i}]: expected a PaymentStatus, got {type(s).__name__}")
        if s.original_message_id != original_message_id:
            raise FormatError(
                f"statuses[{i}]: original_message_id {s.original_message_id!r} is not {original_message_id!r}"
            )
        _text_field(s.reason_text, f"statuses[{i}].reason_text", 105, required=False)
        if s.reason_code:
            _text_field(s.reason_code, f"statuses[{i}].reason_code", 35)
        if s.reason_text and not s.reason_code:
            raise FormatError(f"statuses[{i}]: reason_text needs a reason_code")
        if s.end_to_end_id:
            _text_field(s.end_to_end_id, f"statuses[{i}].end_to_end_id", 35)
            if s.status not in TRANSACTION_STATUSES:
                raise FormatError(f"statuses[{i}]: unknown transaction status {s.status!r}")
            transactions.append(s)
        else:
            if group is not None:
                raise FormatError(f"statuses[{i}]: only one group status (empty end_to_end_id) per report")
            if s.status not in GROUP_STATUSES:
                raise FormatError(f"statuses[{i}]: unknown group status {s.status!r}")
            group = s
    if not statuses:
        raise FormatError("no statuses to report")
    return group, transactions


def _add_reason(b: _Builder, parent: Any, status: PaymentStatus) -> None:
    if status.reason_code:
        reason = b.add(parent, "StsRsnInf")
        b.add(reason, f"Rsn/{_reason_path(status.reason_code)}", status.reason_code)
        if status.reason_text:
            b.add(reason, "AddtlInf", status.reason_text)


def _add_original_group(
    b: _Builder, parent: Any, group: PaymentStatus | None, message_id: str, message_type: str
) -> None:
    original = b.add(parent, "OrgnlGrpInfAndSts")
    b.add(original, "OrgnlMsgId", message_id)
    b.add(original, "OrgnlMsgNmId", message_type)
    if group is not None:
        b.add(original, "GrpSts", group.status)
        _add_reason(b, original, group)


def _add_transaction_status(b: _Builder, tx: Any, status: PaymentStatus) -> None:
    b.add(tx, "OrgnlEndToEndId", status.end_to_end_id)
    if status.uetr:
        b.add(tx, "OrgnlUETR", status.uetr)
    b.add(tx, "TxSts", status.status)
    _add_reason(b, tx, status)


def build_pain002(
    *,
    message_id: str,
    created_at: datetime,
    original_message_id: str,
    original_message_type: str,
    statuses: list[PaymentStatus],
) -> bytes:
    """A pain.002.001.10 customer payment status report, validated against its XSD.

    A status with an empty end_to_end_id becomes the group status (GrpSts, at most one); the others
    are transaction statuses, reported in one OrgnlPmtInfAndSts whose OrgnlPmtInfId is the original
    message id (PaymentStatus carries no payment-information id). Reason codes shaped like ISO codes
    (AC01, NARR) go to Rsn/Cd, others to Rsn/Prtry; reason_text is at most 105 characters.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    group, transactions = _check_statuses(statuses, original_message_id, original_message_type)
    b = _Builder("pain.002.001.10")
    report = b.add(b.root, "CstmrPmtStsRpt")
    b.add(report, "GrpHdr/MsgId", message_id)
    b.add(report[0], "CreDtTm", created_at.isoformat())
    _add_original_group(b, report, group, original_message_id, original_message_type)
    if transactions:
        block = b.add(report, "OrgnlPmtInfAndSts")
        b.add(block, "OrgnlPmtInfId", original_message_id)
        for status in transactions:
            _add_transaction_status(b, b.add(block, "TxInfAndSts"), status)
    return b.finish()


def build_pacs002(
    *,
    message_id: str,
    created_at: datetime,
    original_message_id: str,
    original_message_type: str,
    statuses: list[PaymentStatus],
) -> bytes:
    """A pacs.002.001.10 FI to FI payment status report, validated against the (Fedwire) XSD.

    Same conventions as build_pain002; each TxInfAndSts carries its OrgnlGrpInf, as Fedwire's do,
    and the OrgnlUETR when the status has one.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    group, transactions = _check_statuses(statuses, original_message_id, original_message_type)
    b = _Builder("pacs.002.001.10")
    report = b.add(b.root, "FIToFIPmtStsRpt")
    b.add(report, "GrpHdr/MsgId", message_id)
    b.add(report[0], "CreDtTm", created_at.isoformat())
    if group is not None:
        _add_original_group(b, report, group, original_message_id, original_message_type)
    for status in transactions:
        tx = b.add(report, "TxInfAndSts")
        b.add(tx, "OrgnlGrpInf/OrgnlMsgId", original_message_id)
        b.add(tx[0], "OrgnlMsgNmId", original_message_type)
        _add_transaction_status(b, tx, status)
    return b.finish()


def _reason(el: Any) -> tuple[str, str]:
    """(code, text) of the first StsRsnInf under ``el``; all its AddtlInf lines joined by a blank."""
    info = _find(el, "StsRsnInf")
    if info is None:
        return "", ""
    code = _text(info, "Rsn/Cd") or _text(info, "Rsn/Prtry")
    text = " ".join((line.text or "").strip() for line in _findall(info, "AddtlInf") if (line.text or "").strip())
    return code, text


def parse_status_report(xml: bytes) -> list[PaymentStatus]:
    """The statuses of a pain.002 (any version; .10 and .11 XSD-validated, others such as the SIX
    ``pain.002.001.03.ch.02`` read structurally) or a pacs.002 (.10 XSD-validated, others read
    structurally).

    Group statuses (GrpSts) come first with an empty end_to_end_id, then per transaction. A
    payment-information status (PmtInfSts) without transactions is reported with an empty
    end_to_end_id; a transaction without TxSts inherits PmtInfSts, then GrpSts (and their reason).
    """
    document, _ = _load(xml, "pain.002", "pacs.002")
    report = next((child for child in document if _is_element(child)), None)
    if report is None or _local(report) not in {"CstmrPmtStsRpt", "FIToFIPmtStsRpt"}:
        raise FormatError("missing CstmrPmtStsRpt / FIToFIPmtStsRpt", path=_path(document), line=document.sourceline)

    statuses: list[PaymentStatus] = []
    group_status = ""
    group_reason = ("", "")
    default_message_id = ""
    for original in _findall(report, "OrgnlGrpInfAndSts"):
        message_id = _require_text(original, "OrgnlMsgId")
        default_message_id = default_message_id or message_id
        status = _text(original, "GrpSts")
        if status:
            group_status, group_reason = status, _reason(original)
            statuses.append(PaymentStatus(message_id, "", status, *group_reason))

    def transaction(tx: Any, inherited: str, inherited_reason: tuple[str, str]) -> PaymentStatus:
        message_id = _text(tx, "OrgnlGrpInf/OrgnlMsgId") or default_message_id
        if not message_id:
            raise FormatError("no original message id (OrgnlMsgId)", path=_path(tx), line=tx.sourceline)
        status = _text(tx, "TxSts")
        reason = _reason(tx)
        if not status:
            status, reason = inherited, (reason if reason[0] else inherited_reason)
        if not status:
            raise FormatError("no status (TxSts) for the transaction", path=_path(tx), line=tx.sourceline)
        end_to_end_id = _text(tx, "OrgnlEndToEndId") or _text(tx, "OrgnlTxId") or _text(tx, "OrgnlInstrId")
        return PaymentStatus(message_id, end_to_end_id, status, *reason, uetr=_text(tx, "OrgnlUETR"))

    for block in _findall(report, "OrgnlPmtInfAndSts"):
        block_status = _text(block, "PmtInfSts")
        block_reason = _reason(block) if block_status else ("", "")
        transactions = _findall(block, "TxInfAndSts")
        if not transactions and block_status:
            statuses.append(PaymentStatus(default_message_id, "", block_status, *block_reason))
        for tx in transactions:
            statuses.append(
                transaction(tx, block_status or group_status, block_reason if block_status else group_reason)
            )
    for tx in _findall(report, "TxInfAndSts"):
        statuses.append(transaction(tx, group_status, group_reason))
    return statuses


# --------------------------------------------------------------------------------------------
# camt.053 / camt.054


def _check_booking(booking: Booking, account: str, what: str) -> str:
    if not isinstance(booking, Booking):
        raise FormatError(f"{what}: expected a Booking, got {type(booking).__name__}")
    if booking.account != account:
        raise FormatError(f"{what}: account {booking.account!r} is not the report's account {account!r}")
    if booking.credit_debit not in {"CRDT", "DBIT"}:
        raise FormatError(f"{what}: credit_debit must be CRDT or DBIT, got {booking.credit_debit!r}")
    if booking.status not in ENTRY_STATUSES:
        raise FormatError(f"{what}: status must be one of {sorted(ENTRY_STATUSES)}, got {booking.status!r}")
    _date_text(booking.booking_date, f"{what}.booking_date")
    _date_text(booking.value_date, f"{what}.value_date")
    _text_field(booking.entry_ref, f"{what}.entry_ref", 35, required=False)
    _text_field(booking.end_to_end_id, f"{what}.end_to_end_id", 35, required=False)
    _text_field(booking.counterparty_name, f"{what}.counterparty_name", 140, required=False)
    _text_field(booking.counterparty_account, f"{what}.counterparty_account", 34, required=False)
    _text_field(booking.remittance, f"{what}.remittance", 140, required=False)
    _text_field(booking.return_reason, f"{what}.return_reason", 35, required=False)
    _text_field(booking.charge_type, f"{what}.charge_type", 4, required=False)
    if booking.charges:
        _money(booking.charges, booking.currency, f"{what}.charges")
    return _money(booking.amount, booking.currency, f"{what}.amount", positive=False)


def _add_entry(b: _Builder, parent: Any, booking: Booking, amount: str) -> None:
    entry = b.add(parent, "Ntry")
    if booking.entry_ref:
        b.add(entry, "NtryRef", booking.entry_ref)
    b.add(entry, "Amt", amount, Ccy=booking.currency)
    b.add(entry, "CdtDbtInd", booking.credit_debit)
    b.add(entry, "Sts/Cd", booking.status)
    b.add(entry, "BookgDt/Dt", booking.booking_date.isoformat())
    b.add(entry, "ValDt/Dt", booking.value_date.isoformat())
    if booking.entry_ref:
        b.add(entry, "AcctSvcrRef", booking.entry_ref)
    code = b.add(entry, "BkTxCd/Domn")
    b.add(code, "Cd", "PMNT")
    b.add(code, "Fmly/Cd", "RCDT" if booking.credit_debit == "CRDT" else "ICDT")
    b.add(code[1], "SubFmlyCd", "OTHR")
    details = (
        booking.end_to_end_id,
        booking.counterparty_name,
        booking.counterparty_account,
        booking.remittance,
        booking.return_reason,
        booking.charges,
    )
    if not any(details):
        return
    tx = b.add(entry, "NtryDtls/TxDtls")
    if booking.end_to_end_id:
        b.add(tx, "Refs/EndToEndId", booking.end_to_end_id)
    b.add(tx, "Amt", amount, Ccy=booking.currency)
    b.add(tx, "CdtDbtInd", booking.credit_debit)
    if booking.charges:
        record = b.add(tx, "Chrgs/Rcrd")
        b.add(record, "Amt", _money(booking.charges, booking.currency, "charges"), Ccy=booking.currency)
        b.add(record, "CdtDbtInd", "DBIT")
        b.add(record, "ChrgInclInd", "true" if booking.charges_included else "false")
        b.add(record, "Tp/Cd", booking.charge_type or "COMM")
    if booking.counterparty_name or booking.counterparty_account:
        # On a credit the counterparty paid us (debtor); on a debit we paid it (creditor).
        role = "Dbtr" if booking.credit_debit == "CRDT" else "Cdtr"
        parties = b.add(tx, "RltdPties")
        if booking.counterparty_name:
            b.add(parties, f"{role}/Pty/Nm", booking.counterparty_name)
        if booking.counterparty_account:
            _add_account(b, parties, f"{role}Acct", booking.counterparty_account)
    if booking.remittance:
        b.add(tx, "RmtInf/Ustrd", booking.remittance)
    if booking.return_reason:
        b.add(tx, f"RtrInf/Rsn/{_reason_path(booking.return_reason)}", booking.return_reason)


def _add_report_account(b: _Builder, parent: Any, account: str, currency: str) -> None:
    _text_field(account, "account", 34)
    _check_currency(currency, "currency")
    acct = b.add(parent, "Acct")
    _add_account_id(b, acct, account)
    b.add(acct, "Ccy", currency)


def build_camt054(
    *, message_id: str, created_at: datetime, account: str, currency: str, bookings: list[Booking]
) -> bytes:
    """A camt.054.001.08 debit/credit notification for ``account`` (one Ntfctn, Id = message_id).

    Every booking must be on ``account``. Each becomes one Ntry (NtryRef and AcctSvcrRef =
    entry_ref, bank transaction code PMNT/RCDT|ICDT/OTHR) with one TxDtls when it has details.
    """
    _text_field(message_id, "message_id", 35)
    _datetime_text(created_at, "created_at")
    amounts = [_check_booking(booking, account, f"bookings[{i}]") for i, booking in enumerate(bookings)]
    b = _Builder("camt.054.001.08")
    notification = b.add(b.root, "BkToCstmrDbtCdtNtfctn")
    b.add(notification, "GrpHdr/MsgId", message_id)
    b.add(notification[0], "CreDtTm", created_at.isoformat())
    ntfctn = b.add(notification, "Ntfctn")
    b.add(ntfctn, "Id", message_id)
    b.add(ntfctn, "CreDtTm", created_at.isoformat())
    _add_report_account(b, ntfctn, account, currency)
    for booking, amount in zip(bookings, amounts, strict=True):
        _add_entry(b, ntfctn, booking, amount)
    return b.finish()


def _add_balance(b: _Builder, parent: Any, code: str, amount: Decimal, currency: str, on: date, what: str) -> None:
    if not isinstance(amount, Decimal):
        raise FormatError(f"{what}: amount must be a decimal.Decimal, got {amount!r}")
    text = _money(abs(amount), currency, what, positive=False)
    balance = b.add(parent, "Bal")
    b.add(balance, "Tp/CdOrPrtry/Cd", code)
    b.add(balance, "Amt", text, Ccy=currency)
    b.add(balance, "CdtDbtInd", "DBIT" if amount < 0 else "CRDT")
    b.add(balance, "Dt/Dt", _date_text(on, what))


def build_camt053(*, message_id: str, statement: Statement) -> bytes:
    """A camt.053.001.08 with one statement: OPBD (dated from_date) and CLBD (dated to_date)
    balances, then ``statement.other_balances``, then the entries (see build_camt054).

    FrToDt runs from from_date 00:00:00 to to_date 23:59:59 (no offset); GrpHdr and Stmt CreDtTm
    are ``statement.created_at``.
    """
    _text_field(message_id, "message_id", 35)
    if not isinstance(statement, Statement):
        raise FormatError(f"statement: expected a Statement, got {type(statement).__name__}")
    s = statement
    _text_field(s.statement_id, "statement.statement_id", 35)
    created = _datetime_text(s.created_at, "statement.created_at")
    _date_text(s.from_date, "statement.from_date")
    _date_text(s.to_date, "statement.to_date")
    if s.to_date < s.from_date:
        raise FormatError("statement: to_date is before from_date")
    amounts = [_check_booking(booking, s.account, f"statement.entries[{i}]") for i, booking in enumerate(s.entries)]
    b = _Builder("camt.053.001.08")
    statement_msg = b.add(b.root, "BkToCstmrStmt")
    b.add(statement_msg, "GrpHdr/MsgId", message_id)
    b.add(statement_msg[0], "CreDtTm", created)
    stmt = b.add(statement_msg, "Stmt")
    b.add(stmt, "Id", s.statement_id)
    b.add(stmt, "CreDtTm", created)
    b.add(stmt, "FrToDt/FrDtTm", datetime.combine(s.from_date, time(0, 0, 0)).isoformat())
    b.add(stmt[-1], "ToDtTm", datetime.combine(s.to_date, time(23, 59, 59)).isoformat())
    _add_report_account(b, stmt, s.account, s.currency)
    _add_balance(b, stmt, "OPBD", s.opening_balance, s.currency, s.from_date, "statement.opening_balance")
    _add_balance(b, stmt, "CLBD", s.closing_balance, s.currency, s.to_date, "statement.closing_balance")
    for i, balance in enumerate(s.other_balances):
        what = f"statement.other_balances[{i}]"
        if not isinstance(balance, Balance) or balance.type not in BALANCE_TYPES:
            raise FormatError(f"{what}: expected a Balance with a type in {sorted(BALANCE_TYPES)}")
        _add_balance(b, stmt, balance.type, balance.amount, balance.currency, balance.date, what)
    for booking, amount in zip(s.entries, amounts, strict=True):
        _add_entry(b, stmt, booking, amount)
    return b.finish()


def _charge_amount(el: Any, currency: str) -> Decimal:
    amount, charge_currency = _amount(el)
    if charge_currency != currency:
        raise FormatError(
            f"charges in {charge_currency} on an entry in {currency} cannot be passed on",
            path=_path(el),
            line=el.sourceline,
        )
    return amount


def _charges(holders: list[Any], currency: str) -> tuple[Decimal, bool, str]:
    """Total charges of the Chrgs under ``holders`` (an entry, or its transactions): .001.08
    records (Rcrd: a CRDT record is a refund), else the total (TtlChrgsAndTaxAmt); .001.02 lists
    each charge as its own Chrgs with Amt. Returns (total, included in the entry amount, type):
    "included" only when every record says so."""
    total = Decimal(0)
    included = True
    kinds: list[str] = []
    for holder in holders:
        for chrgs in _findall(holder, "Chrgs"):
            records = _findall(chrgs, "Rcrd") or ([chrgs] if _find(chrgs, "Amt") is not None else [])
            if not records:
                total_el = _find(chrgs, "TtlChrgsAndTaxAmt")
                if total_el is not None:
                    total += _charge_amount(total_el, currency)
                continue
            for record in records:
                amount = _charge_amount(_require(record, "Amt"), currency)
                total += -amount if _text(record, "CdtDbtInd") == "CRDT" else amount
                # .001.08: included unless ChrgInclInd says false (its usage rule). .001.02 has no
                # indicator and its samples go both ways, so the entry amount is taken as is.
                flag = _text(record, "ChrgInclInd").lower()
                if flag == "false" or (not flag and record is chrgs):
                    included = False
                kinds.append(_text(record, "Tp/Cd") or _text(record, "Tp/Prtry/Id"))
    return total, included, next((k for k in kinds if k), "")


def _booking(entry: Any, account: str, fallback: date) -> Booking:
    amount, currency = _amount(_require(entry, "Amt"))
    credit_debit = _require_text(entry, "CdtDbtInd")
    status_el = _require(entry, "Sts")
    status = (status_el.text or "").strip() or _text(status_el, "Cd") or _text(status_el, "Prtry")
    booked = _date_choice(_find(entry, "BookgDt"))
    valued = _date_choice(_find(entry, "ValDt"))
    booking_date = booked or valued or fallback
    details: dict[str, Any] = {}
    transactions = _findall(entry, "NtryDtls/TxDtls")
    charges, included, charge_type = _charges([entry] if _find(entry, "Chrgs") is not None else transactions, currency)
    if len(transactions) == 1:
        tx = transactions[0]
        role = "Dbtr" if credit_debit == "CRDT" else "Cdtr"
        details = {
            "end_to_end_id": _text(tx, "Refs/EndToEndId"),
            "counterparty_name": _party_name(_find(tx, f"RltdPties/{role}")),
            "counterparty_account": _account_id(_find(tx, f"RltdPties/{role}Acct")),
            "remittance": _remittance(tx),
            "return_reason": _text(tx, "RtrInf/Rsn/Cd") or _text(tx, "RtrInf/Rsn/Prtry"),
        }
    return Booking(
        entry_ref=_text(entry, "AcctSvcrRef") or _text(entry, "NtryRef"),
        account=account,
        amount=amount,
        currency=currency,
        credit_debit=credit_debit,
        booking_date=booking_date,
        value_date=valued or booking_date,
        status=status,
        charges=charges,
        charges_included=included,
        charge_type=charge_type[:4],
        **details,
    )


def _report_account(report: Any) -> str:
    account = _account_id(_require(report, "Acct"))
    if not account:
        raise FormatError("account has neither IBAN nor Othr/Id", path=_path(_find(report, "Acct")))
    return account


def _report_created(report: Any, header: Any) -> datetime:
    created = _find(report, "CreDtTm")
    if created is None:
        created = _require(header, "CreDtTm")
    return _parse_datetime(created)


def parse_camt054(xml: bytes) -> list[Booking]:
    """The bookings of every notification (Ntfctn) of a camt.054.

    Versions .001.02 and .001.08 are validated against their XSD; other versions (the PostFinance
    .001.04 samples) are read structurally.

    Bookings: one per Ntry, amount positive. entry_ref is AcctSvcrRef, else NtryRef, else "".
    booking_date is BookgDt, else ValDt, else the report's creation date; value_date is ValDt, else
    booking_date. end_to_end_id, counterparty (the debtor of a credit, the creditor of a debit),
    remittance and return_reason come from the entry's transaction details when it has exactly one
    TxDtls; a batch entry with several keeps them empty. charges: the entry's own Chrgs, else the
    sum over its transactions' Chrgs (see Booking).
    """
    document, _ = _load(xml, "camt.054")
    message = _require(document, "BkToCstmrDbtCdtNtfctn")
    header = _require(message, "GrpHdr")
    bookings: list[Booking] = []
    for notification in _findall(message, "Ntfctn"):
        account = _report_account(notification)
        fallback = _report_created(notification, header).date()
        bookings.extend(_booking(entry, account, fallback) for entry in _findall(notification, "Ntry"))
    return bookings


def _signed_balance(balance: Any) -> tuple[str, Decimal, str, date]:
    code = _text(balance, "Tp/CdOrPrtry/Cd") or _require_text(balance, "Tp/CdOrPrtry/Prtry")
    amount, currency = _amount(_require(balance, "Amt"))
    if _require_text(balance, "CdtDbtInd") == "DBIT":
        amount = -amount
    return code, amount, currency, _required_date_choice(_require(balance, "Dt"))


_OPENING = ("OPBD", "PRCD", "OPAV", "ITBD")
_CLOSING = ("CLBD", "ITBD", "CLAV")


def parse_camt053(xml: bytes) -> list[Statement]:
    """The statements (Stmt) of a camt.053.

    Versions .001.02 and .001.08 are validated against their XSD; other versions (PostFinance
    .001.04, prowide .001.07 behind an AppHdr) are read structurally.

    Balances: opening_balance is the first OPBD, else PRCD, else OPAV, else ITBD; closing_balance
    the last CLBD, else ITBD, else CLAV (a statement with neither is rejected). All other balances go
    to other_balances, signed. currency is Acct/Ccy, else the currency of the opening balance.
    from_date/to_date come from FrToDt, else the dates of the opening/closing balances. created_at
    is Stmt/CreDtTm, else GrpHdr/CreDtTm, naive when the document has no offset. Balance continuity
    (opening + entries = closing) is not checked here: several real samples do not satisfy it.

    Bookings: one per Ntry, amount positive. entry_ref is AcctSvcrRef, else NtryRef, else "".
    booking_date is BookgDt, else ValDt, else the report's creation date; value_date is ValDt, else
    booking_date. end_to_end_id, counterparty (the debtor of a credit, the creditor of a debit),
    remittance and return_reason come from the entry's transaction details when it has exactly one
    TxDtls; a batch entry with several keeps them empty. charges: the entry's own Chrgs, else the
    sum over its transactions' Chrgs (see Booking).
    """
    document, _ = _load(xml, "camt.053")
    message = _require(document, "BkToCstmrStmt")
    header = _require(message, "GrpHdr")
    statements: list[Statement] = []
    for stmt in _findall(message, "Stmt"):
        account = _report_account(stmt)
        created_at = _report_created(stmt, header)
        balances = [_signed_balance(balance) for balance in _findall(stmt, "Bal")]
        opening = next((bal for code in _OPENING for bal in balances if bal[0] == code), None)
        closing = next(
            (bal for code in _CLOSING for bal in reversed(balances) if bal[0] == code and bal is not opening), None
        )
        if opening is None or closing is None:
            raise FormatError(
                "statement has no opening (OPBD/PRCD/OPAV/ITBD) or closing (CLBD/ITBD/CLAV) balance",
                path=_path(stmt),
                line=stmt.sourceline,
            )
        period = _find(stmt, "FrToDt")
        from_date, to_date = opening[3], closing[3]
        if period is not None:
            from_date = _parse_datetime(_require(period, "FrDtTm")).date()
            to_date = _parse_datetime(_require(period, "ToDtTm")).date()
        statements.append(
            Statement(
                statement_id=_require_text(stmt, "Id"),
                account=account,
                currency=_text(stmt, "Acct/Ccy") or opening[2],
                created_at=created_at,
                from_date=from_date,
                to_date=to_date,
                opening_balance=opening[1],
                closing_balance=closing[1],
                entries=[_booking(entry, account, created_at.date()) for entry in _findall(stmt, "Ntry")],
                other_balances=[Balance(*bal) for bal in balances if bal is not opening and bal is not closing],
            )
        )
    return statements
