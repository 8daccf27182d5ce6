"""The REST API (DRF, the OpenAPI schema), its request limits, its rate limit and the cache it
counts in."""

from __future__ import annotations

import os

from .celery import CELERY_BROKER_URL
from .database import DATABASES

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "settlement.api.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "settlement.api.auth.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["settlement.api.auth.TokenRateThrottle"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # JSON only (numbers parsed as Decimal; nested deeper than CLEARHOUSE_JSON_MAX_DEPTH is a 400,
    # not a RecursionError): what the schema documents is what the views accept
    "DEFAULT_PARSER_CLASSES": ["settlement.api.parsers.DecimalJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "settlement.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "settlement.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "settlement.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "LIST_SERIALIZER_ERRORS_AS_DICT": True,
}
# The largest page a list answers (`?limit=`); more is a 400, not a silent cut.
CLEARHOUSE_API_MAX_LIMIT = int(os.environ.get("CLEARHOUSE_API_MAX_LIMIT", "1000"))
# A batch of 10,000 trades is several MB of JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
# JSON from outside (API bodies, imported chain lists) nests at most this deep.
CLEARHOUSE_JSON_MAX_DEPTH = int(os.environ.get("CLEARHOUSE_JSON_MAX_DEPTH", "32"))
# Files uploaded in the admin (reconciliation imports) are refused above this size.
CLEARHOUSE_IMPORT_MAX_BYTES = int(os.environ.get("CLEARHOUSE_IMPORT_MAX_BYTES", str(20 * 1024 * 1024)))

SPECTACULAR_SETTINGS = {
    "TITLE": "Clearhouse API",
    "DESCRIPTION": "Trade ingest, settlement instructions, net payments, balances, fees and statements for "
    "upstream systems. Amounts are decimal strings at the asset's precision.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI assets are served locally: the machines have no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "InstructionStatusEnum": "common.choices.InstructionStatus",
        "FeeChargeStatusEnum": "settlement.models.fees.FeeChargeStatus",
        "NetPaymentStatusEnum": "netting.models.NettedStatus",
        "WindowStatusEnum": "netting.models.WindowStatus",
        "RailAttemptStatusEnum": "netting.models.AttemptStatus",
    },
}

# --- API rate limit and the cache it counts in -------------------------------------------------
CLEARHOUSE_API_RATE = os.environ.get("CLEARHOUSE_API_RATE", "1200/min")
# Shared by every web process when Redis is there (the broker's server, its own database number);
# the embedded demo counts per process.
_CACHE_URL = os.environ.get("CLEARHOUSE_CACHE_URL", "")
if not _CACHE_URL and CELERY_BROKER_URL.startswith("redis://"):
    _CACHE_URL = CELERY_BROKER_URL.rsplit("/", 1)[0] + "/13"
CACHES = {
    # keys carry the database's name: two deployments (or test runs) sharing a Redis never mix counts
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _CACHE_URL,
        "KEY_PREFIX": str(DATABASES["default"]["NAME"]).rsplit("/", 1)[-1],
    }
    if _CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
