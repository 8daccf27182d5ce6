"""Anchors of the transition-log chain, kept outside the database.

An anchor is "the chain had ``length`` rows and row ``length`` hashed to ``hash``": beat copies
the head row here every minute, and the hourly verification the head it walked to. The verifier
checks every anchor against the chain: someone who empties or cuts the log and resets the head
row in the database cannot change the file, so the missing rows show. Each line is HMAC-signed
with the audit key, so the file cannot be edited to match a rewritten chain either. Keep it where
the database's users cannot write or delete (``CLEARHOUSE_AUDIT_ANCHOR_PATH``).

One JSON object per line, appended and fsynced; nothing ever rewrites the file. Anchoring a head
nobody verified yet is safe: an anchor only adds a constraint the chain must meet.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from ledger.models.audit import UnknownAuditKey, audit_mac


@dataclass(frozen=True)
class Anchor:
    length: int
    hash: str
    at: str
    key_id: str
    mac: str

    def message(self) -> bytes:
        return f"anchor:{self.length}:{self.hash}:{self.at}".encode()

    def signed(self) -> bool:
        try:
            return audit_mac(self.message(), key_id=self.key_id) == self.mac
        except UnknownAuditKey:
            return False


def _path() -> Path:
    return Path(settings.CLEARHOUSE_AUDIT_ANCHOR_PATH)


def anchors_read() -> tuple[list[Anchor], list[str]]:
    """Every anchor of the file, and the problems found reading it (unreadable or unsigned lines)."""
    path = _path()
    if not path.exists():
        return [], []
    anchors: list[Anchor] = []
    problems: list[str] = []
    try:
        text = path.read_text()
    except OSError as exc:
        return [], [f"anchor file {path} cannot be read: {exc}"]
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            anchor = Anchor(
                length=int(raw["length"]), hash=str(raw["hash"]), at=str(raw["at"]), key_id=raw["kid"], mac=raw["mac"]
            )
        except (ValueError, KeyError, TypeError):
            problems.append(f"anchor file {path} line {number} is unreadable")
            continue
        if not anchor.signed():
            problems.append(f"anchor file {path} line {number} is not signed by an audit key (forged or edited)")
            continue
        anchors.append(anchor)
    return anchors, problems


def _last_line(path: Path, tail: int = 4096) -> str:
    """The file's last line, read from its end (the file grows by a line a minute)."""
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - tail))
        lines = fh.read().decode(errors="replace").splitlines()
    return lines[-1] if lines else ""


def anchor_write(*, length: int, hash: str) -> Anchor | None:
    """Append a head (length + hash of its last row) to the anchor file; nothing when the chain is
    empty or the last anchor already says so."""
    if length == 0:
        return None
    try:
        last = json.loads(_last_line(_path()) or "{}")
    except ValueError:
        last = {}
    if last.get("length") == length and last.get("hash") == hash:
        return None
    key_id = settings.CLEARHOUSE_AUDIT_HMAC_KEY_ID
    at = timezone.now().isoformat(timespec="seconds")
    anchor = Anchor(length=length, hash=hash, at=at, key_id=key_id, mac="")
    anchor = Anchor(length=length, hash=hash, at=at, key_id=key_id, mac=audit_mac(anchor.message(), key_id=key_id))
    line = json.dumps({"length": length, "hash": hash, "at": at, "kid": key_id, "mac": anchor.mac}, sort_keys=True)
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return anchor
