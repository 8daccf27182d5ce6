"""NACHA ACH files for the fiat rail: build with achkit, read with a strict record-level reader.

Building uses ``achkit.AchFile`` and checks the result with ``achkit.validate`` (record length,
blocking, batch and file control totals, entry hash, routing check digits), then re-reads it with
``read_ach_file`` so that what we send is exactly what we can read back.

Reading does not rely on achkit (its parser skips record order and code checks, and its validator
miscounts return entries, transaction codes 21/26/31/36, as neither credit nor debit). The reader
checks record lengths, record order (1, then 5 [6 [7...]]... 8 batches, then 9, then only
9-filled blocking records), ABA check digits, transaction codes, addenda types, return (R..) and
change (C..) codes, and every batch and file control total. Each error names its line and record
type; all errors of a file are reported together in one FormatError.

Two findings of the real moov-io sample files are reported as warnings, not errors, because the
money they describe reconciles in full (entry count, entry hash, debit and credit totals all match):
a file control batch count that differs from the number of batches (20110805A.ach declares 5 batches
and carries 4, numbered 1, 3, 4, 5) and a file whose record count is not a multiple of the blocking
factor 10 (20110805A.ach has 93 records). ``read_ach_file`` returns them in ``AchFile.warnings``.

IAT entries (international, SEC code IAT) are read from their own layout: account from the entry's
foreign receiver account field, name from addenda 10, trace_ref from addenda 15 (receiver id).
ADV files (service class 280, transaction codes 81-88) are not supported and rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from math import ceil
from typing import Any

import achkit

from rails.formats.iso20022 import FormatError

__all__ = [
    "RETURN_CODES",
    "AchBatch",
    "AchEntry",
    "AchFile",
    "ach_return_to_iso",
    "build_ach_file",
    "iso_to_ach_return",
    "parse_ach_file",
    "read_ach_file",
]

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


def _cents(amount: Decimal, what: str) -> int:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise FormatError(f"{what}: amount must be a finite decimal.Decimal, got {amount!r}")
    if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise FormatError(f"{what}: amount must be positive USD with at most 2 decimals, got {amount}")
    cents = int(amount * 100)
    if cents >= 10**10:
        raise FormatError(f"{what}: amount {amount} does not fit the 10-digit amount field")
    return cents


def _ascii_field(value: str, what: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FormatError(f"{what}: must be a non-empty string, got {value!r}")
    if len(value) > max_length or any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise FormatError(f"{what}: at most {max_length} printable ASCII characters, got {value!r}")
    return value


def build_ach_file(
    *,
    file_id_modifier: str,
    created_at: datetime,
    origin_routing: str,
    origin_name: str,
    company_id: str,
    company_name: str,
    effective_date: date,
    entries: list[AchEntry],
    sec_code: str = "CCD",
    entry_description: str = "SETTLEMENT",
    destination_routing: str | None = None,
    destination_name: str = "",
) -> str:
    """A one-batch NACHA file built with achkit and checked with ``achkit.validate``.

    Entries are checking-account credits (22) or debits (27); the batch service class is 200, 220 or
    225 accordingly. ``trace_ref`` goes into the identification number field and must already be in
    NACHA form (upper case, at most 15 characters) so that it comes back unchanged; names are
    upper-cased by achkit. The immediate destination defaults to ``origin_routing``. Lines end with
    "\\n"; the file is padded with 9-filled records to a multiple of 10.
    """
    if not isinstance(file_id_modifier, str) or not re.fullmatch(r"[A-Z0-9]", file_id_modifier):
        raise FormatError(f"file_id_modifier must be one character A-Z or 0-9, got {file_id_modifier!r}")
    if not isinstance(created_at, datetime):
        raise FormatError(f"created_at: expected a datetime, got {created_at!r}")
    if not isinstance(effective_date, date) or isinstance(effective_date, datetime):
        raise FormatError(f"effective_date: expected a date, got {effective_date!r}")
    for what, routing in (("origin_routing", origin_routing), ("destination_routing", destination_routing)):
        if routing is not None and not _aba_ok(routing):
            raise FormatError(f"{what}: invalid ABA routing number {routing!r}")
    if sec_code not in SUPPORTED_SEC_CODES:
        raise FormatError(f"sec_code must be one of {sorted(SUPPORTED_SEC_CODES)}, got {sec_code!r}")
    _ascii_field(origin_name, "origin_name", 23)
    if destination_name:
        _ascii_field(destination_name, "destination_name", 23)
    _ascii_field(company_id, "company_id", 10)
    _ascii_field(company_name, "company_name", 16)
    _ascii_field(entry_description, "entry_description", 10)
    if not entries:
        raise FormatError("build_ach_file: no entries")

    try:
        ach = achkit.AchFile.create(
            origin_dfi=origin_routing,
            company_id=company_id,
            destination_routing=destination_routing or origin_routing,
            destination_name=destination_name,
            origin_name=origin_name,
            file_id_modifier=file_id_modifier,
            creation_date=created_at,
        )
        batch = ach.batch(
            sec=sec_code,
            description=entry_description,
            effective_date=effective_date.isoformat(),
            company_name=company_name,
            company_id=company_id,
        )
        for i, entry in enumerate(entries):
            what = f"entries[{i}]"
            if not isinstance(entry, AchEntry):
                raise FormatError(f"{what}: expected an AchEntry, got {type(entry).__name__}")
            if not _REFERENCE_RE.fullmatch(entry.trace_ref):
                raise FormatError(f"{what}.trace_ref: 1-15 upper-case NACHA characters, got {entry.trace_ref!r}")
            if not _aba_ok(entry.routing):
                raise FormatError(f"{what}.routing: invalid ABA routing number {entry.routing!r}")
            if not _ACCOUNT_RE.fullmatch(entry.account):
                raise FormatError(f"{what}.account: 1-17 characters A-Z, 0-9, blank or '-', got {entry.account!r}")
            _ascii_field(entry.name, f"{what}.name", 22)
            add = batch.debit if entry.debit else batch.credit
            add(entry.name, entry.routing, entry.account, _cents(entry.amount, what), id_number=entry.trace_ref)
        text = ach.render()
    except achkit.AchError as exc:
        raise FormatError(f"achkit rejected the file: {exc.message} ({exc.code})") from exc

    report = achkit.validate(text)
    if not report["ok"]:
        problems = "; ".join(f"{e['field']}: {e['message']}" for e in report["errors"])
        raise FormatError(f"achkit.validate rejected the built file: {problems}")
    read_ach_file(text)  # what we send must read back under the strict reader
    return text


# --------------------------------------------------------------------------------------------
# Reading


class _Reader:
    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise FormatError(f"expected the ACH file as str, got {type(text).__name__}")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self.lines = [line.removesuffix("\r") for line in lines]
        self.errors: list[tuple[int, str]] = []
        self.warnings: list[str] = []

    def error(self, number: int, record: str, message: str) -> None:
        self.errors.append((number, f"line {number} ({record}): {message}"))

    def read(self) -> AchFile:
        records: list[tuple[int, str]] = []
        filler_from: int | None = None
        for number, raw in enumerate(self.lines, start=1):
            if len(raw) != RECORD_LENGTH:
                kind = _RECORD_NAMES.get(raw[:1], "record")
                self.error(number, kind, f"record is {len(raw)} characters, expected {RECORD_LENGTH}")
            line = raw.ljust(RECORD_LENGTH)[:RECORD_LENGTH]
            if line == "9" * RECORD_LENGTH and records and records[-1][1][0] == "9":
                filler_from = filler_from or number
                continue
            if filler_from is not None:
                self.error(number, _RECORD_NAMES.get(line[0], "record"), "record after the blocking (9-filled) records")
            records.append((number, line))
        if not self.lines:
            raise FormatError("empty ACH file")
        if len(self.lines) % BLOCKING_FACTOR:
            self.warnings.append(
                f"{len(self.lines)} records is not a multiple of the blocking factor {BLOCKING_FACTOR}"
            )
        result = self._structure(records, len(self.lines))
        if self.errors or result is None:
            errors = [message for _, message in sorted(self.errors, key=lambda error: error[0])]
            raise FormatError("invalid NACHA file: " + "; ".join(errors))
        return result

    def _structure(self, records: list[tuple[int, str]], physical_records: int) -> AchFile | None:
        if not records or records[0][1][0] != "1":
            number, line = records[0] if records else (1, " ")
            self.error(number, _RECORD_NAMES.get(line[0], "record"), "expected the file header record (type 1)")
            header = None
        else:
            header = self._file_header(*records[0])
            records = records[1:]
        batches: list[AchBatch] = []
        totals = _Totals()
        file_control: tuple[int, str] | None = None
        i = 0
        while i < len(records):
            number, line = records[i]
            kind = line[0]
            if kind == "5":
                i = self._batch(records, i, batches, totals)
                continue
            if kind == "9":
                file_control = (number, line)
                if i + 1 < len(records):
                    extra_number, extra = records[i + 1]
                    self.error(extra_number, _RECORD_NAMES.get(extra[0], "record"), "record after the file control")
                break
            self.error(
                number, _RECORD_NAMES.get(kind, f"type {kind!r}"), "expected a batch header (5) or file control (9)"
            )
            i += 1
        if file_control is None:
            last = len(self.lines)
            self.errors.append((last + 1, f"end of file after line {last}: missing file control record (type 9)"))
        else:
            self._file_control(*file_control, batches, totals, physical_records)
        if header is None or self.errors:
            return None
        return AchFile(**header, batches=batches, warnings=self.warnings)

    def _file_header(self, number: int, line: str) -> dict[str, Any]:
        record = "file header"
        if line[1:3] != "01":
            self.error(number, record, f"priority code {line[1:3]!r}, expected '01'")
        destination = line[3:13].strip()
        origin = line[13:23].strip()
        if not _aba_ok(destination):
            self.error(number, record, f"immediate destination {destination!r} is not a valid routing number")
        created_at: datetime | None = None
        try:
            # NACHA creation date and time carry no zone: the originator's local time.
            created_at = datetime.strptime(line[23:33], "%y%m%d%H%M")  # noqa: DTZ007
        except ValueError:
            self.error(number, record, f"invalid file creation date/time {line[23:33]!r}")
        if not re.fullmatch(r"[A-Z0-9]", line[33]):
            self.error(number, record, f"invalid file id modifier {line[33]!r}")
        if line[34:37] != "094" or line[37:39] != "10" or line[39] != "1":
            self.error(number, record, "record size, blocking factor and format code must be 094, 10 and 1")
        return {
            "immediate_destination": destination,
            "immediate_origin": origin,
            "created_at": created_at,
            "file_id_modifier": line[33],
            "destination_name": line[40:63].strip(),
            "origin_name": line[63:86].strip(),
        }

    def _batch(self, records: list[tuple[int, str]], i: int, batches: list[AchBatch], totals: _Totals) -> int:
        number, header = records[i]
        record = "batch header"
        service_class = int(header[1:4]) if header[1:4].isdigit() else -1
        sec = header[50:53]
        if service_class not in SERVICE_CLASSES:
            hint = " (ADV files are not supported)" if service_class == 280 else ""
            self.error(number, record, f"service class code {header[1:4]!r} is not 200, 220 or 225{hint}")
        if sec == "ADV":
            self.error(number, record, "SEC code ADV is not supported")
        iat = sec == "IAT"
        effective = _yymmdd(header[69:75])
        batch_number = int(header[87:94]) if header[87:94].isdigit() else -1
        batch_totals = _Totals()
        entries: list[AchEntry] = []
        i += 1
        while i < len(records) and records[i][1][0] in "67":
            number_6, entry_line = records[i]
            if entry_line[0] == "7":
                self.error(number_6, "addenda", "addenda record without an entry detail")
                i += 1
                continue
            addenda: list[tuple[int, str]] = []
            i += 1
            while i < len(records) and records[i][1][0] == "7":
                addenda.append(records[i])
                i += 1
            entry = self._entry(number_6, entry_line, addenda, service_class, iat, batch_totals)
            if entry is not None:
                entries.append(entry)
        if i >= len(records) or records[i][1][0] != "8":
            where = records[i][0] if i < len(records) else len(self.lines)
            self.error(where, "batch control", f"missing batch control (type 8) for the batch of line {number}")
        else:
            self._batch_control(*records[i], header, batch_totals)
            i += 1
        totals.add(batch_totals)
        totals.batches += 1
        batches.append(
            AchBatch(
                number=batch_number,
                service_class=service_class,
                sec_code=sec,
                company_name="" if iat else header[4:20].strip(),
                company_id=header[40:50].strip(),
                entry_description=header[53:63].strip(),
                effective_date=effective,
                origin_routing=header[79:87],
                entries=entries,
            )
        )
        return i

    def _entry(
        self,
        number: int,
        line: str,
        addenda: list[tuple[int, str]],
        service_class: int,
        iat: bool,
        totals: _Totals,
    ) -> AchEntry | None:
        record = "entry detail"
        code = int(line[1:3]) if line[1:3].isdigit() else -1
        if code not in TRANSACTION_CODES:
            self.error(number, record, f"transaction code {line[1:3]!r} is not supported")
            return None
        debit = code % 10 >= 5
        if service_class == 220 and debit:
            self.error(number, record, f"debit transaction code {code} in a credits-only (220) batch")
        if service_class == 225 and not debit:
            self.error(number, record, f"credit transaction code {code} in a debits-only (225) batch")
        routing = line[3:12]
        if not _aba_ok(routing):
            self.error(number, record, f"receiving DFI routing number {routing!r} fails the ABA check digit")
        if not line[29:39].isdigit():
            self.error(number, record, f"amount {line[29:39]!r} is not numeric")
            return None
        cents = int(line[29:39])
        trace = line[79:94]
        if not trace.isdigit():
            self.error(number, record, f"trace number {trace!r} is not numeric")
        indicator = line[78]
        if indicator not in "01" or (indicator == "1") != bool(addenda):
            self.error(number, record, f"addenda indicator {indicator!r} but {len(addenda)} addenda record(s) follow")
        if routing[:8].isdigit():
            totals.hash += int(routing[:8])
        totals.entries += 1 + len(addenda)
        if debit:
            totals.debit += cents
        else:
            totals.credit += cents

        if iat:
            trace_ref, account, name = "", line[39:74].strip(), ""
        else:
            trace_ref, account, name = line[39:54].strip(), line[12:29].strip(), line[54:76].strip()
        return_code = change_code = original_trace = ""
        for addenda_number, addendum in addenda:
            kind = addendum[1:3]
            if kind == "05" or (iat and kind in {"10", "11", "12", "13", "14", "15", "16", "17", "18"}):
                if addendum[87:94] != trace[-7:]:
                    self.error(
                        addenda_number, "addenda", f"entry detail sequence {addendum[87:94]!r} != {trace[-7:]!r}"
                    )
                if iat and kind == "10":
                    name = addendum[46:81].strip()
                if iat and kind == "15":
                    trace_ref = addendum[3:18].strip()
            elif kind == "99":
                return_code = addendum[3:6]
                original_trace = addendum[6:21]
                if return_code not in RETURN_CODES:
                    self.error(addenda_number, "addenda 99", f"return reason code {return_code!r} is not a NACHA code")
            elif kind == "98":
                change_code = addendum[3:6]
                original_trace = addendum[6:21]
                if change_code not in CHANGE_CODES:
                    self.error(addenda_number, "addenda 98", f"change code {change_code!r} is not a NACHA code")
            else:
                self.error(addenda_number, "addenda", f"addenda type code {kind!r} is not supported here")
        return AchEntry(
            trace_ref=trace_ref,
            amount=(Decimal(cents) / 100).quantize(Decimal("0.01")),
            debit=debit,
            routing=routing,
            account=account,
            name=name,
            return_code=return_code,
            change_code=change_code,
            trace_number=trace,
            original_trace=original_trace,
        )

    def _batch_control(self, number: int, line: str, header: str, totals: _Totals) -> None:
        record = "batch control"
        self._check_totals(number, record, line[4:10], line[10:20], line[20:32], line[32:44], totals)
        if line[1:4] != header[1:4]:
            self.error(number, record, f"service class {line[1:4]!r} != batch header {header[1:4]!r}")
        if line[44:54].strip() != header[40:50].strip():
            self.error(number, record, f"company id {line[44:54]!r} != batch header {header[40:50]!r}")
        if line[79:87] != header[79:87] or line[87:94] != header[87:94]:
            self.error(number, record, "originating DFI or batch number differ from the batch header")

    def _file_control(
        self, number: int, line: str, batches: list[AchBatch], totals: _Totals, physical_records: int
    ) -> None:
        record = "file control"
        self._check_totals(number, record, line[13:21], line[21:31], line[31:43], line[43:55], totals)
        money_ok = not any(line_number == number for line_number, _ in self.errors)
        declared_batches = line[1:7]
        if not declared_batches.isdigit() or int(declared_batches) != totals.batches:
            message = f"batch count {declared_batches!r} != {totals.batches} batches in the file"
            if money_ok and declared_batches.isdigit():
                self.warnings.append(f"line {number} ({record}): {message}")
            else:
                self.error(number, record, message)
        expected_blocks = ceil(physical_records / BLOCKING_FACTOR)
        if not line[7:13].isdigit() or int(line[7:13]) != expected_blocks:
            self.error(number, record, f"block count {line[7:13]!r} != {expected_blocks}")

    def _check_totals(
        self, number: int, record: str, count: str, entry_hash: str, debit: str, credit: str, totals: _Totals
    ) -> None:
        checks = (
            ("entry/addenda count", count, totals.entries),
            ("entry hash", entry_hash, totals.hash % 10**10),
            ("total debit", debit, totals.debit),
            ("total credit", credit, totals.credit),
        )
        for label, declared, actual in checks:
            if not declared.isdigit() or int(declared) != actual:
                self.error(number, record, f"{label} {declared!r} != {actual}")


@dataclass
class _Totals:
    entries: int = 0
    hash: int = 0
    debit: int = 0
    credit: int = 0
    batches: int = 0

    def add(self, other: _Totals) -> None:
        self.entries += other.entries
        self.hash += other.hash
        self.debit += other.debit
        self.credit += other.credit


_RECORD_NAMES = {
    "1": "file header",
    "5": "batch header",
    "6": "entry detail",
    "7": "addenda",
    "8": "batch control",
    "9": "file control",
}


def _yymmdd(value: str) -> date | None:
    """A YYMMDD date (20YY), or None for blanks / zeros (returns and NOCs may carry 000000)."""
    try:
        return datetime.strptime(value, "%y%m%d").date()  # noqa: DTZ007 - a calendar date
    except ValueError:
        return None


def read_ach_file(text: str) -> AchFile:
    """The whole file (header, batches with entries, warnings); FormatError listing every error."""
    return _Reader(text).read()


def parse_ach_file(text: str) -> list[AchEntry]:
    """The entries of every batch, in file order (see read_ach_file for file and batch data)."""
    return read_ach_file(text).entries
