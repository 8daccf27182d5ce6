"""``GET /api/v1/statements/``: the query parameters and whose statement it is."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from reference.models import Participant
from settlement import selectors
from settlement.api.errors import error_response

PARAMETERS = ("from", "to", "output", "participant")


def statement_params(request: Request) -> dict[str, Any] | Response:
    """The non-empty query parameters, or the 400 when one is given more than once."""
    repeated = [name for name in PARAMETERS if len(request.query_params.getlist(name)) > 1]
    if repeated:
        return error_response(
            code="invalid",
            message="Give each parameter at most once.",
            http_status=400,
            detail={name: ["Give this parameter at most once."] for name in repeated},
        )
    return {key: value for key, value in request.query_params.items() if value != ""}


def statement_participant(request: Request, params: dict[str, Any]) -> Participant | Response:
    """A participant's own statement; staff name the participant (``participant=CODE``)."""
    participant = selectors.participant_for_user(request.user)
    if participant is not None:
        return participant
    if not selectors.sees_everything(request.user):
        return error_response(code="permission_denied", message="No statement for this user.", http_status=403)
    code = params.get("participant", "")
    # PostgreSQL text cannot hold NUL: such a code names no participant (was a 500)
    participant = Participant.objects.filter(code=code).first() if "\x00" not in code else None
    if participant is None:
        return error_response(
            code="invalid",
            message="Name the participant.",
            http_status=400,
            detail={"participant": ["Unknown or missing participant code."]},
        )
    return participant
