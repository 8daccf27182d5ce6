"""HTTP server of a message network (bank network, custodian) on loopback, with a clock and faults.

Protocol (the client is ``rails.network.NetworkClient``):

* ``POST /messages`` (body = the message, header ``X-Message-Id``) → 202 ``{"status": "accepted"}``,
  202 ``{"status": "duplicate"}`` for a message id already received (nothing happens twice), 400
  ``{"code", "error"}`` for a message refused as a whole.
* ``GET /reports?after=N&limit=M&epoch=E`` → ``{"epoch", "reports": [{"epoch", "sequence", "kind",
  "content"}]}``: the reports after position (E, N), in order. ``epoch`` names a numbering of the
  reports: it is "" until the network restarts its sequence numbers, then each restart starts a
  new epoch at sequence 1. Asked from an earlier epoch, the network serves the rest of it and
  then the later epochs; asked from an epoch it does not know, its current epoch from the start.
  The answer's ``epoch`` is the current one. Due payments are processed first (the network
  settles what its clock says is due).
* ``GET /statement?account=&date=`` → the account's end-of-day statement.
* ``POST /sim/<command>`` with a JSON body: control from another process (``advance``,
  ``inject``, ``clear``, ``open_account``, ``close_account``, ``set_date``, ``instant``).

Fault switches (``inject(fault, times, code=...)``):

* ``unavailable``          - the connection is closed without an answer
* ``timeout``              - the submit hangs until the client gives up; nothing is received
* ``timeout_after_accept`` - the message is received and processed, then the answer never comes
* ``reject``               - the next payment(s) are rejected with ISO reason ``code``
* ``duplicate``            - the next report(s) are delivered twice (a second sequence number)
* ``sequence_restart``     - the network restarts its report numbering: the next report is
                             sequence 1 of a new epoch (``restart-1``, ``restart-2``, ...)
* ``sequence_reset``       - the same without naming a new epoch (a network that lost its
                             numbering): the next report is sequence 1 again, earlier ones gone

The clock: ``today`` is the network's business date; payments settle on their value date (at
the earliest after the configured business-day delay). ``instant=True`` (the test clock) settles
everything at the next processing regardless of dates.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from rails.simulators.loopback import LoopbackServer
from reference.calendars import settlement_date

FAULTS = (
    "unavailable",
    "timeout",
    "timeout_after_accept",
    "reject",
    "duplicate",
    "sequence_restart",
    "sequence_reset",
)


class Refused(Exception):
    """The message is refused as a whole (HTTP 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Hang(Exception):
    pass


class _Drop(Exception):
    pass


class NetworkSimulator(LoopbackServer):
    calendar = "FED"

    def __init__(self, *, today: date | None = None, instant: bool = False, hang_seconds: float = 1.5) -> None:
        self.lock = threading.RLock()
        self.faults: Counter[str] = Counter()
        self.reject_codes: list[str] = []
        self.hang_seconds = hang_seconds
        self.today = today or datetime.now(UTC).date()
        self.instant = instant
        self.epoch = ""  # the current numbering of the reports (a restart starts the next one)
        self.reports: list[dict[str, Any]] = []  # the current epoch's
        self.epochs: dict[str, list[dict[str, Any]]] = {self.epoch: self.reports}  # every epoch, in order
        self.received: dict[str, str] = {}  # message id -> message type

    # --- faults and clock -------------------------------------------------------------------
    def inject(self, fault: str, times: int = 1, code: str = "") -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        with self.lock:
            self.faults[fault] += times
            if fault == "reject":
                self.reject_codes.extend([code or "NARR"] * times)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
            self.reject_codes.clear()

    def take(self, fault: str) -> bool:
        with self.lock:
            if self.faults[fault] > 0:
                self.faults[fault] -= 1
                return True
            return False

    def take_reject(self) -> str | None:
        with self.lock:
            if self.take("reject"):
                return self.reject_codes.pop(0) if self.reject_codes else "NARR"
            return None

    def add_business_days(self, day: date, days: int, calendar: str | None = None) -> date:
        """``days`` business days after ``day`` (from the next open day if ``day`` is closed)."""
        return settlement_date(trade_date=day, cycle=days, calendars=(calendar or self.calendar,))

    def advance(self, days: int = 1) -> date:
        """Move the clock to the ``days``-th next business day and settle what is due."""
        with self.lock:
            self.today = self.add_business_days(self.today + timedelta(days=1), days - 1)
            self.process_due()
            return self.today

    def set_date(self, day: date) -> None:
        with self.lock:
            self.today = day
            self.process_due()

    # --- reports ------------------------------------------------------------------------------
    def emit(self, kind: str, content: str) -> None:
        """Queue a report for the client (twice under the ``duplicate`` fault; first in a new
        epoch under ``sequence_restart``, numbered from 1 again in the same one under
        ``sequence_reset``)."""
        with self.lock:
            if self.take("sequence_restart"):
                self.epoch = f"restart-{len(self.epochs)}"
                self.reports = []
                self.epochs[self.epoch] = self.reports
            if self.take("sequence_reset"):
                self.reports.clear()
            copies = 2 if self.take("duplicate") else 1
            for _ in range(copies):
                self.reports.append(
                    {"epoch": self.epoch, "sequence": len(self.reports) + 1, "kind": kind, "content": content}
                )

    def reports_after(self, after: int, limit: int = 1000, epoch: str | None = None) -> dict[str, Any]:
        """The reports after position (``epoch``, ``after``) - ``epoch`` None: the current one."""
        with self.lock:
            self.process_due()
            names = list(self.epochs)
            if epoch is None:
                epoch = self.epoch
            if epoch not in self.epochs:  # a position the network cannot place: all of the current epoch
                epoch, after = self.epoch, 0
            found: list[dict[str, Any]] = []
            for name in names[names.index(epoch) :]:
                found += self.epochs[name][after if name == epoch else 0 :]
                if len(found) >= limit:
                    break
            return {"epoch": self.epoch, "reports": found[:limit]}

    # --- subclass hooks ----------------------------------------------------------------------------
    def accept(self, *, message_id: str, body: bytes, content_type: str) -> None:
        raise NotImplementedError

    def process_due(self) -> None:
        raise NotImplementedError

    def statement(self, *, account: str, on: date) -> str:
        raise Refused("NOST", "this network gives no statements")

    def control(self, command: str, args: dict[str, Any]) -> Any:
        if command == "inject":
            self.inject(args["fault"], int(args.get("times", 1)), args.get("code", ""))
        elif command == "clear":
            self.clear_faults()
        elif command == "advance":
            return self.advance(int(args.get("days", 1))).isoformat()
        elif command == "set_date":
            self.set_date(date.fromisoformat(args["date"]))
        elif command == "instant":
            self.instant = bool(args.get("on", True))
        else:
            raise Refused("CMND", f"unknown command {command!r}")
        return True

    # --- submission ---------------------------------------------------------------------------------
    def submit(self, *, message_id: str, body: bytes, content_type: str) -> dict[str, str]:
        """What ``POST /messages`` does (tests call it in process as well)."""
        if self.take("unavailable"):
            raise _Drop()
        if self.take("timeout"):
            raise _Hang()
        with self.lock:
            if not message_id:
                raise Refused("FF01", "X-Message-Id header missing")
            if message_id in self.received:
                return {"status": "duplicate", "message_id": message_id}
            self.accept(message_id=message_id, body=body, content_type=content_type)
        if self.take("timeout_after_accept"):
            raise _Hang()
        return {"status": "accepted", "message_id": message_id}

    # --- HTTP ----------------------------------------------------------------------------------------
    def serve(self, port: int = 0) -> str:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any, content_type: str = "application/json") -> None:
                payload = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _hang_up(self, hang: bool) -> None:
                if hang:
                    time.sleep(simulator.hang_seconds)
                self.close_connection = True
                self.connection.close()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = urlparse(self.path).path
                try:
                    if path == "/messages":
                        result = simulator.submit(
                            message_id=self.headers.get("X-Message-Id", ""),
                            body=body,
                            content_type=self.headers.get("Content-Type", ""),
                        )
                        self._answer(202, result)
                    elif path.startswith("/sim/"):
                        with simulator.lock:
                            result = simulator.control(path[5:], json.loads(body or b"{}"))
                        self._answer(200, {"result": result})
                    else:
                        self._answer(404, {"error": f"no such path {path}"})
                except _Drop:
                    self._hang_up(False)
                except _Hang:
                    self._hang_up(True)
                except Refused as exc:
                    self._answer(400, {"code": exc.code, "error": exc.message})
                except Exception as exc:  # a simulator bug answers 500, it does not hang the client
                    self._answer(500, {"error": repr(exc)})

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                try:
                    if url.path == "/reports":
                        page = simulator.reports_after(
                            int(query.get("after", 0)), int(query.get("limit", 1000)), query.get("epoch")
                        )
                        self._answer(200, page)
                    elif url.path == "/statement":
                        with simulator.lock:
                            xml = simulator.statement(account=query["account"], on=date.fromisoformat(query["date"]))
                        self._answer(200, xml.encode(), "application/xml")
                    else:
                        self._answer(404, {"error": f"no such path {url.path}"})
                except Refused as exc:
                    self._answer(400, {"code": exc.code, "error": exc.message})
                except Exception as exc:
                    self._answer(500, {"error": repr(exc)})

        return self._start(Handler, port)
