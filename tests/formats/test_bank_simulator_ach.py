"""The bank simulator takes NACHA files whose batch carries no effective entry date.

Plain pytest: no database, no Django.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from rails.formats import nacha
from rails.simulators.bank import BankSimulator

DAY = date(2026, 11, 24)


def ach_file(effective: str | None) -> bytes:
    """A one-entry ACH credit file effective on DAY, or with its batch's effective date field
    (positions 70-75 of the type-5 record) overwritten with ``effective``."""
    text = nacha.build_ach_file(
        file_id_modifier="A",
        created_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        origin_routing="021000021",
        origin_name="CLEARHOUSE BANK",
        company_id="1234567890",
        company_name="CLEARHOUSE",
        effective_date=DAY,
        entries=[nacha.AchEntry("SETTLE-0001", Decimal("12.34"), False, "021000021", "123456789", "ACME CORP")],
    )
    if effective is not None:
        lines = text.split("\n")
        i = next(n for n, line in enumerate(lines) if line.startswith("5"))
        lines[i] = lines[i][:69] + effective + lines[i][75:]
        text = "\n".join(lines)
    return text.encode("ascii")


def test_a_blank_effective_date_settles_like_one_requested_today():
    dated = BankSimulator(today=DAY)
    dated.submit(message_id="ACH-DATED", body=ach_file(None), content_type="text/plain")
    for blank in ("000000", "      "):
        body = ach_file(blank)
        assert nacha.read_ach_file(body.decode("ascii")).batches[0].effective_date is None
        bank = BankSimulator(today=DAY)
        bank.submit(message_id="ACH-BLANK", body=body, content_type="text/plain")
        (payment,) = bank.payments
        assert payment.amount == Decimal("12.34") and payment.status == dated.payments[0].status
        assert payment.value_date == dated.payments[0].value_date > DAY
