"""Transport security (HTTPS only in production) and logins (password rules, lockout, second factor)."""

from __future__ import annotations

import os
from datetime import timedelta

from .base import CLEARHOUSE_PRODUCTION, env_bool

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
