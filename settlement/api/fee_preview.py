"""``POST /api/v1/fees/preview/``: who may ask, and the response body of a preview."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from common.money import format_amount
from reference.models import Participant
from settlement import selectors
from settlement.api.errors import error_response
from settlement.fee_preview import FeePreview


def fee_preview_viewer(request: Request) -> Participant | Response | None:
    """None for staff (every party's quote), the caller's participant, or the 403 of anyone else."""
    if selectors.sees_everything(request.user):
        return None
    viewer = selectors.participant_for_user(request.user)
    if viewer is None:
        return error_response(code="permission_denied", message="This user may not preview fees.", http_status=403)
    return viewer


def not_a_party_refusal(viewer: Participant | None, data: dict[str, Any]) -> Response | None:
    """A participant may preview only a trade it is a party to."""
    if viewer is not None and viewer.pk not in (data["buyer"].pk, data["seller"].pk):
        return error_response(
            code="not_a_party",
            message="A participant may preview the fees only of a trade it is a party to.",
            http_status=403,
        )
    return None


def fee_preview_payload(preview: FeePreview) -> dict[str, Any]:
    precision = preview.instrument.quote.precision
    return {
        "symbol": preview.instrument.symbol,
        "currency": preview.instrument.quote.code,
        "notional": format_amount(preview.notional, precision),
        "settlement_type": preview.settlement_type,
        # a netted trade is charged on its participants' net payments of the window: the
        # quote is what this trade would cost if it were the whole net payment
        "indicative": preview.indicative,
        "fees": [
            {
                "party": q.party,
                "participant": q.participant.code,
                "rule": q.rule.name if q.rule else None,
                "bps": str(q.bps),
                "limited": q.limited,
                "flat": format_amount(q.flat, precision),
                "fee": format_amount(q.fee, precision),
            }
            for q in preview.quotes
        ],
        "total": format_amount(sum((q.fee for q in preview.quotes), Decimal(0)), precision),
    }
