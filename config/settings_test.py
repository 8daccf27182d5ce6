"""Settings of the test suite: the project's settings outside production mode (plain HTTP test
client, no second factor unless a test asks for it, the test SECRET_KEY). Tests that are about the
production settings run ``config.settings`` in a subprocess with CLEARHOUSE_PRODUCTION=1."""

import os

os.environ.setdefault("CLEARHOUSE_PRODUCTION", "0")

from config.settings import *  # noqa: F403

# Logins in tests hash quickly (production keeps Django's PBKDF2 default).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
