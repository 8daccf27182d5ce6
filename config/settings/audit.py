"""The audit trail: the HMAC key chain of the tamper-evident transition log and its anchors.
Loaded last: it checks against SECRET_KEY and only once DATABASE_URL has been checked."""

from __future__ import annotations

import json
import os

from .base import DEBUG, SECRET_KEY, VAR_DIR

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
