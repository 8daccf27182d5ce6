from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from common.jsonload import json_loads


class BoundedJSONParser(JSONParser):
    """The API's JSON parser (every view): a malformed or too deeply nested body is a 400
    ``malformed_json``, never a server error."""

    parse_float: Any = None

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json_loads(stream.read().decode(encoding), parse_float=self.parse_float)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc


class DecimalJSONParser(BoundedJSONParser):
    """JSON numbers become ``Decimal`` (never float), so ``"quantity": 0.1`` stays exactly 0.1."""

    parse_float = Decimal
