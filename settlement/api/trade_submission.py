"""``POST /api/v1/trades/``: the steps of a submission, each a small function the view calls in
turn - read the body into items, check the batch size and who submits, validate the rows, shape
the answer. Each step returns what the next needs, or the error ``Response`` that ends the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import ListSerializer

from settlement import selectors
from settlement.api.errors import error_response
from settlement.api.serializers import TradeInputSerializer
from settlement.api.trade_rows import trade_rows_validate
from settlement.models.tokens import ApiToken
from settlement.services.trades import IngestResult, TradeInput


@dataclass(frozen=True)
class Submission:
    items: list[Any]
    single: bool  # one trade object, answered with the trade itself rather than a batch summary


def submission_read(body: Any) -> Submission | Response:
    """One trade (a JSON object), ``{"trades": [...]}`` or a JSON list; at most
    ``CLEARHOUSE_MAX_BATCH`` items."""
    single = isinstance(body, dict) and "trades" not in body
    if single:
        items = [body]
    elif isinstance(body, dict):
        items = body["trades"]
    else:
        items = body
    if not isinstance(items, list) or not items:
        return error_response(
            code="invalid",
            message="Send a trade object or a non-empty list of trades.",
            http_status=status.HTTP_400_BAD_REQUEST,
        )
    if len(items) > settings.CLEARHOUSE_MAX_BATCH:
        return error_response(
            code="batch_too_large",
            message=f"A batch holds at most {settings.CLEARHOUSE_MAX_BATCH} trades, got {len(items)}.",
            http_status=status.HTTP_400_BAD_REQUEST,
        )
    return Submission(items, single)


def trade_reporter_refusal(request: Request) -> Response | None:
    """Who may report trades: only a staff service user (the matching engine) with its API token.
    A participant's token is refused (a trade it reports would bind its counterparty unaffirmed),
    as is a browser session (people do not report trades) and any other user."""
    if selectors.participant_for_user(request.user) is not None:
        return error_response(
            code="participant_cannot_report_trades",
            message="Trades are reported by the matching engine; a participant's token may not submit them.",
            http_status=status.HTTP_403_FORBIDDEN,
        )
    if not selectors.sees_everything(request.user):
        return error_response(
            code="permission_denied", message="This user may not submit trades.", http_status=status.HTTP_403_FORBIDDEN
        )
    if not isinstance(request.auth, ApiToken):
        return error_response(
            code="service_token_required",
            message="Trades are submitted with the matching engine's API token, not a browser session.",
            http_status=status.HTTP_403_FORBIDDEN,
        )
    return None


def submission_inputs(submission: Submission, *, source: str) -> list[TradeInput] | Response:
    """The validated trade inputs, or the 400 listing every rejected row (nothing is stored then).
    Plain code checks the usual, valid batch; only when some row is not plainly valid does the
    serializer give every row's verdict."""
    participants, instruments = selectors.ingest_lookups()
    context: dict[str, Any] = {"participants": participants, "instruments": instruments, "source": source}
    inputs = trade_rows_validate(submission.items, **context, now=timezone.now())
    if inputs is not None:
        return inputs
    return _serializer_inputs(submission.items, context=context, single=submission.single)


def _item_errors(items: list[Any], errors: dict[int, Any]) -> list[dict[str, Any]]:
    """Per-item errors of a batch, in input order: index, the item's external_id, field errors."""
    rejected = []
    for index in sorted(errors):
        item = items[index]
        external_id = item.get("external_id") if isinstance(item, dict) else None
        rejected.append({"index": index, "external_id": external_id, "errors": errors[index]})
    return rejected


def _serializer_inputs(items: list[Any], *, context: dict[str, Any], single: bool) -> list[Any] | Response:
    """The batch through ``TradeInputSerializer``: its inputs, or the 400 listing every bad row."""
    serializer = TradeInputSerializer(data=items, many=True, context=context)
    if not serializer.is_valid():
        rejected = _item_errors(items, serializer.errors)
        if single:
            return error_response(
                code="invalid",
                message="The trade is invalid; nothing was stored.",
                http_status=status.HTTP_400_BAD_REQUEST,
                detail=rejected[0]["errors"],
            )
        return error_response(
            code="invalid",
            message=f"{len(rejected)} of {len(items)} trades are invalid; nothing was stored.",
            http_status=status.HTTP_400_BAD_REQUEST,
            detail=rejected,
        )
    # ``many=True`` made a ListSerializer of TradeInputSerializer (the stubs do not know)
    child = cast(TradeInputSerializer, cast(ListSerializer, serializer).child)
    return [child.to_trade_input(attrs) for attrs in serializer.validated_data]


def ingest_status(result: IngestResult) -> int:
    """201 when at least one trade was stored, 200 for a pure replay."""
    return status.HTTP_201_CREATED if any(result.created) else status.HTTP_200_OK


def batch_payload(submission: Submission, result: IngestResult) -> dict[str, Any]:
    """The answer to a batch: counts and one line per item, in input order."""
    return {
        "received": len(submission.items),
        "created": result.created_count,
        "existing": sum(1 for c in result.created if not c),
        "results": [
            {
                "index": index,
                "id": trade.pk,
                "source": trade.source,
                "external_id": trade.external_id,
                "settlement_date": trade.settlement_date,
                "result": "created" if created else "existing",
            }
            for index, (trade, created) in enumerate(zip(result.trades, result.created, strict=True))
        ],
    }
