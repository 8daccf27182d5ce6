"""CSV exports that are safe to open in a spreadsheet.

Text from outside (a participant's memo, a bank reference, an imported account name) could start
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return: a spreadsheet would run it as a
formula (``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``). Such a cell is written with a leading
apostrophe, which spreadsheets show as text and never evaluate. Plain numbers (``-12.50``) are left
as they are: they cannot carry a formula and must stay numbers.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?\Z")


def csv_cell(value: Any) -> Any:
    """``value`` as a spreadsheet will take it as data, never as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


class SafeCsvWriter:
    """``csv.writer`` whose every cell goes through ``csv_cell``."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([csv_cell(value) for value in row])
