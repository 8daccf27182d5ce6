"""Key custody and signing: the only module that ever holds a private key.

Keys come from a keystore file (``CLEARHOUSE_KEYSTORE``: JSON ``{"<address>": "<0x private key>"}``,
readable by the service user only) and are kept in process memory. They are never stored in the
database, never logged and never returned: callers get signed bytes, not keys. A production
deployment points the same interface at an HSM or a signing service.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from eth_account import Account


class KeyNotFound(Exception):
    pass


class Keystore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, str] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, str]:
        with self._lock:
            if self._keys is None:
                if not self.path.exists():
                    self._keys = {}
                else:
                    mode = self.path.stat().st_mode
                    if mode & (stat.S_IRWXG | stat.S_IRWXO):
                        raise PermissionError(f"keystore {self.path} must be readable by its owner only (chmod 600)")
                    raw = json.loads(self.path.read_text())
                    self._keys = {address.lower(): key for address, key in raw.items()}
            return self._keys

    def has(self, address: str) -> bool:
        return address.lower() in self._load()

    def sign_eth_transaction(self, address: str, transaction: dict[str, Any]) -> bytes:
        key = self._load().get(address.lower())
        if key is None:
            raise KeyNotFound(f"no key held for {address}")
        return bytes(Account.sign_transaction(transaction, key).raw_transaction)

    def add(self, private_key: str) -> str:
        """Store a key (demo and test setup) and return its address."""
        address = Account.from_key(private_key).address
        keys = dict(self._load())
        keys[address.lower()] = private_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(keys, handle)
        with self._lock:
            self._keys = keys
        return address

    def __repr__(self) -> str:  # never show keys
        return f"<Keystore {self.path}>"


_keystore: Keystore | None = None


def keystore() -> Keystore:
    global _keystore
    path = Path(settings.CLEARHOUSE_KEYSTORE)
    if _keystore is None or _keystore.path != path:
        _keystore = Keystore(path)
    return _keystore
