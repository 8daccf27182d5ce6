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

Modules: ``records`` (codes, return-reason mapping, the file's data), ``build`` (achkit),
``reader`` (the strict reader). Every rejection is a ``rails.formats.errors.FormatError``.
"""

from __future__ import annotations

from rails.formats.nacha.build import build_ach_file
from rails.formats.nacha.reader import parse_ach_file, read_ach_file
from rails.formats.nacha.records import (
    RETURN_CODES,
    AchBatch,
    AchEntry,
    AchFile,
    ach_return_to_iso,
    iso_to_ach_return,
)

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
