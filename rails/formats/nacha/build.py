"""Building a one-batch NACHA file with achkit, checked with ``achkit.validate`` and read back with
the strict reader, so that what we send is exactly what we can read."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

import achkit

from rails.formats.errors import FormatError
from rails.formats.nacha.reader import read_ach_file
from rails.formats.nacha.records import _ACCOUNT_RE, _REFERENCE_RE, SUPPORTED_SEC_CODES, AchEntry, _aba_ok


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
