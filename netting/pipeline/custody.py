"""Stage 6, custody fails and buy-ins: the report of every custody delivery failing now, with its
age in business days, and the buy-in cases of the ones failing for the configured days."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.conf import settings
from django.utils import timezone

from calendars import business_days_between
from common.choices import CaseKind
from common.money import format_amount
from netting.models import Direction, NettedInstruction, RailMethod
from netting.pipeline.base import N


def custody_fails(*, today: date | None = None) -> list[dict[str, Any]]:
    """The fail report: every custody delivery failing now, with its age in business days."""
    today = today or timezone.localdate()
    rows = []
    for ni in (
        NettedInstruction.objects.filter(method=RailMethod.CUSTODY, failing_since__isnull=False, status=N.SUBMITTED)
        .select_related("participant", "asset")
        .order_by("failing_since", "pk")
    ):
        failing_since = ni.failing_since
        if failing_since is None:  # pragma: no cover - filtered on it
            continue
        age = business_days_between(calendar=ni.asset.calendar, start=failing_since, end=today)
        rows.append(
            {
                "instruction": ni.pk,
                "participant": ni.participant.code,
                # a pay-in is the participant's delivery to the house; a pay-out the house's to it
                "deliverer": ni.participant.code if ni.direction == Direction.PAY_IN else "the house",
                "asset": ni.asset.code,
                "quantity": format_amount(ni.amount, ni.asset.precision),
                "failing_since": failing_since.isoformat(),
                "business_days": age,
                "buy_in_due": age >= settings.CLEARHOUSE_BUY_IN_AFTER_DAYS,
                "reason": ni.failure_reason,
            }
        )
    return rows


def custody_buy_in_check(*, today: date | None = None) -> int:
    """Beat: open a buy-in case for each delivery failing for the configured business days.
    Returns how many cases were opened now (not the ones already open)."""
    from common.ports import case_exists, case_open

    opened = 0
    for row in custody_fails(today=today):
        key = f"buy-in:{row['instruction']}"
        if not row["buy_in_due"] or case_exists(dedupe_key=key):
            continue
        receiver = row["participant"] if row["deliverer"] == "the house" else "the house"
        case_open(
            kind=CaseKind.ESCALATION,
            reason=(
                f"buy-in due: {row['deliverer']} has failed to deliver {row['quantity']} {row['asset']} to {receiver} "
                f"since {row['failing_since']} ({row['business_days']} business days; netted instruction "
                f"N{row['instruction']})"
            ),
            dedupe_key=key,
        )
        opened += 1
    return opened
