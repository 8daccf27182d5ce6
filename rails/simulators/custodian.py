"""A custodian simulator: safekeeping accounts holding securities by ISIN, settlement
instructions in as sese.023, confirmations out as sese.025.

An instruction settles on its intended settlement date (by the custodian's clock, on the market
calendar) if the delivering account holds the full quantity: partial settlement is off (NPAR),
so a short account does not deliver part of it. Instead the instruction *fails*: a fail advice
(``custody.fail``, JSON: reference, reason LACK, since) is reported once, and the custodian
tries again at every later processing until the securities are there; then sese.025.
There is no sese.024 schema in our conformance set, so the fail and reject advices are JSON.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from rails.formats.errors import FormatError
from rails.formats.iso20022 import sese
from rails.simulators.network import NetworkSimulator, Refused


@dataclass
class Settlement:
    message_id: str
    instruction: sese.SecuritiesInstruction
    status: str = "pending"  # pending, failing, settled, rejected
    failing_since: date | None = None


class CustodianSimulator(NetworkSimulator):
    calendar = "NYSE"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.holdings: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        self.accounts: set[str] = set()
        self.settlements: list[Settlement] = []
        self._seq = 0

    def open_account(self, account: str, *, isin: str = "", quantity: Decimal | str | int = 0) -> None:
        with self.lock:
            self.accounts.add(account)
            if isin:
                self.holdings[account][isin] += Decimal(quantity)

    def position(self, account: str, isin: str) -> Decimal:
        with self.lock:
            return self.holdings[account][isin]

    def control(self, command: str, args: dict[str, Any]) -> Any:
        if command == "open_account":
            self.open_account(args["account"], isin=args.get("isin", ""), quantity=args.get("quantity", 0))
            return True
        if command == "position":
            return str(self.position(args["account"], args["isin"]))
        return super().control(command, args)

    def accept(self, *, message_id: str, body: bytes, content_type: str) -> None:
        try:
            instruction = sese.parse_sese023(body)
        except FormatError as exc:
            raise Refused("FF01", f"invalid sese.023: {exc}") from exc
        self.received[message_id] = "sese.023.001.11"
        settlement = Settlement(message_id, instruction)
        self.settlements.append(settlement)
        code = self.take_reject()
        if code is None and (
            instruction.safekeeping_account not in self.accounts
            or instruction.counterparty_account not in self.accounts
        ):
            code = "SAFE"  # unknown safekeeping account
        if code is not None:
            settlement.status = "rejected"
            self.emit("custody.reject", json.dumps({"reference": instruction.reference, "reason": code}))

    def process_due(self) -> None:
        with self.lock:
            for settlement in self.settlements:
                if settlement.status not in ("pending", "failing"):
                    continue
                ins = settlement.instruction
                if not self.instant and ins.settlement_date > self.today:
                    continue
                deliverer, receiver = (
                    (ins.safekeeping_account, ins.counterparty_account)
                    if ins.movement == "DELI"
                    else (ins.counterparty_account, ins.safekeeping_account)
                )
                if self.holdings[deliverer][ins.isin] < ins.quantity:
                    if settlement.status != "failing":
                        settlement.status, settlement.failing_since = "failing", self.today
                        held = self.holdings[deliverer][ins.isin]
                        self.emit(
                            "custody.fail",
                            json.dumps(
                                {
                                    "reference": ins.reference,
                                    "reason": "LACK",
                                    "text": f"{deliverer} holds {held} of {ins.quantity} {ins.isin}; no partial",
                                    "since": self.today.isoformat(),
                                }
                            ),
                        )
                    continue
                self.holdings[deliverer][ins.isin] -= ins.quantity
                self.holdings[receiver][ins.isin] += ins.quantity
                settlement.status = "settled"
                self._seq += 1
                confirmation = sese.SecuritiesConfirmation(
                    reference=ins.reference,
                    isin=ins.isin,
                    quantity=ins.quantity,
                    movement=ins.movement,
                    settlement_amount=ins.settlement_amount,
                    currency=ins.currency,
                    settlement_date=self.today if not self.instant else min(self.today, ins.settlement_date),
                    safekeeping_account=ins.safekeeping_account,
                )
                xml = sese.build_sese025(
                    message_id=f"CNF{self._seq:010d}", created_at=datetime.now(UTC), confirmation=confirmation
                )
                self.emit("sese.025", xml.decode())
