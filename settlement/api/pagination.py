"""Limit/offset pagination that refuses what it cannot honour: ``limit`` and ``offset`` are
whole numbers in range (``limit`` 1..``CLEARHOUSE_API_MAX_LIMIT``, ``offset`` 0..``MAX_OFFSET``),
given at most once; anything else is a 400 (DRF's default silently fell back to the default page
for garbage and passed a 20-digit limit to the database: ``bigint out of range``, a 500). An empty
value is the same as leaving the parameter out."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

# Far beyond any table here and far below PostgreSQL's bigint.
MAX_OFFSET = 1_000_000_000


def bounded_int(request: Request, name: str, *, low: int, high: int) -> int | None:
    """The query parameter ``name`` as an int in [low, high]; ``None`` when absent or empty."""
    values = request.query_params.getlist(name)
    if not values or values == [""]:
        return None
    if len(values) > 1:
        raise ValidationError({name: ["Give this parameter at most once."]})
    raw = values[0]
    if not re.fullmatch(r"-?[0-9]+", raw):
        raise ValidationError({name: ["A whole number is required."]})
    if len(raw) > 12 or not low <= int(raw) <= high:
        raise ValidationError({name: [f"Must be between {low} and {high}."]})
    return int(raw)


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    def get_limit(self, request: Request) -> int | None:
        limit = bounded_int(request, self.limit_query_param, low=1, high=self.get_max_limit())
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Request) -> int:
        offset = bounded_int(request, self.offset_query_param, low=0, high=MAX_OFFSET)
        return 0 if offset is None else offset

    def get_max_limit(self) -> int:
        return settings.CLEARHOUSE_API_MAX_LIMIT

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"].update(minimum=1, maximum=self.get_max_limit())
        offset["schema"].update(minimum=0, maximum=MAX_OFFSET)
        return [limit, offset]
