"""Settings of the settlement domain: ledger locks, batches, trade timestamps, netting windows,
webhooks, operations alerts and fees (the rails and chains are in rails.py)."""

from __future__ import annotations

import os
from datetime import timedelta

from .base import CLEARHOUSE_PRODUCTION, env_bool, env_list

# --- Domain settings ------------------------------------------------------------------------
# Default lifetime of a ledger lock (pending transfer) before the sweeper voids it.
CLEARHOUSE_LOCK_TTL = timedelta(seconds=int(os.environ.get("CLEARHOUSE_LOCK_TTL_SECONDS", "3600")))
CLEARHOUSE_MAX_BATCH = int(os.environ.get("CLEARHOUSE_MAX_BATCH", "10000"))
# Trade timestamps: how far in the future (clock skew) and how far back a trade may be reported.
CLEARHOUSE_MAX_CLOCK_SKEW_SECONDS = int(os.environ.get("CLEARHOUSE_MAX_CLOCK_SKEW_SECONDS", "300"))
CLEARHOUSE_MAX_TRADE_AGE_DAYS = int(os.environ.get("CLEARHOUSE_MAX_TRADE_AGE_DAYS", "30"))
# Netting window length in minutes per asset class (fiat, security, crypto for T+n crypto).
CLEARHOUSE_NETTING_WINDOW_MINUTES = {
    "default": float(os.environ.get("CLEARHOUSE_NETTING_WINDOW_MINUTES", "15")),
    "fiat": float(
        os.environ.get(
            "CLEARHOUSE_NETTING_WINDOW_MINUTES_FIAT", os.environ.get("CLEARHOUSE_NETTING_WINDOW_MINUTES", "15")
        )
    ),
    "security": float(
        os.environ.get(
            "CLEARHOUSE_NETTING_WINDOW_MINUTES_SECURITY", os.environ.get("CLEARHOUSE_NETTING_WINDOW_MINUTES", "15")
        )
    ),
}

# --- Webhooks ----------------------------------------------------------------------------------
# Request timeout (the retry schedule and bound are with the recovery settings in celery.py).
CLEARHOUSE_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("CLEARHOUSE_WEBHOOK_TIMEOUT_SECONDS", "5"))
# Webhook targets (settlement/webhook_targets.py): https only in production; never loopback,
# private, link-local or other non-public addresses, except the hosts and networks (CIDR) listed
# here (tests, the demo).
CLEARHOUSE_WEBHOOK_REQUIRE_HTTPS = env_bool("CLEARHOUSE_WEBHOOK_REQUIRE_HTTPS", CLEARHOUSE_PRODUCTION)
CLEARHOUSE_WEBHOOK_ALLOWED_HOSTS = env_list("CLEARHOUSE_WEBHOOK_ALLOWED_HOSTS", "")
# Test hook for the crash test only: a worker exits hard right after this pipeline step.
CLEARHOUSE_CRASH_AFTER = os.environ.get("CLEARHOUSE_CRASH_AFTER", "")

# --- Operations alerts -------------------------------------------------------------------------
# Email through Django's backend: the console in the demo and by default, SMTP when configured.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "clearhouse@localhost")
CLEARHOUSE_ADMIN_BASE_URL = os.environ.get("CLEARHOUSE_ADMIN_BASE_URL", "http://127.0.0.1:8000")

# --- Fees ----------------------------------------------------------------------------------------
# Rounding of a computed fee to the asset's precision (a decimal module rounding mode).
CLEARHOUSE_FEE_ROUNDING = os.environ.get("CLEARHOUSE_FEE_ROUNDING", "ROUND_HALF_UP")
