"""JSON from outside (API bodies, imported files, admin form fields), parsed with a bound on
nesting: a document nested deeper than ``CLEARHOUSE_JSON_MAX_DEPTH`` is refused as malformed
before it is parsed. ``json.loads`` recurses once per level: deep enough it raises
``RecursionError`` (a 500), and in this process, where py_ecc raises the recursion limit to
100,000, it overflows the C stack and kills the worker."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)  # a JSON string literal (brackets in it do not nest)
_BRACKET = re.compile(r"[\[\]{}]")


class JSONTooDeep(ValueError):
    """The document nests objects and arrays deeper than allowed."""


def json_depth_check(text: str, *, limit: int) -> None:
    """Raise ``JSONTooDeep`` if the JSON text opens more than ``limit`` nested containers."""
    depth = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > limit:
                raise JSONTooDeep(f"nested deeper than {limit} levels")
        else:
            depth -= 1


def json_loads(content: str | bytes, *, parse_float: Callable[[str], Any] | None = None) -> Any:
    """``json.loads`` with the nesting bound; every bad document raises ``ValueError``."""
    text = content.decode(json.detect_encoding(content)) if isinstance(content, bytes) else content
    json_depth_check(text, limit=settings.CLEARHOUSE_JSON_MAX_DEPTH)
    return json.loads(text, parse_float=parse_float)
