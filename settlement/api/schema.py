"""The OpenAPI schema says what the API really does: every operation lists the error statuses it
can answer (in the one error shape of ``settlement.api.errors``), and optional query parameters
say that an empty value is accepted (it means "not given")."""

from __future__ import annotations

import functools
from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable error code, e.g. invalid, not_found, conflict, throttled.")
    message = serializers.CharField()
    detail = serializers.JSONField(required=False, help_text="Field errors, or per-item errors of a batch.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


NO_NUL = "^[^\\u0000]*$"

INGEST_RESULTS = ["created", "existing"]


class TradeBatchItemResultSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.IntegerField()
    source = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.source
    external_id = serializers.CharField()
    settlement_date = serializers.DateField()
    result = serializers.ChoiceField(choices=INGEST_RESULTS)


class TradeBatchResultSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    existing = serializers.IntegerField()
    results = TradeBatchItemResultSerializer(many=True)


def ingest_response(description: str) -> Any:
    """The body of a 200/201 from POST /trades/: one trade, or a batch's summary."""
    from drf_spectacular.utils import OpenApiResponse

    return OpenApiResponse(_ingest_result(), description=description)


@functools.cache
def _ingest_result() -> Any:
    from drf_spectacular.utils import PolymorphicProxySerializer

    from settlement.api.serializers import TradeSerializer

    class TradeIngestedSerializer(TradeSerializer):
        result = serializers.ChoiceField(choices=INGEST_RESULTS)

        class Meta(TradeSerializer.Meta):
            ref_name = "TradeIngested"
            fields = [*TradeSerializer.Meta.fields, "result"]

    return PolymorphicProxySerializer(
        component_name="TradeIngestResult",
        serializers=[TradeIngestedSerializer, TradeBatchResultSerializer],
        resource_type_field_name=None,
    )


ERRORS = {
    400: "The request is invalid (a parameter or the body); nothing was changed.",
    401: "No valid API token (or session) was given.",
    403: "The token lacks the scope, or the caller may not do this.",
    404: "No such object among those the caller may see.",
    409: "Conflicts with what is stored (e.g. a trade id reused with different content).",
    415: "The body is not JSON (application/json is the only media type accepted).",
    429: "Too many requests for this token; retry after the Retry-After header's seconds.",
}


class ApiAutoSchema(AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        parameters = operation.get("parameters", [])
        for parameter in parameters:
            if parameter["in"] == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
            schema = parameter.get("schema", {})
            if schema.get("type") == "string" and not {"format", "enum", "pattern"} & set(schema):
                schema["pattern"] = NO_NUL  # Django's form fields refuse NUL characters (400)
        has_body = "requestBody" in operation
        codes = [401, 403, 429]
        if has_body or any(p["in"] == "query" for p in parameters):
            codes.append(400)
        if any(p["in"] == "path" for p in parameters):
            codes.append(404)
        if has_body:
            codes.append(415)
        responses = operation["responses"]
        for code in sorted(codes):
            self._error_response(responses, code)
        for code in list(responses):
            if code.isdigit() and int(code) in ERRORS and "content" not in responses[code]:
                self._error_response(responses, int(code), replace=True)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _error_response(self, responses: dict[str, Any], code: int, *, replace: bool = False) -> None:
        if str(code) in responses and not replace:
            return
        described = responses.get(str(code), {}).get("description") or ERRORS[code]
        response = self._get_response_for_code(ErrorSerializer, str(code))
        response["description"] = described
        responses[str(code)] = response
