"""One error shape for the whole API:

    {"error": {"code": "<stable code>", "message": "<human text>", "detail": <optional>}}

Validation errors carry field errors in ``detail`` (for a batch: a list of
``{"index", "external_id", "errors": {field: [messages]}}`` for the rejected items only).
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.exceptions import DomainError


def error_response(*, code: str, message: str, http_status: int, detail: Any = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return Response({"error": body}, status=http_status)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return error_response(code=exc.code, message=exc.message, http_status=exc.http_status, detail=exc.detail)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()  # its stable code: not_found (a Django Http404 has none)
    if isinstance(exc, exceptions.ParseError):
        return error_response(code="malformed_json", message=str(exc.detail), http_status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        return error_response(
            code="invalid", message="The request is invalid.", http_status=response.status_code, detail=response.data
        )
    code = getattr(exc, "default_code", "error")
    detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
    return error_response(code=str(code), message=str(detail), http_status=response.status_code)


def not_found(request: Any, exception: Exception) -> Any:
    """``handler404``: a path under ``/api/`` that matches no route answers in the API's error shape
    (JSON), as the schema documents; elsewhere Django's page."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "not_found", "message": "Not found."}}, status=404)
    return page_not_found(request, exception)
