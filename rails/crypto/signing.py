"""Key custody and signing: the only module that ever holds a private key.

Keys come from a keystore file (``CLEARHOUSE_KEYSTORE``: JSON ``{"<address>": "<private key hex>"}``
for Ethereum, Bitcoin and Solana addresses alike, readable by the service user only) and are kept
in process memory. They are never stored in the database, never logged and never returned:
callers get signed bytes, not keys. A production deployment points the same interface at an HSM or a signing service.
"""

from __future__ import annotations

import json
import os
import secrets
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

    def _key(self, address: str) -> str:
        key = self._load().get(address.lower())
        if key is None:
            raise KeyNotFound(f"no key held for {address}")
        return key

    def sign_eth_transaction(self, address: str, transaction: dict[str, Any]) -> bytes:
        return bytes(Account.sign_transaction(transaction, self._key(address)).raw_transaction)

    def sign_bitcoin_digest(self, address: str, digest: bytes) -> tuple[bytes, bytes]:
        """ECDSA signature (DER) of a transaction's signature hash, and the public key."""
        from bitcoin.wallet import CBitcoinSecret

        secret = CBitcoinSecret.from_secret_bytes(bytes.fromhex(self._key(address).removeprefix("0x")))
        return secret.sign(digest), bytes(secret.pub)

    def sign_solana_message(self, address: str, message: Any, blockhash: Any) -> Any:
        """A signed ``solders.transaction.Transaction`` for ``message``."""
        from solders.keypair import Keypair
        from solders.transaction import Transaction

        keypair = Keypair.from_bytes(bytes.fromhex(self._key(address).removeprefix("0x")))
        return Transaction([keypair], message, blockhash)

    def add(self, private_key: str, chain: str = "ethereum") -> str:
        """Store a key (demo and test setup) and return its address on ``chain``."""
        address = address_for_key(private_key, chain)
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


def new_private_key(chain: str) -> str:
    """A fresh random key in the keystore's hex form for ``chain``."""
    if chain == "solana":
        from solders.keypair import Keypair

        return bytes(Keypair()).hex()
    return "0x" + secrets.token_hex(32)


def address_for_key(private_key: str, chain: str) -> str:
    if chain == "ethereum":
        return Account.from_key(private_key).address
    if chain == "bitcoin":
        from rails.crypto.bitcoin import address_for_secret

        return address_for_secret(bytes.fromhex(private_key.removeprefix("0x")))
    if chain == "solana":
        from solders.keypair import Keypair

        return str(Keypair.from_bytes(bytes.fromhex(private_key.removeprefix("0x"))).pubkey())
    raise ValueError(f"no key format for chain {chain!r}")


_keystore: Keystore | None = None


def keystore() -> Keystore:
    global _keystore
    path = Path(settings.CLEARHOUSE_KEYSTORE)
    if _keystore is None or _keystore.path != path:
        _keystore = Keystore(path)
    return _keystore
