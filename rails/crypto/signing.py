"""Key custody and signing: the only module that ever holds a private key.

Keys come from a keystore file (``CLEARHOUSE_KEYSTORE``: JSON ``{"<address>": "<private key hex>"}``
for Ethereum, Bitcoin and Solana addresses alike, readable by the service user only) and are kept
in process memory. They are never stored in the database, never logged and never returned:
callers get signed bytes, not keys. A production deployment points the same interface at an HSM or a signing service.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from eth_account import Account


class KeyNotFound(Exception):
    pass


class Keystore:
    """The keystore file and this process's copy of it.

    Several processes (web, workers, commands) share one file. A writer takes an exclusive
    ``flock`` on a sibling ``.lock`` file, re-reads the file under it (so it never writes back a
    stale copy over keys another process added), writes the whole set to a temporary file in the
    same directory (mode 600), fsyncs it, renames it over the keystore and fsyncs the directory:
    a reader sees the old file or the new one, never a partial one, and a crash mid-write leaves
    the old file as it was. A reader that misses an address re-reads the file, so a key another
    process added after this one loaded is found.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _read(self) -> dict[str, str]:
        """The keys on disk now (empty if there is no file yet)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "r") as handle:
            if os.fstat(handle.fileno()).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise PermissionError(f"keystore {self.path} must be readable by its owner only (chmod 600)")
            raw = json.load(handle)
        return {address.lower(): key for address, key in raw.items()}

    def _load(self, *, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if self._keys is None or refresh:
                self._keys = self._read()
            return self._keys

    def _lookup(self, address: str) -> str | None:
        key = self._load().get(address.lower())
        if key is None:  # another process may have added it since we read the file
            key = self._load(refresh=True).get(address.lower())
        return key

    def has(self, address: str) -> bool:
        return self._lookup(address) is not None

    def _key(self, address: str) -> str:
        key = self._lookup(address)
        if key is None:
            raise KeyNotFound(f"no key held for {address}")
        return key

    def sign_eth_transaction(self, address: str, transaction: dict[str, Any]) -> bytes:
        return bytes(Account.sign_transaction(transaction, self._key(address)).raw_transaction)

    def sign_bitcoin_digest(self, address: str, digest: bytes) -> tuple[bytes, bytes]:
        """ECDSA signature (DER) of a transaction's signature hash, and the public key."""
        from coincurve import PrivateKey  # libsecp256k1: DER, low S, RFC 6979 nonces

        key = PrivateKey(bytes.fromhex(self._key(address).removeprefix("0x")))
        return key.sign(digest, hasher=None), key.public_key.format(compressed=True)

    def sign_solana_message(self, address: str, message: Any, blockhash: Any) -> Any:
        """A signed ``solders.transaction.Transaction`` for ``message``."""
        from solders.keypair import Keypair
        from solders.transaction import Transaction

        keypair = Keypair.from_bytes(bytes.fromhex(self._key(address).removeprefix("0x")))
        return Transaction([keypair], message, blockhash)

    def add(self, private_key: str, chain: str = "ethereum") -> str:
        """Store a key (wallet provisioning, demo and test setup) and return its address on ``chain``."""
        address = address_for_key(private_key, chain)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, _exclusive(self._lock_path):
            keys = self._read()  # under the lock: what other processes wrote, not our cached copy
            if keys.get(address.lower()) != private_key:
                keys[address.lower()] = private_key
                self._replace(keys)
            self._keys = keys
        return address

    def _replace(self, keys: dict[str, str]) -> None:
        """Write ``keys`` to a temporary file beside the keystore, fsync, rename over it, fsync the
        directory. The caller holds the file lock."""
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")  # mode 600
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(keys, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def __repr__(self) -> str:  # never show keys
        return f"<Keystore {self.path}>"


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock shared by every process on this host (released if the holder dies)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


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
        from rails.crypto.bitcoin_network import address_for_secret

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
