"""The reconciliation run: internal expectations against external records, set-based.

1. ``internal_snapshot`` writes (upserts) one ``InternalRecord`` per rail attempt with one
   INSERT ... SELECT per rail: for a bank payment, the booking it must produce on the house
   account (signed as that account sees it); for a custody delivery, the movement on the
   delivering safekeeping account.
2. ``reconciliation_run`` classifies every expectation and every external line in one query
   (exact reference first; then the rule for lines without a usable reference: same account and
   asset, amount within ``rule_amount``, value date within ``rule_days``, paired one-to-one,
   closest first):
   external lines are de-duplicated by their natural key (a booking in both a notification and
   the statement counts once) and summed per (reference, account), so split bookings match their
   payment (many-to-one); the result is joined to the expectations (full outer join) and each
   pair is ok, awaiting (inside the grace period) or a break: amount (difference of at least
   ``tolerance``), currency, value date, duplicate (booked n times), missing confirmation,
   unexpected settlement. Breaks go in with one INSERT ... SELECT; their ``dedupe_key`` makes a
   second run find them again instead of opening them twice.

Severity grows with value (under 100, 10,000, 1,000,000, above) and one step with age (older
than ``age_days``). Only the breaks travel to Python; matching never loops over records.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from reconciliation.models import ReconciliationRun
from settlement.services.actors import Actor, actor_label

_SNAPSHOT_BANK = """
INSERT INTO reconciliation_internalrecord
    (natural_key, rail, reference, account, asset_code, amount, value_date, state, since, updated_at)
SELECT 'attempt:' || a.id, 'bank', a.end_to_end_id, h.account, s.code,
       CASE WHEN ni.direction = 'pay_in' THEN ni.amount ELSE -ni.amount END,
       ni.settlement_date, a.status, COALESCE(a.accepted_at, a.created_at), %(now)s
FROM netting_railattempt a
JOIN netting_nettedinstruction ni ON ni.id = a.instruction_id
JOIN settlement_asset s ON s.id = ni.asset_id
JOIN unnest(%(currencies)s::text[], %(accounts)s::text[]) AS h(currency, account) ON h.currency = s.code
WHERE a.method IN ('ach', 'wire', 'sepa', 'swift')
ON CONFLICT (natural_key) DO UPDATE
   SET state = EXCLUDED.state, since = EXCLUDED.since, updated_at = EXCLUDED.updated_at
"""

_SNAPSHOT_CUSTODY = """
INSERT INTO reconciliation_internalrecord
    (natural_key, rail, reference, account, asset_code, amount, value_date, state, since, updated_at)
SELECT 'attempt:' || a.id, 'custodian', a.end_to_end_id,
       CASE WHEN ni.direction = 'pay_in' THEN ca.account_id ELSE %(house_custody)s END,
       s.isin, -ni.amount, ni.settlement_date, a.status, COALESCE(a.accepted_at, a.created_at), %(now)s
FROM netting_railattempt a
JOIN netting_nettedinstruction ni ON ni.id = a.instruction_id
JOIN settlement_asset s ON s.id = ni.asset_id
JOIN LATERAL (
    SELECT account_id FROM settlement_custodyaccount c WHERE c.participant_id = ni.participant_id
    ORDER BY c.id LIMIT 1
) ca ON TRUE
WHERE a.method = 'custody'
ON CONFLICT (natural_key) DO UPDATE
   SET state = EXCLUDED.state, since = EXCLUDED.since, updated_at = EXCLUDED.updated_at
