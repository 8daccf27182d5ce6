"""The messages a netted instruction goes out as, and the events the networks' reports mean.

Outbound, per method: ACH → a NACHA file with one CCD entry (the house originates a debit for a
pay-in, a credit for a pay-out); SEPA → pain.001.001.03 (built with sepaxml); WIRE → pacs.008
for Fedwire (agents by ABA routing number); SWIFT → pacs.008 with agents by BIC and accounts by
IBAN; custody → sese.023 (a free-of-payment delivery between the participant's safekeeping
account and the house's). Every message carries our end-to-end id, which the reports echo.

Inbound: pain.002 / pacs.002 status reports (ACCP/ACSP/PDNG = accepted, ACSC = settled, RJCT =
rejected with its ISO reason code), camt.054 bookings on a house account (settled), sese.025
(settled) and the custodian's fail advice (failing, e.g. LACK: not enough securities).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from common.jsonload import json_loads
from netting.models import Direction, NettedInstruction, RailMethod
from rails.fiat.routing import AccountDetails
from rails.formats import iso20022, nacha
from rails.formats.iso20022 import sese

CONTENT_TYPES = {"nacha": "text/plain"}


@dataclass(frozen=True)
class Route:
    """Where a netted payment goes (chosen by ``netting.pipeline.routes``): its method and the
    participant's account details and name."""

    method: str
    participant: AccountDetails
    participant_name: str


@dataclass(frozen=True)
class Message:
    message_type: str
    payload: str


def house_party(currency: str) -> iso20022.Party:
    account = settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS.get(currency)
    if account is None:
        from rails.fiat.routing import NoRoute

        raise NoRoute(f"the house has no {currency} settlement account configured")
    return iso20022.Party(
        name=settings.CLEARHOUSE_HOUSE_NAME,
        country=account.get("country", ""),
        iban=account.get("iban", ""),
        bic=account.get("bic", ""),
        aba=account.get("aba", ""),
        account=account.get("account", ""),
    )


def house_accounts() -> set[str]:
    """Identifiers of the house's bank accounts as they appear in bookings (IBAN or number)."""
    return {a.get("iban") or a.get("account") for a in settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS.values()}


def _participant_party(route: Route) -> iso20022.Party:
    details = route.participant
    country = details.iban[:2] if details.iban else ("US" if details.aba else "")
    return iso20022.Party(
        name=route.participant_name[:70].strip(),
        country=country,
        iban=details.iban,
        bic=details.bic,
        aba=details.aba,
        account=details.account,
    )


