"""Settings of the test suite: the project's settings outside production mode (plain HTTP test
client, no second factor unless a test asks for it, the test SECRET_KEY). Tests that are about the
production settings run ``config.settings`` in a subprocess with CLEARHOUSE_PRODUCTION=1."""

import os

os.environ.setdefault("CLEARHOUSE_PRODUCTION", "0")

from config.settings import *  # noqa: F403

# Logins in tests hash quickly (production keeps Django's PBKDF2 default).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _broker_of_xdist_worker(url: str, worker: str) -> str:
    """Under ``pytest -n`` every xdist worker has its own test database (pytest-django) and here its
    own Redis db too: gw<k> uses db (n + k) mod 16 of the configured redis://.../n. Worker tests
    flush their broker db and start Celery workers that consume whatever is queued there, so two
    test processes on one db would lose or run each other's tasks."""
    from urllib.parse import urlsplit, urlunsplit

    if not url.startswith(("redis://", "rediss://")) or not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base + int(worker[2:])) % 16}"))


_SHIFTED = "CLEARHOUSE_TEST_BROKER_OF_WORKER"
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("CELERY_BROKER_URL") and not os.environ.get(_SHIFTED):
    # the environment too: Celery reads $CELERY_BROKER_URL over the settings. The worker and beat
    # processes the tests start load these settings again with the broker URL they are given
    # (this one, or a test's own Redis): the marker keeps them from shifting it once more.
    CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"] = _broker_of_xdist_worker(
        os.environ["CELERY_BROKER_URL"], os.environ["PYTEST_XDIST_WORKER"]
    )
    os.environ[_SHIFTED] = "1"
