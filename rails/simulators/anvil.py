"""Run anvil (Foundry's local Ethereum node) as a child process: a real JSON-RPC node on loopback
that many processes (web server, Celery workers, tests) share, unlike the in-process py-evm chain.

Installed by ``scripts/ensure_anvil.sh``; found through ``CLEARHOUSE_ANVIL`` or ``.tools/``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from web3 import Web3
from web3.types import Wei

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = ROOT / ".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"


def anvil_binary() -> str | None:
    path = os.environ.get("CLEARHOUSE_ANVIL") or str(DEFAULT_BIN)
    return path if Path(path).is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AnvilNode:
    """``with AnvilNode() as node: node.url`` - a fresh chain that mines each transaction at once
    (or every ``block_time`` seconds)."""

    def __init__(
        self, *, port: int | None = None, block_time: float | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        binary = anvil_binary()
        if binary is None:
            raise RuntimeError("anvil is not installed: run scripts/ensure_anvil.sh")
        self.binary = binary
        self.port = port or free_port()
        self.block_time = block_time
        self.extra_args = extra_args  # e.g. ("--gas-limit", "2000000000") for the benchmarks
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 10}))

    def start(self) -> AnvilNode:
        args = [self.binary, "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if self.block_time:
            args += ["--block-time", str(self.block_time)]
        args += list(self.extra_args)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603 - our own binary
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.w3.is_connected():
                    return self
            except Exception:  # noqa: S110 - not up yet
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"anvil did not answer on {self.url}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def fund(self, address: str, wei: int) -> str:
        """Pay ``wei`` from anvil's first (unlocked) development account; returns the tx hash."""
        tx = self.w3.eth.send_transaction(
            {"from": self.w3.eth.accounts[0], "to": Web3.to_checksum_address(address), "value": Wei(wei)}
        )
        self.w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        return tx.to_0x_hex()

    def automine(self, on: bool) -> None:
        """Mine each transaction as it arrives (anvil's default) or only on ``mine()``. With many
        large transactions queued at once, automine slows to seconds per block; benchmarks
        switch it off, send everything, then mine."""
        self.w3.provider.make_request("evm_setAutomine", [on])  # type: ignore[arg-type]

    def mine(self) -> None:
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
