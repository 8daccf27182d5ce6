"""Clearhouse settings (``DJANGO_SETTINGS_MODULE=config.settings``), one module per topic.

Everything comes from environment variables. DATABASE_URL (PostgreSQL) is required; without
CELERY_BROKER_URL Celery tasks run in-process (the demo), set it to use Redis. `make demo` needs no
servers: it points DATABASE_URL at an embedded PostgreSQL when none answers on 127.0.0.1:5432.

The modules, loaded in this order (a later one may read an earlier one's values):
- ``base``: environment helpers, DEBUG / CLEARHOUSE_PRODUCTION / SECRET_KEY, apps, middleware, templates
- ``security``: HTTPS-only transport, logins (password rules, lockout, second factor)
- ``database``: DATABASE_URL (PostgreSQL only), the owner commands' MIGRATE_DATABASE_URL
- ``celery``: recovery budgets, the broker, task routing, the beat schedule
- ``api``: the REST API, the OpenAPI schema, request limits, the rate limit and its cache
- ``clearhouse``: the settlement domain (locks, batches, trade timestamps, netting windows, webhooks,
  operations alerts, fees)
- ``rails``: chain nodes, the bank network, the custodian, the house's accounts, reconciliation
- ``logging``: log format and level
- ``audit``: the transition log's HMAC keys and anchors (last: it checks against SECRET_KEY)
"""

# The order is the load order above.
# isort: off
from .base import *  # noqa: F403
from .security import *  # noqa: F403
from .database import *  # noqa: F403
from .celery import *  # noqa: F403
from .api import *  # noqa: F403
from .clearhouse import *  # noqa: F403
from .rails import *  # noqa: F403
from .logging import *  # noqa: F403
from .audit import *  # noqa: F403
# isort: on
