"""Import external records: parse a whole file first, then write it in one transaction.

A malformed file is refused with an error naming the element or line (from the format parsers,
or ours for CSV and chain lists) and writes nothing. The same file imported again (same source
and SHA-256) changes nothing; a line already known from another file (same natural key) is
counted as repeated, not stored twice.

Generic CSV: a header row, then one record per row. The column mapping says which header holds
each field (default: the field's own name):

    external_id   required  the line's unique id at the source (its natural key)
    amount        required  signed decimal, '.' as separator (credit/received positive)
    currency      required  currency or asset code
    value_date    optional  YYYY-MM-DD
    reference     optional  end-to-end id, transaction hash or our instruction reference
    account       optional  the account the line is on
    counterparty  optional
    status        optional

Chain lists: a JSON array of objects with ``chain``, ``tx_hash``, ``asset``, ``amount`` (string,
signed from the house's side), and optionally ``block``, ``confirmations``, ``address``,
``counterparty``, ``reference``, ``date`` (YYYY-MM-DD), ``succeeded`` (false for a transaction
that was mined but reverted: status ``failed``).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction

from common.actors import Actor, actor_label, actor_user
from common.exceptions import ValidationFailed
from common.jsonload import json_loads
from common.money import DECIMAL_PLACES, MAX_DIGITS, fits_columns
from rails.formats import iso20022
from rails.formats.errors import FormatError
from rails.formats.iso20022 import sese
from reconciliation.models import ExternalRecord, ImportedFile, Source

CSV_FIELDS = ("external_id", "amount", "currency", "value_date", "reference", "account", "counterparty", "status")
CSV_REQUIRED = ("external_id", "amount", "currency")


class ImportRejected(ValidationFailed):
    """The file is malformed; nothing of it was imported."""


@dataclass
class Line:
    natural_key: str
    asset_code: str
    amount: Decimal
    reference: str = ""
    account: str = ""
    counterparty: str = ""
    value_date: date | None = None
    status: str = ""
    reason_code: str = ""
    charges: Decimal = Decimal(0)
    charges_included: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportOutcome:
    file: ImportedFile
    created: int
    repeated: int
    already_imported: bool
    charges: dict[str, int] = field(default_factory=dict)  # bank charges passed on, by outcome


def _signed(booking: iso20022.Booking) -> Decimal:
    return booking.amount if booking.credit_debit == "CRDT" else -booking.amount


def _booking_line(booking: iso20022.Booking, key: str, extra: dict[str, Any]) -> Line:
    return Line(
        natural_key=key,
        asset_code=booking.currency,
        amount=_signed(booking),
        reference=booking.end_to_end_id,
        account=booking.account,
        counterparty=booking.counterparty_account or booking.counterparty_name,
        value_date=booking.value_date,
        status=booking.status,
        reason_code=booking.return_reason,
        charges=booking.charges,
        charges_included=booking.charges_included and bool(booking.charges),
        detail={
            "booking_date": booking.booking_date.isoformat(),
            "counterparty_name": booking.counterparty_name,
            "remittance": booking.remittance,
            **({"charge_type": booking.charge_type} if booking.charge_type else {}),
            **extra,
        },
    )


def _camt053(content: bytes, sha: str) -> list[Line]:
    lines = []
    for statement in iso20022.parse_camt053(content):
        for n, booking in enumerate(statement.entries, 1):
            key = f"{booking.account}:{booking.entry_ref}" if booking.entry_ref else f"{statement.statement_id}:{n}"
            lines.append(
                _booking_line(
                    booking,
                    key,
                    {
                        "statement": statement.statement_id,
                        "opening_balance": str(statement.opening_balance),
                        "closing_balance": str(statement.closing_balance),
                    },
                )
            )
    return lines


def _camt054(content: bytes, sha: str) -> list[Line]:
    return [
        _booking_line(b, f"{b.account}:{b.entry_ref}" if b.entry_ref else f"{sha[:16]}:{n}", {})
        for n, b in enumerate(iso20022.parse_camt054(content), 1)
    ]


def _pain002(content: bytes, sha: str) -> list[Line]:
    return [
        Line(
            natural_key=f"{s.original_message_id}:{s.end_to_end_id or s.uetr or '-'}:{s.status}",
            asset_code="",
            amount=Decimal(0),
            reference=s.end_to_end_id or s.uetr,
            status=s.status,
            reason_code=s.reason_code,
            detail={"original_message": s.original_message_id, "reason_text": s.reason_text},
        )
        for s in iso20022.parse_status_report(content)
    ]


def _sese025(content: bytes, sha: str) -> list[Line]:
    c = sese.parse_sese025(content)
    sign = -1 if c.movement == "DELI" else 1
    return [
        Line(
            natural_key=f"{c.reference}:{c.settlement_date.isoformat()}",
            asset_code=c.isin,
            amount=sign * c.quantity,
            reference=c.reference,
            account=c.safekeeping_account,
            value_date=c.settlement_date,
            status="settled",
            detail={"settlement_amount": str(c.settlement_amount), "currency": c.currency, "movement": c.movement},
        )
    ]


def _decimal(value: Any, where: str) -> Decimal:
    """A finite amount that the amount columns hold exactly (no NaN or Infinity, no rounding)."""
    if isinstance(value, (bool, float)):  # already rounded to binary: refuse rather than guess
        raise ImportRejected(f"{where}: {value!r} is a float, not a decimal amount")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise ImportRejected(f"{where}: {value!r} is not a decimal amount") from exc
    if not amount.is_finite():
        raise ImportRejected(f"{where}: {value!r} is not a finite decimal amount")
    if not fits_columns(amount):
        raise ImportRejected(
            f"{where}: {value!r} does not fit an amount ({MAX_DIGITS - DECIMAL_PLACES} digits before the point, "
            f"{DECIMAL_PLACES} after)"
        )
    return amount


def _date(value: Any, where: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise ImportRejected(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from exc


def _chain_status(row: dict[str, Any], where: str) -> str:
    succeeded = row.get("succeeded", True)
    if not isinstance(succeeded, bool):
        raise ImportRejected(f"{where} succeeded: {succeeded!r} is not true or false")
    try:
        confirmations = int(row.get("confirmations", 0) or 0)
    except (TypeError, ValueError) as exc:
        raise ImportRejected(f"{where} confirmations: {row.get('confirmations')!r} is not a number") from exc
    if not succeeded:
        return "failed"
    return "confirmed" if confirmations > 0 else "pending"


def _chain(content: bytes, sha: str) -> list[Line]:
    try:
        rows = json_loads(content, parse_float=Decimal)  # a JSON number amount stays exact, never a float
    except ValueError as exc:  # malformed, not UTF-8, or nested too deeply
        raise ImportRejected(f"not JSON: {exc}") from exc
    if not isinstance(rows, list):
        raise ImportRejected("a chain transaction list is a JSON array of objects")
    lines = []
    for n, row in enumerate(rows, 1):
        where = f"item {n}"
        if not isinstance(row, dict):
            raise ImportRejected(f"{where}: not an object")
        missing = [k for k in ("chain", "tx_hash", "asset", "amount") if not row.get(k)]
        if missing:
            raise ImportRejected(f"{where}: missing {', '.join(missing)}")
        index = row.get("index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise ImportRejected(f"{where} index: {index!r} is not a position in the transaction")
        # a payout of a transaction paying many: one record per payout, keyed by its position
        natural_key = f"{row['chain']}:{row['tx_hash']}" + ("" if index is None else f":{index}")
        lines.append(
            Line(
                natural_key=natural_key,
                asset_code=str(row["asset"]),
                amount=_decimal(row["amount"], f"{where} amount"),
                reference=str(row.get("reference") or row["tx_hash"]),
                account=str(row.get("address", "")),
                counterparty=str(row.get("counterparty", "")),
                value_date=_date(row.get("date"), f"{where} date"),
                status=_chain_status(row, where),
                detail={
                    "block": row.get("block"),
                    "confirmations": row.get("confirmations"),
                    "tx_hash": row["tx_hash"],
                    **({} if index is None else {"index": index, "payout_reference": row.get("payout_reference", "")}),
                },
            )
        )
    return lines


def _csv(content: bytes, sha: str, mapping: dict[str, str] | None) -> list[Line]:
    mapping = {name: (mapping or {}).get(name, name) for name in CSV_FIELDS}
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRejected(f"not UTF-8 text: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [f"{mapping[name]!r} (for {name})" for name in CSV_REQUIRED if mapping[name] not in header]
    if missing:
        raise ImportRejected(f"line 1: header lacks column {', '.join(missing)}; it has {', '.join(header) or 'none'}")
    lines = []
    for row in reader:
        where = f"line {reader.line_num}"

        def get(name: str, row: dict[str, Any] = row) -> str:
            return (row.get(mapping[name]) or "").strip()

        if not get("external_id"):
            raise ImportRejected(f"{where}: {mapping['external_id']!r} is empty")
        if not get("currency"):
            raise ImportRejected(f"{where}: {mapping['currency']!r} is empty")
        lines.append(
            Line(
                natural_key=get("external_id"),
                asset_code=get("currency"),
                amount=_decimal(get("amount"), f"{where} {mapping['amount']!r}"),
                reference=get("reference"),
                account=get("account"),
                counterparty=get("counterparty"),
                value_date=_date(get("value_date"), f"{where} {mapping['value_date']!r}"),
                status=get("status"),
            )
        )
    return lines


_PARSERS: dict[str, Callable[[bytes, str], list[Line]]] = {
    Source.CAMT053: _camt053,
    Source.CAMT054: _camt054,
    Source.PAIN002: _pain002,
    Source.SESE025: _sese025,
    Source.CHAIN: _chain,
}


def parse_lines(*, source: str, content: bytes, mapping: dict[str, str] | None = None) -> list[Line]:
    """Every line of the file, or ImportRejected naming what is wrong and where."""
    sha = hashlib.sha256(content).hexdigest()
    try:
        if source == Source.CSV:
            return _csv(content, sha, mapping)
        if source not in _PARSERS:
            raise ImportRejected(f"unknown source {source!r}; one of {', '.join(Source.values)}")
        return _PARSERS[source](content, sha)
    except FormatError as exc:
        raise ImportRejected(str(exc)) from exc


def external_import(
    *, source: str, name: str, content: bytes, actor: Actor, mapping: dict[str, str] | None = None
) -> ImportOutcome:
    """Import one file idempotently (see the module docstring)."""
    sha = hashlib.sha256(content).hexdigest()
    existing = ImportedFile.objects.filter(source=source, sha256=sha).first()
    if existing is not None:
        return ImportOutcome(existing, 0, 0, already_imported=True)
    lines = parse_lines(source=source, content=content, mapping=mapping)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportRejected(f"not UTF-8 text: {exc}") from exc
    for _ in range(3):
        try:
            imported = _write(source=source, name=name, sha=sha, text=text, lines=lines, actor=actor)
            return ImportOutcome(imported, imported.records, imported.repeated, already_imported=False)
        except IntegrityError:
            # Another import committed first: this same file (then it is done), or a file sharing
            # lines with this one (then try again: those lines are now known and skipped).
            existing = ImportedFile.objects.filter(source=source, sha256=sha).first()
            if existing is not None:
                return ImportOutcome(existing, 0, 0, already_imported=True)
    raise ImportRejected("could not import: other imports kept writing the same lines")


def _write(*, source: str, name: str, sha: str, text: str, lines: list[Line], actor: Actor) -> ImportedFile:
    with transaction.atomic():
        imported = ImportedFile.objects.create(
            source=source,
            name=name[:255],
            sha256=sha,
            content=text,
            imported_by=actor_user(actor),
            imported_by_label=actor_label(actor),
        )
        keys = [line.natural_key for line in lines]
        known = set(
            ExternalRecord.objects.filter(source=source, natural_key__in=keys).values_list("natural_key", flat=True)
        )
        new, seen = [], set()
        for n, line in enumerate(lines, 1):
            if line.natural_key in known or line.natural_key in seen:
                continue
            seen.add(line.natural_key)
            new.append(
                ExternalRecord(
                    source=source,
                    natural_key=line.natural_key[:255],
                    file=imported,
                    line=n,
                    reference=line.reference[:255],
                    account=line.account[:64],
                    counterparty=line.counterparty[:140],
                    asset_code=line.asset_code[:16],
                    amount=line.amount,
                    value_date=line.value_date,
                    status=line.status[:16],
                    reason_code=line.reason_code[:8],
                    charges=line.charges,
                    charges_included=line.charges_included,
                    detail=line.detail,
                )
            )
        ExternalRecord.objects.bulk_create(new, batch_size=5000)
        imported.records = len(new)
        imported.repeated = len(lines) - len(new)
        imported.save(update_fields=("records", "repeated"))
        return imported
