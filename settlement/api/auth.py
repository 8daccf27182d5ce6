"""API authentication by scoped token, the scope check, and rate limiting."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from settlement.models.tokens import ApiToken, Scope
from settlement.services.tokens import KEY_PREFIX, auth_failure_record, token_check


def client_ip(request: Any) -> str | None:
    return request.META.get("REMOTE_ADDR")


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer chk_<prefix>_<secret>``; every failure is recorded."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0] not in (self.keyword, "Token"):
            return None
        if len(header) != 2:
            self._fail(request, "", "malformed Authorization header")
        key = header[1]
        parts = key.split("_", 2)
        prefix = parts[1] if len(parts) == 3 and parts[0] == KEY_PREFIX else key[:8]
        token, why = token_check(key)
        if token is None:
            self._fail(request, prefix, why)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword

    def _fail(self, request: Request, who: str, why: str) -> NoReturn:
        auth_failure_record(channel="api", who=who, reason=why, ip=client_ip(request), path=request.path)
        raise exceptions.AuthenticationFailed(f"Invalid API token: {why}.")


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents the token scheme in the OpenAPI schema (a bearer token, shown once when issued)."""

    target_class = "settlement.api.auth.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "chk_<prefix>_<secret>",
            "description": "An API token issued in the admin, with the scopes 'read' and/or 'trades:write'.",
        }


class HasScope(permissions.BasePermission):
    """Reads need the ``read`` scope, writes ``trades:write``; a logged-in staff session (the
    browsable API, ops) is not a token and is checked by the view as before."""

    message = "This API token lacks the scope for this request."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiToken):
            return True
        needed = getattr(view, "required_scope", None) or (
            Scope.READ if request.method in permissions.SAFE_METHODS else Scope.TRADES_WRITE
        )
        if needed in request.auth.scopes:
            return True
        self.message = f"This API token lacks the scope {str(needed)!r}."
        return False


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """Requests per token (or per user for sessions), ``CLEARHOUSE_API_RATE`` (e.g. 600/min)."""

    scope = "api"

    def get_rate(self) -> str:
        return settings.CLEARHOUSE_API_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiToken):
            ident = f"token:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
