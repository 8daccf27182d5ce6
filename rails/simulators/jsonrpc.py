"""A small JSON-RPC-over-HTTP server on loopback that node simulators build on.

Clients reach a simulator exactly as they reach a real node (python-bitcoinlib's ``RawProxy``
for Bitcoin, HTTP POSTs of solders' request bodies for Solana), so the rails' transport code,
error mapping and timeouts are exercised for real. Subclasses implement ``rpc_<method>``.

Fault switches, shared by every simulator (``inject(fault, times)`` in process, or the
``sim_inject`` RPC from another process such as a Celery worker):

* ``unavailable``        - the connection is closed without an answer (node down)
* ``timeout``            - the send call hangs until the client gives up; nothing is sent
* ``timeout_after_send`` - the transaction is accepted, then the answer never comes
* ``drop``               - the transaction is acknowledged and then lost from the mempool

Chain-specific ones (double spend, reorg, blockhash expiry) live in the subclasses.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any

from rails.simulators.loopback import LoopbackServer

COMMON_FAULTS = ("unavailable", "timeout", "timeout_after_send", "drop")
_DECIMAL = re.compile(r'"__dec__(-?[0-9.]+)__"')


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Hang(Exception):
    """Answer nothing: hold the connection until the client times out, then close it."""


class _Drop(Exception):
    """Close the connection at once (node down)."""


def _encode(value: Any) -> bytes:
    # Amounts go out as exact JSON numbers (bitcoind style), never through float.
    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return f"__dec__{obj:f}__"  # fixed point: a zero of 8 places is 0.00000000, not 0E-8
        raise TypeError(type(obj).__name__)

    return _DECIMAL.sub(r"\1", json.dumps(value, default=default)).encode()


class JsonRpcSimulator(LoopbackServer):
    FAULTS: tuple[str, ...] = COMMON_FAULTS
    SEND_METHODS: tuple[str, ...] = ()  # methods that submit a transaction
    jsonrpc_version = "2.0"

    def __init__(self, *, hang_seconds: float = 1.5) -> None:
        self.lock = threading.RLock()
        self.faults: Counter[str] = Counter()
        self.hang_seconds = hang_seconds

    # --- fault switches -------------------------------------------------------------------------
    def inject(self, fault: str, times: int = 1) -> None:
        if fault not in self.FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {self.FAULTS}")
        with self.lock:
            self.faults[fault] += times

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take(self, fault: str) -> bool:
        with self.lock:
            if self.faults[fault] > 0:
                self.faults[fault] -= 1
                return True
            return False

    def rpc_sim_inject(self, fault: str, times: int = 1) -> bool:
        self.inject(fault, times)
        return True

    def rpc_sim_clear(self) -> bool:
        self.clear_faults()
        return True

    # --- dispatch -------------------------------------------------------------------------------
    def call(self, method: str, params: list[Any]) -> Any:
        """Run one RPC in process (the HTTP handler calls this too)."""
        if self.take("unavailable"):
            raise _Drop()
        handler = getattr(self, f"rpc_{method}", None)
        if handler is None:
            raise RpcError(-32601, f"Method not found: {method}")
        if method in self.SEND_METHODS:
            if self.take("timeout"):
                raise _Hang()
            with self.lock:
                result = handler(*params)
            if self.take("timeout_after_send"):
                raise _Hang()
            return result
        with self.lock:
            return handler(*params)

    def answer(self, request: Any) -> dict[str, Any]:
        """The JSON-RPC answer to one call; a node fault (_Drop / _Hang) propagates: it ends
        the whole HTTP request, batch or not."""
        if not isinstance(request, dict):
            request = {}
        rid = request.get("id")
        try:
            result = self.call(request.get("method", ""), list(request.get("params") or []))
            body: dict[str, Any] = {"result": result, "error": None, "id": rid}
        except (_Drop, _Hang):
            raise
        except RpcError as exc:
            body = {"result": None, "error": {"code": exc.code, "message": exc.message}, "id": rid}
        except (TypeError, ValueError, KeyError) as exc:
            body = {"result": None, "error": {"code": -32602, "message": f"Invalid params: {exc}"}, "id": rid}
        except Exception as exc:  # a simulator bug must answer, not hang the client
            body = {"result": None, "error": {"code": -32603, "message": f"Internal error: {exc!r}"}, "id": rid}
        if self.jsonrpc_version == "2.0":
            body["jsonrpc"] = "2.0"
            if body["error"] is None:
                del body["error"]
            else:
                del body["result"]
        return body

    # --- HTTP server ------------------------------------------------------------------------------
    def serve(self, port: int = 0) -> str:
        """Start answering on 127.0.0.1:``port`` (0: any free port) in a thread; returns the URL."""
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: without TCP_NODELAY each answer on a
            # keep-alive connection waits for the client's delayed ACK (~40 ms per call)
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length), parse_float=Decimal)
                try:
                    if isinstance(request, list):  # a JSON-RPC batch: one answer per call, in order
                        body: Any = [simulator.answer(item) for item in request] if request else simulator.answer({})
                    else:
                        body = simulator.answer(request)
                except _Drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                except _Hang:
                    time.sleep(simulator.hang_seconds)
                    self.close_connection = True
                    self.connection.close()
                    return
                payload = _encode(body)
                # status line, headers and body in one write (TCP_NODELAY is on as well)
                head = (
                    f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
                ).encode()
                self.wfile.write(head + payload)

        return self._start(Handler, port)
