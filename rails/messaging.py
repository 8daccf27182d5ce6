"""HTTP client of a message network: the bank network (``rails.fiat``) or a custodian (``rails.custody``).

The protocol is the one the simulators in ``rails/simulators/network.py`` serve and a real
gateway adapter would sit behind:

* ``POST /messages`` with the message as the body (``application/xml`` for ISO 20022,
  ``text/plain`` for NACHA) and the message id in ``X-Message-Id``. 202 = accepted (also for a
  message id the network already has: a resend never pays twice), 400 = the message is refused
  as a whole (schema, layout) with the reason in the JSON body.
* ``GET /reports?after=N&epoch=E`` returns ``{"epoch", "reports": [{"epoch", "sequence", "kind",
  "content"}, ...]}``: status reports (pain.002, pacs.002), booking notifications (camt.054),
  custody confirmations (sese.025) and fail advices after position (E, N), in order; the same
  report may come twice. A report's natural key is (epoch, sequence): a network that restarts its
  sequence numbers names a new epoch (numbered from 1 again) and, asked from an earlier epoch,
  serves the rest of it, then the later ones (from an epoch it does not know: its current epoch
  from the start). The answer's ``epoch`` is the network's current one; a network without epochs
  leaves them out (""). Epoch names never contain ``~`` (the client's names for numberings a
  network restarted without naming, ``netting.reports``).
* ``GET /statement?account=...&date=YYYY-MM-DD`` returns the camt.053 of that account and day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import requests

from rails.base import RailRejected, RailTimeout, RailUnavailable


@dataclass(frozen=True)
class Report:
    sequence: int
    kind: str
    content: str
    epoch: str = ""


@dataclass(frozen=True)
class ReportPage:
    epoch: str  # the network's current numbering
    reports: list[Report]


class NetworkClient:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise RailTimeout(f"{self.url}{path}: no answer within {self.timeout}s") from exc
        except requests.ConnectionError as exc:
            raise RailUnavailable(f"{self.url}{path}: {exc}") from exc
        if response.status_code >= 500:
            raise RailUnavailable(f"{self.url}{path}: HTTP {response.status_code}")
        return response

    def submit(self, *, message_id: str, payload: str, content_type: str) -> dict[str, Any]:
        """Hand a message to the network. Returns its acknowledgement; ``RailRejected`` when the
        network refuses the message as a whole; transient errors when it did not answer."""
        response = self._call(
            "POST",
            "/messages",
            data=payload.encode(),
            headers={"Content-Type": content_type, "X-Message-Id": message_id},
        )
        if response.status_code == 400:
            body = response.json()
            raise RailRejected(f"{body.get('code', 'FF01')}: {body.get('error', response.text)}")
        if response.status_code not in (200, 202):
            raise RailUnavailable(f"unexpected HTTP {response.status_code} from {self.url}")
        return response.json()

    def reports(self, *, after: int, epoch: str = "", limit: int = 1000) -> ReportPage:
        """The reports after position (``epoch``, ``after``)."""
        response = self._call("GET", "/reports", params={"after": after, "epoch": epoch, "limit": limit})
        body = response.json()
        current = str(body.get("epoch") or "")
        return ReportPage(
            epoch=current,
            reports=[
                Report(int(r["sequence"]), r["kind"], r["content"], str(r.get("epoch", current) or ""))
                for r in body["reports"]
            ],
        )

    def statement(self, *, account: str, on: date) -> str:
        response = self._call("GET", "/statement", params={"account": account, "date": on.isoformat()})
        if response.status_code != 200:
            raise RailRejected(f"statement of {account} for {on}: HTTP {response.status_code} {response.text}")
        return response.text