"""

_CLASSIFIED = """
WITH ext AS (
    SELECT DISTINCT ON (natural_key) id, reference, account, asset_code, amount, value_date,
           CASE WHEN reference = '' THEN 'noref:' || id ELSE reference END AS ref_key
    FROM reconciliation_externalrecord
    WHERE (source IN ('camt053', 'camt054') AND account = ANY(%(house)s)) OR source = 'sese025'
    ORDER BY natural_key, source
),
agg AS (
    SELECT ref_key, MIN(reference) AS reference, account, MIN(asset_code) AS c_min, MAX(asset_code) AS c_max,
           SUM(amount) AS found, COUNT(*) AS n, MAX(value_date) AS found_date, array_agg(id ORDER BY id) AS ids
    FROM ext GROUP BY ref_key, account  -- lines without a reference stay single
),
expectations AS (
    SELECT * FROM reconciliation_internalrecord WHERE state IN ('accepted', 'failing', 'settled')
),
pairs AS (
    SELECT i.id AS internal_id, i.natural_key, COALESCE(i.reference, a.reference) AS reference,
           COALESCE(i.account, a.account) AS account, COALESCE(i.asset_code, a.c_min) AS asset_code,
           i.amount AS expected, a.found, a.n, a.c_min, a.c_max, i.value_date, a.found_date, a.ids, i.since
    FROM expectations i FULL OUTER JOIN agg a ON a.ref_key = i.reference AND a.account = i.account
),
loose_int AS MATERIALIZED (
    SELECT internal_id, account, asset_code, expected, value_date FROM pairs WHERE found IS NULL
),
loose_ext AS MATERIALIZED (
    SELECT ids[1] AS ext_id, account, c_min AS asset_code, found, found_date
    FROM pairs WHERE internal_id IS NULL AND n = 1 AND c_min = c_max
),
candidates AS (
    SELECT i.internal_id, e.ext_id, e.found, e.found_date,
           ROW_NUMBER() OVER (PARTITION BY i.internal_id
                              ORDER BY ABS(e.found - i.expected), ABS(e.found_date - i.value_date), e.ext_id) AS rn_i,
           ROW_NUMBER() OVER (PARTITION BY e.ext_id
                              ORDER BY ABS(e.found - i.expected), ABS(e.found_date - i.value_date), i.internal_id)
               AS rn_e
    FROM loose_int i JOIN loose_ext e ON e.account = i.account AND e.asset_code = i.asset_code
     AND ABS(e.found - i.expected) <= %(rule_amount)s AND ABS(e.found_date - i.value_date) <= %(rule_days)s
),
by_rule AS (SELECT internal_id, ext_id, found, found_date FROM candidates WHERE rn_i = 1 AND rn_e = 1),
resolved_pairs AS (
    SELECT p.internal_id, p.natural_key, p.reference, p.account, p.asset_code, p.expected,
           COALESCE(p.found, r.found) AS found,
           COALESCE(p.n, CASE WHEN r.ext_id IS NOT NULL THEN 1 END) AS n,
           COALESCE(p.c_min, CASE WHEN r.ext_id IS NOT NULL THEN p.asset_code END) AS c_min,
           COALESCE(p.c_max, CASE WHEN r.ext_id IS NOT NULL THEN p.asset_code END) AS c_max,
           p.value_date, COALESCE(p.found_date, r.found_date) AS found_date,
           COALESCE(p.ids, CASE WHEN r.ext_id IS NOT NULL THEN ARRAY[r.ext_id] END) AS ids, p.since
    FROM pairs p
    LEFT JOIN by_rule r ON r.internal_id = p.internal_id
    LEFT JOIN by_rule taken ON p.internal_id IS NULL AND taken.ext_id = p.ids[1]
    WHERE taken.ext_id IS NULL  -- an external line paired by the rule is not unexpected any more
),
classified AS (
    SELECT *,
        CASE
            WHEN internal_id IS NULL THEN 'unexpected'
            WHEN found IS NULL THEN CASE WHEN since < %(grace_cutoff)s THEN 'missing' ELSE 'awaiting' END
            WHEN c_min <> c_max OR c_min <> asset_code THEN 'currency'
            WHEN n > 1 AND found = expected * n THEN 'duplicate'
            WHEN ABS(found - expected) >= %(tolerance)s THEN 'amount'
            WHEN found_date > value_date + %(date_days)s THEN 'date'
            ELSE 'ok'
        END AS kind
    FROM resolved_pairs
)
"""

# Constant SQL pieces joined together; every value travels as a parameter.
_TOTALS = _CLASSIFIED + "SELECT kind, COUNT(*) FROM classified GROUP BY kind"  # noqa: S608

_BREAKS_TAIL = """
INSERT INTO reconciliation_break
    (dedupe_key, kind, severity, internal_id, reference, account, asset_code, expected, found, difference,
     external_ids, first_run_id, last_run_id, status, resolution)
SELECT kind || ':' || COALESCE(natural_key, account || ':' || reference || ':' || ids[1]::text),
       kind,
       (ARRAY['low', 'medium', 'high', 'critical'])[LEAST(4, 1 +
           CASE WHEN v < 100 THEN 0 WHEN v < 10000 THEN 1 WHEN v < 1000000 THEN 2 ELSE 3 END +
           CASE WHEN since < %(aged)s THEN 1 ELSE 0 END)],
       internal_id, reference, account, asset_code, expected, found, found - expected,
       to_jsonb(COALESCE(ids, ARRAY[]::bigint[])), %(run)s, %(run)s, 'open', ''
FROM (
    SELECT *, ABS(CASE WHEN kind IN ('missing', 'unexpected', 'currency') THEN COALESCE(found, expected)
                       ELSE found - expected END) AS v
    FROM classified WHERE kind NOT IN ('ok', 'awaiting')
) b
ON CONFLICT (dedupe_key) DO UPDATE
   SET last_run_id = EXCLUDED.last_run_id, severity = EXCLUDED.severity, found = EXCLUDED.found,
       difference = EXCLUDED.difference, external_ids = EXCLUDED.external_ids
