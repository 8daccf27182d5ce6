"""Batched JSON-RPC for the Ethereum rail: many calls in one HTTP request where the node is an
HTTP JSON-RPC endpoint (anvil, geth, ...), the same calls one by one through web3 for the
in-process chain (no network there, so nothing to batch).

Results are normalised to one shape whichever path served them: receipts as plain dicts with
integer ``blockNumber``/``status``/``gasUsed``/``effectiveGasPrice`` and logs whose ``logIndex`` is
an integer, so ``rails.crypto.contracts.decode_events`` reads both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import requests
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.providers.rpc import HTTPProvider

from rails.base import RailTimeout, RailUnavailable

MAX_BATCH_BYTES = 1_000_000
MAX_BATCH_CALLS = 1_000
Call = tuple[str, list[Any]]
Answer = tuple[Any, str | None]  # (result, error message)


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value
    return Web3.to_hex(value)


def norm_receipt(raw: Any) -> dict[str, Any] | None:
    if raw is None or raw.get("blockNumber") is None:
        return None
    return {
        "transactionHash": _hex(raw["transactionHash"]),
        "blockNumber": _int(raw["blockNumber"]),
        "status": _int(raw["status"]),
        "gasUsed": _int(raw["gasUsed"]),
        "effectiveGasPrice": _int(raw["effectiveGasPrice"]),
        "from": str(raw["from"]),
        "to": str(raw.get("to") or ""),
        "logs": [
            {
                "logIndex": _int(log["logIndex"]),
                "address": str(log["address"]),
                "topics": [_hex(t) for t in log["topics"]],
                "data": _hex(log["data"]),
            }
            for log in raw["logs"]
        ],
    }


def norm_transaction(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    return {
        "hash": _hex(raw["hash"]),
        "from": str(raw["from"]),
        "to": str(raw.get("to") or ""),
        "input": _hex(raw.get("input", raw.get("data", "0x"))),
        "value": _int(raw["value"]),
        "blockNumber": None if raw.get("blockNumber") is None else _int(raw["blockNumber"]),
    }


def _chunks(items: list[str]) -> list[list[str]]:
    """Requests of at most MAX_BATCH_CALLS calls and MAX_BATCH_BYTES (anvil refuses a body of a
    few megabytes; a batch of 50 multisends of 400 payouts is ~4.5 MB of raw transactions)."""
    chunks: list[list[str]] = [[]]
    size = 0
    for item in items:
        if chunks[-1] and (size + len(item) > MAX_BATCH_BYTES or len(chunks[-1]) >= MAX_BATCH_CALLS):
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item) + 1
    return chunks


class BatchRpc:
    """``call_many([(method, params), ...])`` -> ``[(result, error), ...]`` in order. A transport
    failure of the whole request raises RailTimeout / RailUnavailable; an error of one call is
    that call's ``error`` string."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        provider = w3.provider
        self.url: str | None = None
        self.timeout: float = 10.0
        if isinstance(provider, HTTPProvider):
            self.url = str(provider.endpoint_uri)
            self.timeout = float(provider.get_request_kwargs().get("timeout", 10))
        self._session: requests.Session | None = None
        self.round_trips = 0  # measured by the benchmarks and tests

    @property
    def batched(self) -> bool:
        return self.url is not None

    def call_many(self, calls: Sequence[Call]) -> list[Answer]:
        if not calls:
            return []
        if self.url is None:
            self.round_trips += 1
            return [self._local(method, params) for method, params in calls]
        if self._session is None:
            self._session = requests.Session()
        items = [json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}) for i, (m, p) in enumerate(calls)]
        by_id: dict[Any, Any] = {}
        for chunk in _chunks(items):
            by_id.update(self._post("[" + ",".join(chunk) + "]"))
        out: list[Answer] = []
        for i in range(len(calls)):
            answer = by_id.get(i)
            if answer is None:
                raise RailUnavailable(f"batch JSON-RPC: no answer for call {i}")
            error = answer.get("error")
            out.append((answer.get("result"), None if error is None else str(error.get("message", error))))
        return out

    def _post(self, body: str) -> dict[Any, Any]:
        assert self._session is not None and self.url is not None  # noqa: S101 - call_many set them
        self.round_trips += 1
        try:
            response = self._session.post(
                self.url, data=body, headers={"Content-Type": "application/json"}, timeout=self.timeout
            )
            response.raise_for_status()
            answers = response.json()
        except requests.exceptions.Timeout as exc:
            raise RailTimeout(str(exc)) from exc
        except (requests.exceptions.RequestException, ValueError, OSError) as exc:
            raise RailUnavailable(f"batch JSON-RPC failed: {exc}") from exc
        if not isinstance(answers, list):
            raise RailUnavailable(f"batch JSON-RPC answered {str(answers)[:200]}")
        return {a.get("id"): a for a in answers if isinstance(a, dict)}

    def _local(self, method: str, params: list[Any]) -> Answer:
        """One call through web3 (the in-process chain), normalised like the HTTP path."""
        eth = self.w3.eth
        try:
            if method == "eth_getTransactionReceipt":
                try:
                    return norm_receipt(eth.get_transaction_receipt(params[0])), None
                except TransactionNotFound:
                    return None, None
            if method == "eth_getTransactionByHash":
                try:
                    return norm_transaction(eth.get_transaction(params[0])), None
                except TransactionNotFound:
                    return None, None
            if method == "eth_blockNumber":
                return int(eth.block_number), None
            if method == "eth_getTransactionCount":
                return int(eth.get_transaction_count(params[0], params[1])), None
            if method == "eth_getCode":
                return _hex(eth.get_code(params[0], params[1])), None
            if method == "eth_sendRawTransaction":
                return _hex(eth.send_raw_transaction(params[0])), None
        except (RailTimeout, RailUnavailable):
            raise
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"
        raise ValueError(f"unsupported batched method {method}")
