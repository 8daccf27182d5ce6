"""The one error every format raises (ISO 20022, NACHA): a ``ValueError`` with where it is."""

from __future__ import annotations


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
