"""The strict record-level NACHA reader: every error of a file, each with its line and record type,
in one ``FormatError``; the two moov-io sample findings that reconcile in full as warnings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from math import ceil
from typing import Any

from rails.formats.errors import FormatError
from rails.formats.nacha.records import (
    BLOCKING_FACTOR,
    CHANGE_CODES,
    RECORD_LENGTH,
    RETURN_CODES,
    SERVICE_CLASSES,
    TRANSACTION_CODES,
    AchBatch,
    AchEntry,
    AchFile,
    _aba_ok,
)

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