def build_message(*, ni: NettedInstruction, route: Route, message_id: str, end_to_end_id: str) -> Message:
    now = timezone.now()
    asset = ni.asset
    remittance = f"Clearhouse window {ni.window_id} {ni.get_direction_display().split(' ')[0]} {ni.reference}"
    if route.method == RailMethod.CUSTODY:
        house_account = settings.CLEARHOUSE_HOUSE_CUSTODY_ACCOUNT
        details = route.participant
        pay_in = ni.direction == Direction.PAY_IN
        instruction = sese.SecuritiesInstruction(
            reference=end_to_end_id,
            isin=asset.isin,
            quantity=ni.amount,
            movement="DELI",
            payment="FREE",
            settlement_amount=ni.amount * 0,
            currency="USD",
            trade_date=ni.window.closed_at.date() if ni.window.closed_at else now.date(),
            settlement_date=ni.settlement_date,
            safekeeping_account=details.account if pay_in else house_account["account"],
            account_owner_bic=details.bic if pay_in else house_account["bic"],
            counterparty_account=house_account["account"] if pay_in else details.account,
            counterparty_bic=house_account["bic"] if pay_in else details.bic,
        )
        return Message(
            "sese.023.001.11",
            sese.build_sese023(message_id=message_id, created_at=now, instruction=instruction).decode(),
        )

    house = house_party(asset.code)
    participant = _participant_party(route)
    debtor, creditor = (participant, house) if ni.direction == Direction.PAY_IN else (house, participant)
    if route.method == RailMethod.ACH:
        origin = settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS["USD"]
        entry = nacha.AchEntry(
            trace_ref=end_to_end_id,
            amount=ni.amount,
            debit=ni.direction == Direction.PAY_IN,
            routing=participant.aba,
            account=participant.account,
            name=participant.name[:22].strip(),
        )
        text = nacha.build_ach_file(
            file_id_modifier="A",
            created_at=now,
            origin_routing=origin["aba"],
            origin_name=settings.CLEARHOUSE_HOUSE_NAME[:23].strip(),
            company_id=origin.get("company_id", "1" + origin["aba"][:9]),
            company_name=settings.CLEARHOUSE_HOUSE_NAME[:16].strip(),
            effective_date=ni.settlement_date,
            entries=[entry],
        )
        return Message("nacha", text)
    transfer = iso20022.CreditTransfer(
        end_to_end_id=end_to_end_id,
        amount=ni.amount,
        currency=asset.code,
        debtor=debtor,
        creditor=creditor,
        remittance=remittance,
        value_date=max(ni.settlement_date, now.date()),
    )
    if route.method == RailMethod.SEPA:
        xml = iso20022.build_pain001(message_id=message_id, created_at=now, transfers=[transfer])
        return Message("pain.001.001.03", xml.decode())
    if route.method == RailMethod.WIRE:
        xml = iso20022.build_pacs008(message_id=message_id, created_at=now, transfers=[transfer])
        return Message("pacs.008.001.08", xml.decode())
    xml = iso20022.build_pacs008(
        message_id=message_id, created_at=now, transfers=[transfer], settlement_method="INDA", clearing_system=""
    )
    return Message("pacs.008.001.08", xml.decode())


@dataclass(frozen=True)
class Event:
    end_to_end_id: str
    event: str  # accepted, settled, rejected, failing
    code: str = ""
    text: str = ""
    on: date | None = None
    amount: Decimal | None = None  # what the booking / confirmation says moved
    side: str = ""  # CRDT / DBIT on the house's account


_STATUS_EVENTS = {
    "ACSC": "settled",
    "ACCC": "settled",
    "RJCT": "rejected",
    "ACCP": "accepted",
    "ACSP": "accepted",
    "ACTC": "accepted",
    "PDNG": "accepted",
    "RCVD": "accepted",
}


def report_events(*, kind: str, content: str) -> list[Event]:
    """What a report says about our attempts (entries that are not about one are skipped)."""
    data = content.encode()
    if kind in ("pain.002", "pacs.002"):
        return [
            Event(s.end_to_end_id, _STATUS_EVENTS[s.status], s.reason_code, s.reason_text)
            for s in iso20022.parse_status_report(data)
            if s.status in _STATUS_EVENTS and s.end_to_end_id
        ]
    if kind == "camt.054":
        ours = house_accounts()
        return [
            # the payment's own amount: the bank's charges the entry includes are passed on separately
            Event(b.end_to_end_id, "settled", on=b.value_date, amount=abs(b.principal), side=b.credit_debit)
            for b in iso20022.parse_camt054(data)
            if b.account in ours and b.end_to_end_id and b.status == "BOOK"
        ]
    if kind == "sese.025":
        confirmation = sese.parse_sese025(data)
        return [Event(confirmation.reference, "settled", on=confirmation.settlement_date, amount=confirmation.quantity)]
    if kind == "custody.fail":
        advice = json_loads(content)
        return [
            Event(
                advice["reference"],
                "failing",
                advice.get("reason", "LACK"),
                advice.get("text", ""),
                date.fromisoformat(advice["since"]) if advice.get("since") else None,
            )
        ]
    if kind == "custody.reject":
        advice = json_loads(content)
        return [Event(advice["reference"], "rejected", advice.get("reason", ""), advice.get("text", ""))]
    return []
