"""The base: where the project lives, how settings read the environment, production or demo
(DEBUG, CLEARHOUSE_PRODUCTION, SECRET_KEY), the installed apps, middleware, templates and locale."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

# config/settings/base.py -> the repository root
BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("CLEARHOUSE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# Production unless told otherwise: with DEBUG off the deployment settings hold (security.py: HTTPS
# only, HSTS, secure cookies, a second factor for staff; a strong SECRET_KEY here). The demo runs with DEBUG
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

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# History is evidence: the admin may show old versions but never restore them.
SIMPLE_HISTORY_REVERT_DISABLED = True
