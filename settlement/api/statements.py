"""Statement downloads shared by the API and the admin: parse the period, render the format."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.http import HttpResponse

from common.exceptions import ValidationFailed
from reference.models import Participant
from settlement.statements import statement_csv, statement_json, statement_pdf, statement_read

FORMATS = ("csv", "pdf", "json")


def statement_period(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """``from`` and ``to`` (inclusive) as YYYY-MM-DD; the period runs from the start of ``from``
    to the end of ``to`` (UTC)."""
    errors = {}
    days = {}
    for name, value in (("from", start), ("to", end)):
        try:
            days[name] = date.fromisoformat(value or "")
        except ValueError:
            errors[name] = [f"{value!r} is not a date (YYYY-MM-DD)."]
    if not errors and days["to"] < days["from"]:
        errors["to"] = ["Must not be before 'from'."]
    if errors:
        raise ValidationFailed("invalid statement period", detail=errors)
    if days["to"] == date.max:
        raise ValidationFailed("invalid statement period", detail={"to": ["Must be before 9999-12-31."]})
    begin = datetime.combine(days["from"], time(), UTC)
    return begin, datetime.combine(days["to"] + timedelta(days=1), time(), UTC)


def statement_response(*, participant: Participant, start: str | None, end: str | None, fmt: str) -> HttpResponse:
    if fmt not in FORMATS:
        raise ValidationFailed("invalid format", detail={"output": [f"One of {', '.join(FORMATS)}."]})
    begin, finish = statement_period(start, end)
    statement = statement_read(participant=participant, start=begin, end=finish)
    name = f"statement-{participant.code}-{start}-{end}"
    if fmt == "pdf":
        response = HttpResponse(statement_pdf(statement), content_type="application/pdf")
    elif fmt == "csv":
        response = HttpResponse(statement_csv(statement), content_type="text/csv")
    else:
        return HttpResponse(statement_json(statement), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response
