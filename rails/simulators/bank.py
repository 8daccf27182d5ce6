"""A bank network simulator: accounts with balances, ACH (NACHA), SEPA (pain.001), wires and
SWIFT (pacs.008) in; status reports (pain.002 / pacs.002), booking notifications (camt.054) and
end-of-day statements (camt.053) out.

Every incoming message is validated (ISO 20022 against its XSD, NACHA by its record layout and
control totals) before anything happens; a bad one is refused whole with HTTP 400. A payment
settles on its value date, at the earliest ``DELAYS[message type]`` business days after receipt
on the currency's calendar, when the network's clock (``today``) gets there (``instant``: at the
next processing). At settlement the debtor account must exist (AC01), be open (AC04) and hold the
amount (AM04); the creditor account must exist and be open. Faults: see ``network.py``.
Charges (``set_charges``: an amount per message type) are taken from the debtor on top of the
payment and reported in its booking's Chrgs, included in the entry amount.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from rails.formats import iso20022, nacha
from rails.formats.errors import FormatError
from rails.simulators.network import NetworkSimulator, Refused

CALENDARS = {"USD": "FED", "EUR": "TARGET"}
# Minimum business days between receipt and settlement per message type.
DELAYS = {"nacha": 1, "pain.001.001.03": 0, "pacs.008.001.08": 0}
REASONS = {
    "AC01": "Incorrect account number",
    "AC04": "Closed account number",
    "AM04": "Insufficient funds",
    "AM02": "Not allowed amount",
    "NARR": "Narrative",
}


@dataclass
class Account:
    key: str
    currency: str
    name: str
    balance: Decimal = Decimal(0)
    closed: bool = False
    bookings: list[iso20022.Booking] = field(default_factory=list)


@dataclass
class Payment:
    message_id: str
    message_type: str
    end_to_end_id: str
    amount: Decimal
    currency: str
    debtor: str
    creditor: str
    debtor_name: str
    creditor_name: str
    remittance: str
    value_date: date
    status: str = "pending"
    reason: str = ""


class BankSimulator(NetworkSimulator):
    def __init__(self, *, ach_settlement_account: str = "", ach_limit: Decimal | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accounts: dict[str, Account] = {}
        self.payments: list[Payment] = []
        self.ach_settlement_account = ach_settlement_account  # the ACH originator's account (offset)
        self.ach_limit = ach_limit  # larger ACH entries are rejected AM02 (the method's limit)
        self._entry_seq = 0
        # What the bank charges the debtor per payment, by message type ("nacha", "pacs.008.001.08",
        # ...): taken with the payment, included in the debtor's entry and reported in its Chrgs.
        self.charges: dict[str, Decimal] = {}

    # --- accounts ---------------------------------------------------------------------------------
    def open_account(self, key: str, *, currency: str, name: str = "", balance: Decimal | str | int = 0) -> Account:
        with self.lock:
            account = self.accounts.get(key)
            if account is None:
                account = self.accounts[key] = Account(key=key, currency=currency, name=name or key)
            account.balance += Decimal(balance)
            return account

    def close_account(self, key: str) -> None:
        with self.lock:
            self.accounts[key].closed = True

    def balance(self, key: str) -> Decimal:
        with self.lock:
            return self.accounts[key].balance

    def control(self, command: str, args: dict[str, Any]) -> Any:
        if command == "open_account":
            self.open_account(
                args["account"], currency=args["currency"], name=args.get("name", ""), balance=args.get("balance", 0)
            )
            return True
        if command == "close_account":
            self.close_account(args["account"])
            return True
        if command == "balance":
            return str(self.balance(args["account"]))
        if command == "set_charges":
            with self.lock:
                self.charges[args["message_type"]] = Decimal(args["amount"])
            return True
        return super().control(command, args)

    # --- receiving ------------------------------------------------------------------------------------
    def _value_date(self, requested: date, message_type: str, currency: str) -> date:
        earliest = self.add_business_days(self.today, DELAYS.get(message_type, 1), CALENDARS.get(currency, "FED"))
        return max(requested, earliest)

    def accept(self, *, message_id: str, body: bytes, content_type: str) -> None:
        try:
            if content_type.startswith("text/plain"):
                payments = self._read_ach(message_id, body.decode("ascii"))
                message_type = "nacha"
            else:
                message_type = iso20022.detect(body)
                if message_type == "pain.001.001.03":
                    _, transfers = iso20022.parse_pain001(body)
                elif message_type == "pacs.008.001.08":
                    _, transfers = iso20022.parse_pacs008(body)
                else:
                    raise Refused("FF01", f"{message_type} is not a payment message this network takes")
                payments = [self._payment(message_id, message_type, t) for t in transfers]
        except FormatError as exc:
            raise Refused("FF01", f"invalid message: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise Refused("FF01", f"invalid message: not ASCII ({exc})") from exc
        self.received[message_id] = message_type
        statuses = []
        for payment in payments:
            code = self.take_reject()
            if code is None and message_type == "nacha" and self.ach_limit is not None:
                code = "AM02" if payment.amount > self.ach_limit else None
            if code is not None:
                payment.status, payment.reason = "rejected", code
                statuses.append(
                    iso20022.PaymentStatus(message_id, payment.end_to_end_id, "RJCT", code, REASONS.get(code, ""))
                )
            else:
                statuses.append(iso20022.PaymentStatus(message_id, payment.end_to_end_id, "ACCP"))
            self.payments.append(payment)
        if message_type != "pacs.008.001.08":
            self._status_report(message_id, message_type, statuses)
        else:
            rejected = [s for s in statuses if s.status == "RJCT"]
            if rejected:
                self._status_report(message_id, message_type, rejected)

    def _payment(self, message_id: str, message_type: str, t: iso20022.CreditTransfer) -> Payment:
        return Payment(
            message_id=message_id,
            message_type=message_type,
            end_to_end_id=t.end_to_end_id,
            amount=t.amount,
            currency=t.currency,
            debtor=t.debtor.iban or t.debtor.account,
            creditor=t.creditor.iban or t.creditor.account,
            debtor_name=t.debtor.name,
            creditor_name=t.creditor.name,
            remittance=t.remittance,
            value_date=self._value_date(t.value_date, message_type, t.currency),
        )

    def _read_ach(self, message_id: str, text: str) -> list[Payment]:
        ach_file = nacha.read_ach_file(text)
        entries = nacha.parse_ach_file(text)
        # A blank or zero effective date (000000) settles as if requested today (then the delay).
        effective = (ach_file.batches[0].effective_date if ach_file.batches else None) or self.today
        offset = self.ach_settlement_account
        payments = []
        for entry in entries:
            debtor, creditor = (entry.account, offset) if entry.debit else (offset, entry.account)
            payments.append(
                Payment(
                    message_id=message_id,
                    message_type="nacha",
                    end_to_end_id=entry.trace_ref,
                    amount=entry.amount,
                    currency="USD",
                    debtor=debtor,
                    creditor=creditor,
                    debtor_name=entry.name if entry.debit else "ACH originator",
                    creditor_name="ACH originator" if entry.debit else entry.name,
                    remittance=f"ACH {entry.trace_ref}",
                    value_date=self._value_date(effective, "nacha", "USD"),
                )
            )
        return payments

    def _status_report(self, message_id: str, message_type: str, statuses: list[iso20022.PaymentStatus]) -> None:
        now = datetime.now(UTC)
        self._entry_seq += 1
        report_id = f"STS{self._entry_seq:08d}"
        if message_type == "pacs.008.001.08":
            xml = iso20022.build_pacs002(
                message_id=report_id,
                created_at=now,
                original_message_id=message_id,
                original_message_type=message_type,
                statuses=statuses,
            )
            self.emit("pacs.002", xml.decode())
        else:
            xml = iso20022.build_pain002(
                message_id=report_id,
                created_at=now,
                original_message_id=message_id,
                original_message_type="pain.001.001.03" if message_type != "nacha" else "NACHA",
                statuses=statuses,
            )
            self.emit("pain.002", xml.decode())

    # --- settling ---------------------------------------------------------------------------------------
    def process_due(self) -> None:
        with self.lock:
            for payment in self.payments:
                if payment.status != "pending" or (not self.instant and payment.value_date > self.today):
                    continue
                self._settle(payment)

    def _refusal(self, payment: Payment) -> str | None:
        debtor = self.accounts.get(payment.debtor)
        creditor = self.accounts.get(payment.creditor)
        if debtor is None or creditor is None:
            return "AC01"
        if debtor.closed or creditor.closed:
            return "AC04"
        if debtor.currency != payment.currency or creditor.currency != payment.currency:
            return "AC01"
        if debtor.balance < payment.amount + self.charges.get(payment.message_type, Decimal(0)):
            return "AM04"
        return None

    def _settle(self, payment: Payment) -> None:
        code = self._refusal(payment)
        status = iso20022.PaymentStatus(payment.message_id, payment.end_to_end_id, "ACSC")
        if code is not None:
            payment.status, payment.reason = "rejected", code
            status = iso20022.PaymentStatus(
                payment.message_id, payment.end_to_end_id, "RJCT", code, REASONS.get(code, "")
            )
            self._status_report(payment.message_id, payment.message_type, [status])
            return
        payment.status = "settled"
        value_date = payment.value_date if not self.instant else min(payment.value_date, self.today)
        debtor, creditor = self.accounts[payment.debtor], self.accounts[payment.creditor]
        charge = self.charges.get(payment.message_type, Decimal(0))
        debtor.balance -= payment.amount + charge
        creditor.balance += payment.amount
        for account, side, other, other_name, charged in (
            (debtor, "DBIT", creditor.key, payment.creditor_name, charge),
            (creditor, "CRDT", debtor.key, payment.debtor_name, Decimal(0)),
        ):
            self._entry_seq += 1
            booking = iso20022.Booking(
                entry_ref=f"E{self._entry_seq:010d}",
                account=account.key,
                amount=payment.amount + charged,
                currency=payment.currency,
                credit_debit=side,
                booking_date=self.today,
                value_date=value_date,
                end_to_end_id=payment.end_to_end_id,
                counterparty_name=other_name,
                counterparty_account=other,
                remittance=payment.remittance,
                charges=charged,
                charges_included=True,
                charge_type="COMM" if charged else "",
            )
            account.bookings.append(booking)
            xml = iso20022.build_camt054(
                message_id=f"NTF{self._entry_seq:010d}",
                created_at=datetime.now(UTC),
                account=account.key,
                currency=account.currency,
                bookings=[booking],
            )
            self.emit("camt.054", xml.decode())
        if payment.message_type != "nacha":
            self._status_report(payment.message_id, payment.message_type, [status])

    # --- statements -------------------------------------------------------------------------------------
    def statement(self, *, account: str, on: date) -> str:
        acct = self.accounts.get(account)
        if acct is None:
            raise Refused("AC01", f"no account {account}")
        day = [b for b in acct.bookings if b.booking_date == on]
        later = [b for b in acct.bookings if b.booking_date > on]

        def signed(b: iso20022.Booking) -> Decimal:
            return b.amount if b.credit_debit == "CRDT" else -b.amount

        closing = acct.balance - sum((signed(b) for b in later), Decimal(0))
        opening = closing - sum((signed(b) for b in day), Decimal(0))
        statement = iso20022.Statement(
            statement_id=f"{account}-{on.isoformat()}",
            account=account,
            currency=acct.currency,
            created_at=datetime.now(UTC),
            from_date=on,
            to_date=on,
            opening_balance=opening,
            closing_balance=closing,
            entries=day,
        )
        return iso20022.build_camt053(
            message_id=f"STM{on:%Y%m%d}{len(acct.bookings):06d}", statement=statement
        ).decode()
