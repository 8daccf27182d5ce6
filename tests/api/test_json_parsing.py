"""The API answers 400 ``malformed_json`` to a body nested too deeply, on every endpoint (the
trade ingest's Decimal parser and the default parser alike), instead of a RecursionError (500)."""

from __future__ import annotations

import pytest

from common.jsonload import JSONTooDeep, json_loads

pytestmark = pytest.mark.django_db


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("url", ["/api/v1/trades/", "/api/v1/fees/preview/"])
@pytest.mark.parametrize("levels", [100, 100_000])
def test_api_answers_400_to_deeply_nested_json(staff_client, url, levels):
    # given a body nested far deeper than any request needs (and deeper than the recursion limit)
    body = '{"trades": ' + nested(levels) + "}"
    # when it is posted
    response = staff_client.post(url, body, content_type="application/json")
    # then it is refused as malformed JSON
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert "nested deeper than" in response.json()["error"]["message"]


def test_json_loads_bounds_the_depth(settings):
    # given a limit of 3 levels
    settings.CLEARHOUSE_JSON_MAX_DEPTH = 3
    # when / then 3 levels parse, 4 do not
    assert json_loads('{"a": [{"b": 1}]}') == {"a": [{"b": 1}]}
    with pytest.raises(JSONTooDeep):
        json_loads('{"a": [{"b": [1]}], "c": "]]]]"}')
    assert json_loads('{"a": "[[[[[[", "b": "\\"[[[["}') == {"a": "[[[[[[", "b": '"[[[['}  # brackets in strings
