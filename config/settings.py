"""Clearhouse settings.

Everything comes from environment variables. DATABASE_URL (PostgreSQL) is required; without
CELERY_BROKER_URL Celery tasks run in-process (the demo), set it to use Redis. `make demo` needs no
servers: it points DATABASE_URL at an embedded PostgreSQL when none answers on 127.0.0.1:5432.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CLEARHOUSE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# Production unless told otherwise: with DEBUG off the deployment settings below hold (HTTPS only,
# HSTS, secure cookies, a strong SECRET_KEY, a second factor for staff). The demo runs with DEBUG
# on; the test settings (config/settings_test.py) and the benchmarks set CLEARHOUSE_PRODUCTION=0.
CLEARHOUSE_PRODUCTION = env_bool("CLEARHOUSE_PRODUCTION", not DEBUG)
if CLEARHOUSE_PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production (CLEARHOUSE_PRODUCTION=1)")
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if CLEARHOUSE_PRODUCTION:
    # the strength Django's deployment check asks for (security.W009)
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-"):
        raise ImproperlyConfigured(
            "SECRET_KEY must be a random string of at least 50 characters in production "
            "(python -c 'from django.core.management.utils import get_random_secret_key as k; print(k())')"
        )
elif not SECRET_KEY:
    SECRET_KEY = "insecure-demo-key-do-not-use-in-production"  # noqa: S105
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# --- Transport security (production: HTTPS only) ---------------------------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", CLEARHOUSE_PRODUCTION)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000" if CLEARHOUSE_PRODUCTION else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", CLEARHOUSE_PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", CLEARHOUSE_PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", CLEARHOUSE_PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", CLEARHOUSE_PRODUCTION)
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating proxy: the header it sets, e.g. SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO
# (only when the proxy always sets or overwrites it).
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = (os.environ["SECURE_PROXY_SSL_HEADER"], "https")

INSTALLED_APPS = [
    "config.apps.ClearhouseAdminConfig",  # django.contrib.admin with the second-factor site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "reference",
    "ledger",
    "settlement",
    "netting",
    "reconciliation",
    "rails",
    "ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

# --- Logins -----------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before the password check
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Failed admin logins: after AXES_FAILURE_LIMIT failures of one username from one address the
# pair is locked out for AXES_COOLOFF_MINUTES (answer 429); a success resets the count.
# `manage.py axes_reset_username <name>` lifts a lockout early.
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("AXES_COOLOFF_MINUTES", "30")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Staff need a verified second factor (TOTP or static backup codes, django-otp) to use the admin.
CLEARHOUSE_ADMIN_OTP_REQUIRED = env_bool("CLEARHOUSE_ADMIN_OTP_REQUIRED", CLEARHOUSE_PRODUCTION)
OTP_TOTP_ISSUER = "Clearhouse"

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The app connects as a least-privilege role (DATABASE_URL; see settlement/dbroles.py); migrate and
# db_app_role connect as the schema owner, MIGRATE_DATABASE_URL, when it is set.
OWNER_COMMANDS = {"migrate", "db_app_role"}
CLEARHOUSE_DB_APP_ROLE = os.environ.get("CLEARHOUSE_DB_APP_ROLE", "clearhouse_app")
_COMMAND = sys.argv[1] if len(sys.argv) > 1 and Path(sys.argv[0]).name in {"manage.py", "django-admin"} else ""
if _COMMAND in OWNER_COMMANDS and os.environ.get("MIGRATE_DATABASE_URL"):
    DATABASE_URL = os.environ["MIGRATE_DATABASE_URL"]
else:
    DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    # PostgreSQL only (exact 18-decimal amounts, the ledger's triggers, row locks): no file fallback.
    # `make demo` (scripts/demo.sh) sets DATABASE_URL itself, to an embedded PostgreSQL when needed.
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Clearhouse runs on PostgreSQL only: set DATABASE_URL="
        "postgres://USER@HOST:5432/DBNAME, or run `make demo`, which starts an embedded PostgreSQL "
        "under var/ when no server answers on 127.0.0.1:5432."
    )
if not DATABASE_URL.startswith(("postgres://", "postgresql://", "pgsql://")):
    raise ImproperlyConfigured(
        f"DATABASE_URL must be a postgres:// URL (Clearhouse runs on PostgreSQL only), not {DATABASE_URL.split(':')[0]}"
    )
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Recovery (crashed worker, restarted broker, lost task, dead database connection) ----------
# Every pipeline is back at work within ~30 s of a fault clearing, by two independent paths:
# the broker redelivers what a dead worker held, and beat's sweepers re-dispatch, from the
# database, whatever sat in a non-final state too long. Tasks are idempotent, so both at once
# are harmless. Budget: SWEEP_EVERY + STUCK_AFTER and VISIBILITY + RESTORE_EVERY at most 20 s
# each, which leaves 10 s for the work itself (tests/*/test_workers.py measure it).
CLEARHOUSE_SWEEP_EVERY_SECONDS = int(os.environ.get("CLEARHOUSE_SWEEP_EVERY_SECONDS", "5"))
# An instruction, transfer, payment, report or e-mail idle this long in a non-final state is
# re-dispatched by its sweeper.
CLEARHOUSE_STUCK_AFTER_SECONDS = int(os.environ.get("CLEARHOUSE_STUCK_AFTER_SECONDS", "15"))
# The dashboard shows an instruction as stuck (for people to look at) after this long.
CLEARHOUSE_DASHBOARD_STUCK_AFTER_SECONDS = int(os.environ.get("CLEARHOUSE_DASHBOARD_STUCK_AFTER_SECONDS", "120"))
# A task a killed worker had taken (acks_late) goes back to the queue after this many seconds;
# each worker looks for such tasks every RESTORE_EVERY seconds. Countdowns stay below the
# visibility timeout (a longer wait is a time in the database that a sweeper acts on), else
# Redis would hand the same delayed task to several workers.
CELERY_VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "15"))
CELERY_RESTORE_EVERY_SECONDS = int(os.environ.get("CELERY_RESTORE_EVERY_SECONDS", "5"))
CLEARHOUSE_COUNTDOWN_MAX_SECONDS = min(10.0, CELERY_VISIBILITY_TIMEOUT / 2)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": CELERY_RESTORE_EVERY_SECONDS,
    "unacked_restore_throttle": 1,  # scan at every interval (the default scans every 10th)
    # the restore lock a killed worker held frees itself quickly (default 5 minutes)
    "unacked_mutex_expire": CELERY_VISIBILITY_TIMEOUT,
    "socket_timeout": 10,  # a publish on a dead connection fails instead of hanging
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker outlives a broker restart of any length
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}
# Tasks retry a named transient database error (config/celery.py: TRANSIENT_DB_ERRORS) this many
# times with exponential backoff (jitter, capped); then the sweepers own the work.
CLEARHOUSE_TASK_DB_RETRIES = int(os.environ.get("CLEARHOUSE_TASK_DB_RETRIES", "5"))
# A connection the database or a proxy dropped is noticed before use, not in the middle of a task.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A dead SMTP server costs a worker at most this long; the alert e-mail is re-sent by a sweep.
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
CLEARHOUSE_ALERT_EMAIL_MAX_ATTEMPTS = int(os.environ.get("CLEARHOUSE_ALERT_EMAIL_MAX_ATTEMPTS", "20"))
# Webhook retry schedule (seconds after the previous attempt, the last repeats): it spans more
# than an hour, so a receiver down for 15 minutes loses nothing; giving up raises an ops alert.
CLEARHOUSE_WEBHOOK_RETRY_SCHEDULE = [10, 30, 60, 120, 300, 600, 900, 1800]
CLEARHOUSE_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("CLEARHOUSE_WEBHOOK_MAX_ATTEMPTS", "12"))

# --- Celery --------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
# No broker configured: run tasks in-process (demo mode). With a broker, tasks go to workers.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Confirmation checks are short and settle trades: their own queue, so they never wait behind
# big lock/sign/broadcast batches (workers consume both: `celery worker -Q celery,crypto.watch`).
CELERY_TASK_ROUTES = {"settlement.tasks.crypto_check_task": {"queue": "crypto.watch"}}
CELERY_BEAT_SCHEDULER = "config.beat:EditableScheduler"  # settings give defaults; the admin edits
CELERY_BEAT_SCHEDULE = {
    "ledger-void-expired-locks": {
        "task": "settlement.tasks.ledger_void_expired_locks_task",
        "schedule": timedelta(minutes=1),
    },
    "crypto-sweep-stuck": {
        "task": "settlement.tasks.crypto_sweep_task",
        "schedule": timedelta(seconds=CLEARHOUSE_SWEEP_EVERY_SECONDS),
    },
    "webhooks-retry": {
        "task": "settlement.tasks.webhooks_retry_task",
        "schedule": timedelta(seconds=CLEARHOUSE_SWEEP_EVERY_SECONDS),
    },
    "netting-close-windows": {
        "task": "netting.tasks.netting_close_windows_task",
        "schedule": timedelta(minutes=1),
    },
    "netting-payments-sweep": {
        "task": "netting.tasks.netted_sweep_task",
        "schedule": timedelta(seconds=CLEARHOUSE_SWEEP_EVERY_SECONDS),
    },
    "ops-alerts-email-sweep": {
        "task": "settlement.tasks.ops_alerts_email_sweep_task",
        "schedule": timedelta(seconds=CLEARHOUSE_SWEEP_EVERY_SECONDS),
    },
    "rail-reports-fetch": {
        "task": "netting.tasks.rail_reports_fetch_task",
        "schedule": timedelta(seconds=15),
    },
    "custody-buy-in-check": {
        "task": "netting.tasks.custody_buy_in_check_task",
        "schedule": crontab(minute=5),
    },
    "rail-reports-record": {
        "task": "reconciliation.tasks.rail_reports_record_task",
        "schedule": timedelta(minutes=5),
    },
    "chain-lists-fetch": {
        "task": "reconciliation.tasks.chain_lists_fetch_task",
        "schedule": timedelta(minutes=5),
    },
    "reconciliation-hourly": {
        "task": "reconciliation.tasks.reconciliation_run_task",
        "schedule": crontab(minute=0, hour="*/1"),
    },
    "bank-statements-fetch": {
        "task": "reconciliation.tasks.bank_statements_fetch_task",
        "schedule": crontab(hour=1, minute=30),
    },
    "daily-settlement-report": {
        "task": "settlement.tasks.daily_report_task",
        "schedule": crontab(hour=23, minute=55),
    },
    "transition-log-verify": {
        "task": "settlement.tasks.transition_log_verify_task",
        "schedule": crontab(minute=17),
    },
    "transition-log-anchor": {
        "task": "settlement.tasks.transition_log_anchor_task",
        "schedule": timedelta(minutes=1),
    },
    "ledger-verify-balances": {
        "task": "settlement.tasks.ledger_verify_balances_task",
        "schedule": crontab(minute=23),
    },
}

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

# --- Domain settings ------------------------------------------------------------------------
# Default lifetime of a ledger lock (pending transfer) before the sweeper voids it.
CLEARHOUSE_LOCK_TTL = timedelta(seconds=int(os.environ.get("CLEARHOUSE_LOCK_TTL_SECONDS", "3600")))
CLEARHOUSE_MAX_BATCH = int(os.environ.get("CLEARHOUSE_MAX_BATCH", "10000"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
# Trade timestamps: how far in the future (clock skew) and how far back a trade may be reported.
CLEARHOUSE_MAX_CLOCK_SKEW_SECONDS = int(os.environ.get("CLEARHOUSE_MAX_CLOCK_SKEW_SECONDS", "300"))
CLEARHOUSE_MAX_TRADE_AGE_DAYS = int(os.environ.get("CLEARHOUSE_MAX_TRADE_AGE_DAYS", "30"))
# History is evidence: the admin may show old versions but never restore them.
SIMPLE_HISTORY_REVERT_DISABLED = True

# --- Chains ---------------------------------------------------------------------------------
# Chains settled on chain (others settle crypto legs on the internal ledger for now).
CLEARHOUSE_CHAIN_RAILS = env_list("CLEARHOUSE_CHAIN_RAILS", "ethereum")
# "local" = the in-process py-evm chain (tests, demo); otherwise a JSON-RPC URL of a node.
CLEARHOUSE_ETH_RPC_URL = os.environ.get("CLEARHOUSE_ETH_RPC_URL", "local")
# Bitcoin node (bitcoind JSON-RPC URL with credentials) and Solana RPC URL; "local" = a node
# simulator served on a loopback port inside this process (tests; see rails/simulators/).
CLEARHOUSE_BTC_RPC_URL = os.environ.get("CLEARHOUSE_BTC_RPC_URL", "local")
CLEARHOUSE_BTC_NETWORK = os.environ.get("CLEARHOUSE_BTC_NETWORK", "regtest")
CLEARHOUSE_SOL_RPC_URL = os.environ.get("CLEARHOUSE_SOL_RPC_URL", "local")
CLEARHOUSE_RPC_TIMEOUT_SECONDS = float(os.environ.get("CLEARHOUSE_RPC_TIMEOUT_SECONDS", "10"))
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
# --- Fiat and custody rails ------------------------------------------------------------------
# Bank network and custodian endpoints: an HTTP URL, or "local" = the simulator served on a
# loopback port inside this process (tests). See rails/simulators/bank.py and custodian.py.
CLEARHOUSE_BANK_URL = os.environ.get("CLEARHOUSE_BANK_URL", "local")
CLEARHOUSE_CUSTODIAN_URL = os.environ.get("CLEARHOUSE_CUSTODIAN_URL", "local")
CLEARHOUSE_RAIL_TIMEOUT_SECONDS = float(os.environ.get("CLEARHOUSE_RAIL_TIMEOUT_SECONDS", "5"))
# The house's own accounts: the central settlement account at the bank (per currency) and at
# the custodian. Pay-ins go to them, pay-outs leave from them.
CLEARHOUSE_HOUSE_NAME = os.environ.get("CLEARHOUSE_HOUSE_NAME", "Clearhouse Central Settlement")
CLEARHOUSE_HOUSE_BANK_ACCOUNTS = {
    "USD": {"aba": "021000021", "account": "4400123456", "country": "US"},
    "EUR": {"iban": "DE12500105170648489890", "bic": "INGDDEFFXXX", "country": "DE"},
    "GBP": {"iban": "GB29NWBK60161331926819", "bic": "NWBKGB2LXXX", "country": "GB"},
}
CLEARHOUSE_HOUSE_CUSTODY_ACCOUNT = {"bic": "DTCYUS33XXX", "account": "CCP-0001"}
# Payment method choice and fallback (rails/fiat/routing.py): USD above ``ach_max`` or urgent
# goes by wire, EUR within SEPA by SEPA, anything else by SWIFT. A rejection whose ISO reason
# code is in ``reroute_reasons`` is retried by the next method of ``fallback``, at most
# ``max_attempts`` attempts in all; any other rejection goes to manual review.
CLEARHOUSE_FIAT_ROUTING = {
    "ach_max": os.environ.get("CLEARHOUSE_ACH_MAX", "1000000.00"),
    "fallback": {"ach": "wire", "sepa": "swift"},
    "reroute_reasons": ["AM02", "AG01", "AG03", "CNOR", "RR04", "TM01", "MS03", "NARR"],
    "max_attempts": 3,
}
# Sends of one message without an answer (timeouts) before the payment goes to manual review.
CLEARHOUSE_RAIL_MAX_SENDS = int(os.environ.get("CLEARHOUSE_RAIL_MAX_SENDS", "6"))
# Business days a custody delivery may fail before a buy-in case is opened.
CLEARHOUSE_BUY_IN_AFTER_DAYS = int(os.environ.get("CLEARHOUSE_BUY_IN_AFTER_DAYS", "4"))
# Reconciliation: a house bank account's booking short by at most this much (a correspondent
# bank's fee) is booked as a fee - a journal from the house's absorbed bank charges
# (``bank-charges:absorbed``) to ``bank-charges`` - and its break resolves citing the journal;
# a larger shortfall stays open for people (an adjusting journal needs four-eyes approval).
CLEARHOUSE_RECON_FEE_SCHEDULE = {"USD": "25.00", "EUR": "20.00", "GBP": "20.00"}
# When each rail should have confirmed a movement: bank methods and custody by the end of the
# value date plus these days, chains this many minutes after the broadcast. A confirmation is
# missing once the grace period has passed after that.
CLEARHOUSE_RECON_COMPLETION = {"ach": 1, "wire": 0, "sepa": 0, "swift": 1, "custody": 0, "chain_minutes": 60}
CLEARHOUSE_RECON_GRACE_MINUTES = int(os.environ.get("CLEARHOUSE_RECON_GRACE_MINUTES", "120"))
# Chains whose transaction lists are imported and reconciled (their rail lists a block or slot
# range's transactions of our wallets).
CLEARHOUSE_RECON_CHAIN_LISTS = ["ethereum", "bitcoin", "solana"]
# Matching lines that carry no usable reference: same account and asset, same counterparty where
# both sides name one, amount within this much, value date within this many business days of
# the asset's calendar; paired one-to-one, closest first.
CLEARHOUSE_RECON_RULES = {"amount": "25.00", "days": 3}
# Keys for house-custodied wallets: JSON {address: private key}, mode 600. Never in the database.
CLEARHOUSE_KEYSTORE = os.environ.get("CLEARHOUSE_KEYSTORE", str(VAR_DIR / "keystore.json"))
# Confirmation polling: first check after this many seconds, then backoff up to the cap.
CLEARHOUSE_CONFIRM_POLL_SECONDS = float(os.environ.get("CLEARHOUSE_CONFIRM_POLL_SECONDS", "2"))
CLEARHOUSE_BROADCAST_MAX_RETRIES = int(os.environ.get("CLEARHOUSE_BROADCAST_MAX_RETRIES", "5"))
# Checks in a row a transaction may be unknown to the node before it is rebroadcast.
CLEARHOUSE_DROPPED_AFTER_CHECKS = int(os.environ.get("CLEARHOUSE_DROPPED_AFTER_CHECKS", "2"))
# Confirmation polls per dispatch before the sweeper takes over.
CLEARHOUSE_CONFIRM_MAX_POLLS = int(os.environ.get("CLEARHOUSE_CONFIRM_MAX_POLLS", "40"))
# Trades per pipeline task (one task locks, signs and broadcasts a batch).
CLEARHOUSE_CRYPTO_BATCH = int(os.environ.get("CLEARHOUSE_CRYPTO_BATCH", "50"))
# Webhooks: request timeout (the retry schedule and bound are with the recovery settings).
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

# --- Audit trail ----------------------------------------------------------------------------------
# The transition log is an HMAC-SHA256 chain under this key: kept outside the database, not
# SECRET_KEY, required in production. Rotation: a new key under a new CLEARHOUSE_AUDIT_HMAC_KEY_ID,
# the old ones in CLEARHOUSE_AUDIT_HMAC_RETIRED_KEYS (JSON {"key id": "key"}); rows name their key.
_AUDIT_KEY = os.environ.get("CLEARHOUSE_AUDIT_HMAC_KEY", "")
CLEARHOUSE_AUDIT_HMAC_KEY_ID = os.environ.get("CLEARHOUSE_AUDIT_HMAC_KEY_ID", "k1")
if not _AUDIT_KEY:  # the test run (pytest sets PYTEST_VERSION) and the demo use a public key
    if not DEBUG and os.environ.get("DATABASE_URL") and not os.environ.get("PYTEST_VERSION"):
        raise RuntimeError("CLEARHOUSE_AUDIT_HMAC_KEY must be set when DEBUG is off and DATABASE_URL is set")
    _AUDIT_KEY, CLEARHOUSE_AUDIT_HMAC_KEY_ID = "insecure-demo-audit-key", "demo"
if _AUDIT_KEY == SECRET_KEY:
    raise RuntimeError("CLEARHOUSE_AUDIT_HMAC_KEY must not be SECRET_KEY")
CLEARHOUSE_AUDIT_HMAC_KEYS = {
    **json.loads(os.environ.get("CLEARHOUSE_AUDIT_HMAC_RETIRED_KEYS", "{}")),
    CLEARHOUSE_AUDIT_HMAC_KEY_ID: _AUDIT_KEY,
}
# Rows from before the HMAC chain (plain SHA-256, empty key id) at the cut-over; 0 when it started keyed.
CLEARHOUSE_AUDIT_LEGACY_ROWS = int(os.environ.get("CLEARHOUSE_AUDIT_LEGACY_ROWS", "0"))
# Signed anchors of the chain head (beat, every minute and after each hourly check) that the check
# compares the chain with. In production: storage the database's users cannot write (WORM, object lock).
CLEARHOUSE_AUDIT_ANCHOR_PATH = os.environ.get("CLEARHOUSE_AUDIT_ANCHOR_PATH", str(VAR_DIR / "audit-anchors.jsonl"))

# --- Fees ----------------------------------------------------------------------------------------
# Rounding of a computed fee to the asset's precision (a decimal module rounding mode).
CLEARHOUSE_FEE_ROUNDING = os.environ.get("CLEARHOUSE_FEE_ROUNDING", "ROUND_HALF_UP")