"""
_BREAKS = _CLASSIFIED + _BREAKS_TAIL


def internal_snapshot(*, now: object = None) -> None:
    house = settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS
    params = {
        "now": now or timezone.now(),
        "currencies": list(house),
        "accounts": [a.get("iban") or a["account"] for a in house.values()],
        "house_custody": settings.CLEARHOUSE_HOUSE_CUSTODY_ACCOUNT["account"],
    }
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_BANK, params)
        cursor.execute(_SNAPSHOT_CUSTODY, params)


def reconciliation_run(
    *,
    actor: Actor,
    grace: timedelta = timedelta(days=2),
    tolerance: Decimal = Decimal("0.01"),
    date_days: int = 3,
    rule_amount: Decimal | None = None,
    rule_days: int | None = None,
    age_days: int = 3,
) -> ReconciliationRun:
    """Snapshot, classify and record the breaks (see the module docstring). Runs of the same
    state twice find the same breaks and open none twice."""
    now = timezone.now()
    with transaction.atomic():
        run = ReconciliationRun.objects.create(started_by=actor_label(actor))
        internal_snapshot(now=now)
        house = [a.get("iban") or a["account"] for a in settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS.values()]
        params = {
            "house": house,
            "grace_cutoff": now - grace,
            "tolerance": tolerance,
            "date_days": date_days,
            "aged": now - timedelta(days=age_days),
            "rule_amount": rule_amount
            if rule_amount is not None
            else Decimal(settings.CLEARHOUSE_RECON_RULES["amount"]),
            "rule_days": rule_days if rule_days is not None else int(settings.CLEARHOUSE_RECON_RULES["days"]),
            "run": run.pk,
        }
        with connection.cursor() as cursor:
            cursor.execute(_TOTALS, params)
            counts = {kind: int(n) for kind, n in cursor.fetchall()}
            cursor.execute(_BREAKS, params)
        _record_new_breaks(run, actor=actor)
        resolved = _auto_resolve(run, actor=actor)
        run.totals = {
            "expected": sum(n for kind, n in counts.items() if kind != "unexpected"),
            "matched": counts.get("ok", 0),
            "awaiting": counts.get("awaiting", 0),
            "breaks": {k: n for k, n in counts.items() if k not in ("ok", "awaiting")},
            "auto_resolved": resolved,
        }
        run.finished_at = timezone.now()
        run.save(update_fields=("totals", "finished_at"))
        return run


def _record_new_breaks(run: ReconciliationRun, *, actor: Actor) -> None:
    """History rows and transition-log entries for the breaks this run opened (set-based)."""
    from reconciliation.models import Break
    from settlement.services.audit import LogEntry, transition_log_append
    from settlement.services.trades import history_insert_sql

    params = {"run": run.pk, "now": timezone.now(), "reason": f"found by run {run.pk}", "user": None}
    with connection.cursor() as cursor:
        cursor.execute(history_insert_sql(Break, "first_run_id = %(run)s"), params)
    new = list(Break.objects.filter(first_run=run).values_list("pk", "kind", "severity"))
    if new:
        transition_log_append(
            entries=[
                LogEntry("break", pk, "", "open", f"found by run {run.pk}", {"kind": kind, "severity": severity})
                for pk, kind, severity in new
            ],
            actor=actor,
        )


_AUTO_RESOLVE = """
UPDATE reconciliation_break b SET status = 'resolved', resolution = r.why
FROM (
    SELECT id, 'no longer found by run ' || %(run)s || ' (e.g. a late confirmation arrived)' AS why
    FROM reconciliation_break
    WHERE status IN ('open', 'investigating') AND last_run_id <> %(run)s
    UNION ALL
    SELECT id,
           'correspondent bank fee of ' || ROUND(ABS(difference), 2) || ' ' || asset_code || ' within the fee schedule'
    FROM reconciliation_break
    JOIN unnest(%(fee_assets)s::text[], %(fee_caps)s::numeric[]) AS f(asset, cap) ON f.asset = asset_code
    WHERE status = 'open' AND kind = 'amount' AND difference < 0 AND ABS(difference) <= f.cap
) r
WHERE b.id = r.id
RETURNING b.id, r.why
"""


def _auto_resolve(run: ReconciliationRun, *, actor: Actor) -> int:
    """Known patterns resolve themselves: a break this run no longer finds (the late confirmation
    arrived, the duplicate was reversed), and an amount short by a correspondent bank's fee within
    ``CLEARHOUSE_RECON_FEE_SCHEDULE``. Everything else stays in the admin queue."""
    from reconciliation.models import Break
    from settlement.services.audit import LogEntry, transition_log_append
    from settlement.services.trades import history_insert_sql

    fees = settings.CLEARHOUSE_RECON_FEE_SCHEDULE
    with connection.cursor() as cursor:
        cursor.execute(
            _AUTO_RESOLVE,
            {"run": run.pk, "fee_assets": list(fees), "fee_caps": [Decimal(v) for v in fees.values()]},
        )
        resolved = cursor.fetchall()
        if resolved:
            cursor.execute(
                history_insert_sql(Break, "id = ANY(%(ids)s)", history_type="~"),
                {"ids": [pk for pk, _ in resolved], "now": timezone.now(), "reason": "auto-resolved", "user": None},
            )
    if resolved:
        transition_log_append(
            entries=[LogEntry("break", pk, "open", "resolved", why, {"run": run.pk}) for pk, why in resolved],
            actor=actor,
        )
    return len(resolved)
