"""Production settings (config.settings with CLEARHOUSE_PRODUCTION=1), run in a subprocess as a
deployment would load them: Django's deployment check is clean, a weak SECRET_KEY is refused and
staff need a second factor."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings
from django.core.management.utils import get_random_secret_key

ROOT = settings.BASE_DIR


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess:
    full_env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CLEARHOUSE_PRODUCTION": "1",
        "DEBUG": "0",
        "SECRET_KEY": get_random_secret_key(),
        "ALLOWED_HOSTS": "clearhouse.example.com",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, *argv], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_deploy_production_settings_report_no_warnings():
    # given production settings with a strong key / when Django's deployment check runs
    result = _run("manage.py", "check", "--deploy", "--fail-level", "WARNING")
    # then it passes without a single warning
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_settings_refuse_a_weak_secret_key():
    # given production settings with a short key / when they load
    result = _run("-c", "import config.settings", SECRET_KEY="x")
    # then the process refuses to start
    assert result.returncode != 0
    assert "SECRET_KEY must be a random string of at least 50 characters" in result.stderr


def test_production_settings_require_https_secure_cookies_and_a_second_factor():
    # given production settings / when they load
    probe = (
        "import config.settings as s; print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS > 0, s.CLEARHOUSE_ADMIN_OTP_REQUIRED, s.CLEARHOUSE_WEBHOOK_REQUIRE_HTTPS)"
    )
    result = _run("-c", probe)
    # then every one of them is on
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"] * 6
