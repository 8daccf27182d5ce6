"""The reconciliation run: internal expectations against external records, set-based.

1. ``internal_snapshot`` writes (upserts) one ``InternalRecord`` per rail attempt or chain
   transfer with one INSERT ... SELECT per rail: for a bank payment, the booking it must produce
   on the house account (signed as that account sees it, with the participant's account as the
   counterparty); for a custody delivery, the movement on the delivering safekeeping account;
   for a chain transfer, the debit of the sending wallet (counterparty: the receiving address);
   for a deposit the ledger credited from the chain, the credit of the receiving wallet.
   Each carries when its rail should have confirmed it (``CLEARHOUSE_RECON_COMPLETION``).
2. ``reconciliation_run`` classifies every expectation and every external line in one query:
   - a booking's amount counts without the bank charges it includes (the charges are passed on to
     the participant, ``settlement.services.fees.bank_charges_pass_on``);
   - exact reference first (end-to-end id, tx hash); external lines are de-duplicated by their
     natural key (a booking in both a notification and the statement counts once) and summed
     per (reference, account), so split bookings match their payment (many-to-one);
   - then the rule for lines without a usable reference: same account and asset, same
     counterparty where both name one, amount within ``rule_amount``, value date within
     ``rule_days`` business days of the asset's calendar; one-to-one, closest first;
   - each pair is ok, awaiting (its rail's completion time plus the grace period not yet
     passed), void (a rejected payment with nothing booked) or a break: status (booked though
     we count it rejected; a rejection report or reverted transaction for what we count paid),
     currency, duplicate (booked n times), amount (difference of at least ``tolerance``),
     counterparty, value date (booked more than ``date_days`` business days late), missing
     confirmation, unexpected settlement.
   Breaks go in with one INSERT ... SELECT; their ``dedupe_key`` makes a second run find them
   again instead of opening them twice.

A netted payment is one expectation against the many trade legs it settles (its legs are
traced from the netted instruction), so one booking matches one netted payment (one-to-many).
Severity grows with value (under 100, 10,000, 1,000,000, above) and one step with age (overdue
by more than ``age_days``). Only the breaks travel to Python; matching never loops over records.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.actors import Actor, actor_label
from netting.messages import house_accounts
from reconciliation.autoresolve import breaks_auto_resolve
from reconciliation.models import ReconciliationRun

_SNAPSHOT_BANK = """
INSERT INTO reconciliation_internalrecord
    (natural_key, rail, reference, account, counterparty, asset_code, amount, value_date, state, since, due_at,
     updated_at)
SELECT 'attempt:' || a.id, 'bank', a.end_to_end_id, h.account, COALESCE(NULLIF(ba.iban, ''), ba.account_number, ''),
       s.code, CASE WHEN ni.direction = 'pay_in' THEN ni.amount ELSE -ni.amount END,
       ni.settlement_date, a.status, COALESCE(a.accepted_at, a.created_at),
       (ni.settlement_date + 1 + c.days)::timestamp AT TIME ZONE 'UTC', %(now)s
FROM netting_railattempt a
JOIN netting_nettedinstruction ni ON ni.id = a.instruction_id
JOIN settlement_asset s ON s.id = ni.asset_id
JOIN unnest(%(currencies)s::text[], %(accounts)s::text[]) AS h(currency, account) ON h.currency = s.code
JOIN unnest(%(methods)s::text[], %(method_days)s::int[]) AS c(method, days) ON c.method = a.method
LEFT JOIN LATERAL (
    SELECT iban, account_number FROM settlement_bankaccount b
    WHERE b.participant_id = ni.participant_id AND b.currency_id = ni.asset_id ORDER BY b.id LIMIT 1
) ba ON TRUE
WHERE a.method IN ('ach', 'wire', 'sepa', 'swift')
ON CONFLICT (natural_key) DO UPDATE
   SET state = EXCLUDED.state, since = EXCLUDED.since, due_at = EXCLUDED.due_at,
       counterparty = EXCLUDED.counterparty, updated_at = EXCLUDED.updated_at
"""

_SNAPSHOT_CUSTODY = """
INSERT INTO reconciliation_internalrecord
    (natural_key, rail, reference, account, counterparty, asset_code, amount, value_date, state, since, due_at,
     updated_at)
SELECT 'attempt:' || a.id, 'custodian', a.end_to_end_id,
       CASE WHEN ni.direction = 'pay_in' THEN ca.account_id ELSE %(house_custody)s END, '',
       s.isin, -ni.amount, ni.settlement_date, a.status, COALESCE(a.accepted_at, a.created_at),
       (ni.settlement_date + 1 + %(custody_days)s)::timestamp AT TIME ZONE 'UTC', %(now)s
FROM netting_railattempt a
JOIN netting_nettedinstruction ni ON ni.id = a.instruction_id
JOIN settlement_asset s ON s.id = ni.asset_id
JOIN LATERAL (
    SELECT account_id FROM settlement_custodyaccount c WHERE c.participant_id = ni.participant_id
    ORDER BY c.id LIMIT 1
) ca ON TRUE
WHERE a.method = 'custody'
ON CONFLICT (natural_key) DO UPDATE
   SET state = EXCLUDED.state, since = EXCLUDED.since, due_at = EXCLUDED.due_at, updated_at = EXCLUDED.updated_at
"""

# A chain transfer as the sending wallet sees it; confirmed = settled, broadcast = in flight,
# failed = nothing should show (or only a reverted transaction).
_SNAPSHOT_CHAIN = """
INSERT INTO reconciliation_internalrecord
    (natural_key, rail, reference, account, counterparty, asset_code, amount, value_date, state, since, due_at,
     updated_at)
SELECT 'chain:' || t.id, 'chain',
       -- a leg paid inside a chain transaction paying many is matched by its position in it
       CASE WHEN t.chain_tx_id IS NOT NULL THEN t.tx_hash || ':' || t.output_index ELSE t.tx_hash END,
       t.from_address, t.to_address, s.code, -t.amount,
       (t.created_at AT TIME ZONE 'UTC')::date,
       CASE t.status WHEN 'confirmed' THEN 'settled' WHEN 'broadcast' THEN 'accepted' ELSE 'rejected' END,
       t.created_at, t.created_at + make_interval(mins => %(chain_minutes)s), %(now)s
FROM settlement_chaintransfer t
JOIN settlement_settlementinstruction si ON si.id = t.instruction_id
JOIN settlement_asset s ON s.id = si.asset_id
WHERE t.chain = ANY(%(chains)s) AND t.status IN ('broadcast', 'confirmed', 'failed')
ON CONFLICT (natural_key) DO UPDATE
   SET state = EXCLUDED.state, due_at = EXCLUDED.due_at, updated_at = EXCLUDED.updated_at
"""

# A deposit the ledger credited for value that arrived in a house wallet on chain.
_SNAPSHOT_DEPOSITS = """
INSERT INTO reconciliation_internalrecord
    (natural_key, rail, reference, account, counterparty, asset_code, amount, value_date, state, since, due_at,
     updated_at)
SELECT 'journal:' || j.id, 'chain', substr(j.reference, 15), w.address, '', s.code, p.amount,
       (j.created_at AT TIME ZONE 'UTC')::date, 'settled', j.created_at,
       j.created_at + make_interval(mins => %(chain_minutes)s), %(now)s
FROM settlement_journal j
JOIN settlement_posting p ON p.journal_id = j.id AND p.amount > 0
JOIN settlement_ledgeraccount la ON la.id = p.account_id
JOIN settlement_asset s ON s.id = p.asset_id
JOIN settlement_walletaddress w ON w.participant_id = la.owner_id AND w.chain = s.chain
WHERE j.reference LIKE 'chain-deposit:%%' AND s.chain = ANY(%(chains)s)
ON CONFLICT (natural_key) DO NOTHING
"""

_CLASSIFIED = """
WITH ext AS (
    SELECT DISTINCT ON (natural_key) id, reference, account, counterparty, asset_code,
           amount + CASE WHEN charges_included THEN charges ELSE 0 END AS amount, value_date,
           status IN ('failed', 'RJCT') AS failed,
           CASE WHEN reference = '' THEN 'noref:' || id ELSE reference END AS ref_key
    FROM reconciliation_externalrecord
    WHERE (source IN ('camt053', 'camt054') AND account = ANY(%(house)s)) OR source IN ('sese025', 'chain', 'csv')
    ORDER BY natural_key, source
),
agg AS (
    SELECT ref_key, MIN(reference) AS reference, account, MIN(asset_code) AS c_min, MAX(asset_code) AS c_max,
           SUM(amount) AS found, COUNT(*) AS n, MAX(value_date) AS found_date, array_agg(id ORDER BY id) AS ids,
           MIN(counterparty) FILTER (WHERE counterparty <> '') AS cp, bool_and(failed) AS ext_failed
    FROM ext GROUP BY ref_key, account  -- lines without a reference stay single
),
rejections AS (
    SELECT DISTINCT reference FROM reconciliation_externalrecord
    WHERE source = 'pain002' AND status = 'RJCT' AND reference <> ''
),
expectations AS (
    SELECT * FROM reconciliation_internalrecord
    WHERE state IN ('accepted', 'failing', 'settled', 'rejected', 'timed_out')
),
pairs AS (
    SELECT i.id AS internal_id, i.natural_key, COALESCE(i.reference, a.reference) AS reference,
           COALESCE(i.account, a.account) AS account, COALESCE(i.asset_code, a.c_min) AS asset_code,
           i.amount AS expected, a.found, a.n, a.c_min, a.c_max, i.value_date, a.found_date, a.ids, i.since,
           i.due_at, i.state, i.counterparty, a.cp, COALESCE(a.ext_failed, FALSE) AS ext_failed,
           rj.reference IS NOT NULL AS reported_rejected
    FROM expectations i FULL OUTER JOIN agg a ON a.ref_key = i.reference AND a.account = i.account
    LEFT JOIN rejections rj ON rj.reference = i.reference
),
bd AS (
    SELECT * FROM unnest(%(bd_assets)s::text[], %(bd_days)s::date[], %(bd_ords)s::int[]) AS b(asset_code, day, ord)
),
loose_int AS MATERIALIZED (
    SELECT internal_id, account, asset_code, expected, value_date, counterparty FROM pairs
    WHERE found IS NULL AND state NOT IN ('rejected', 'timed_out')
),
loose_ext AS MATERIALIZED (
    SELECT ids[1] AS ext_id, account, c_min AS asset_code, found, found_date, cp
    FROM pairs WHERE internal_id IS NULL AND n = 1 AND c_min = c_max
),
candidates AS (
    SELECT i.internal_id, e.ext_id, e.found, e.found_date, e.cp,
           ROW_NUMBER() OVER (PARTITION BY i.internal_id
                              ORDER BY ABS(e.found - i.expected), ABS(e.found_date - i.value_date), e.ext_id) AS rn_i,
           ROW_NUMBER() OVER (PARTITION BY e.ext_id
                              ORDER BY ABS(e.found - i.expected), ABS(e.found_date - i.value_date), i.internal_id)
               AS rn_e
    FROM loose_int i JOIN loose_ext e ON e.account = i.account AND e.asset_code = i.asset_code
     AND ABS(e.found - i.expected) <= %(rule_amount)s
     AND (e.cp IS NULL OR i.counterparty = '' OR e.cp = i.counterparty)
    JOIN bd bi ON bi.day = i.value_date
     AND bi.asset_code = CASE WHEN i.asset_code = ANY(%(bd_known)s) THEN i.asset_code ELSE '*' END
    JOIN bd be ON be.day = e.found_date
     AND be.asset_code = CASE WHEN e.asset_code = ANY(%(bd_known)s) THEN e.asset_code ELSE '*' END
    WHERE ABS(be.ord - bi.ord) <= %(rule_days)s
),
by_rule AS (SELECT internal_id, ext_id, found, found_date, cp FROM candidates WHERE rn_i = 1 AND rn_e = 1),
resolved_pairs AS (
    SELECT p.internal_id, p.natural_key, p.reference, p.account, p.asset_code, p.expected,
           COALESCE(p.found, r.found) AS found,
           COALESCE(p.n, CASE WHEN r.ext_id IS NOT NULL THEN 1 END) AS n,
           COALESCE(p.c_min, CASE WHEN r.ext_id IS NOT NULL THEN p.asset_code END) AS c_min,
           COALESCE(p.c_max, CASE WHEN r.ext_id IS NOT NULL THEN p.asset_code END) AS c_max,
           p.value_date, COALESCE(p.found_date, r.found_date) AS found_date,
           COALESCE(p.ids, CASE WHEN r.ext_id IS NOT NULL THEN ARRAY[r.ext_id] END) AS ids, p.since, p.due_at,
           p.state, p.counterparty, COALESCE(p.cp, r.cp) AS cp, p.ext_failed, p.reported_rejected,
           CASE WHEN p.asset_code = ANY(%(bd_known)s) THEN p.asset_code ELSE '*' END AS bd_asset
    FROM pairs p
    LEFT JOIN by_rule r ON r.internal_id = p.internal_id
    LEFT JOIN by_rule taken ON p.internal_id IS NULL AND taken.ext_id = p.ids[1]
    WHERE taken.ext_id IS NULL  -- an external line paired by the rule is not unexpected any more
),
classified AS (
    SELECT *,
        CASE
            WHEN internal_id IS NULL THEN 'unexpected'
            -- we count it as never paid: fine while nothing (or only a failed transaction) shows
            WHEN state IN ('rejected', 'timed_out') AND (found IS NULL OR ext_failed) THEN 'void'
            WHEN state = 'rejected' THEN 'status'
            WHEN found IS NULL THEN CASE WHEN reported_rejected THEN 'status'
                                         WHEN COALESCE(due_at, since) < %(due_cutoff)s THEN 'missing'
                                         ELSE 'awaiting' END
            WHEN ext_failed OR reported_rejected OR state = 'timed_out' THEN 'status'
            WHEN c_min <> c_max OR c_min <> asset_code THEN 'currency'
            WHEN n > 1 AND found = expected * n THEN 'duplicate'
            WHEN ABS(found - expected) >= %(tolerance)s THEN 'amount'
            WHEN cp IS NOT NULL AND counterparty <> '' AND cp <> counterparty THEN 'counterparty'
            WHEN found_date > value_date + %(date_days)s AND COALESCE(
                (SELECT b.ord FROM bd b WHERE b.day = found_date AND b.asset_code = bd_asset)
                - (SELECT b.ord FROM bd b WHERE b.day = value_date AND b.asset_code = bd_asset),
                %(date_days)s + 1) > %(date_days)s THEN 'date'
            ELSE 'ok'
        END AS kind
    FROM resolved_pairs
)
"""

# Constant SQL pieces joined together; every value travels as a parameter.

_BREAKS_TAIL = """
INSERT INTO reconciliation_break
    (dedupe_key, kind, severity, internal_id, reference, account, asset_code, expected, found, difference,
     external_ids, first_run_id, last_run_id, status, resolution)
SELECT kind || ':' || COALESCE(natural_key, account || ':' || reference || ':' || ids[1]::text),
       kind,
       (ARRAY['low', 'medium', 'high', 'critical'])[LEAST(4, 1 +
           CASE WHEN v < 100 THEN 0 WHEN v < 10000 THEN 1 WHEN v < 1000000 THEN 2 ELSE 3 END +
           CASE WHEN COALESCE(due_at, since, found_date::timestamptz) < %(aged)s THEN 1 ELSE 0 END)],
       internal_id, reference, account, asset_code, expected, found, found - expected,
       to_jsonb(COALESCE(ids, ARRAY[]::bigint[])), %(run)s, %(run)s, 'open', ''
FROM (
    SELECT *, ABS(CASE WHEN kind IN ('missing', 'unexpected', 'currency', 'status', 'counterparty')
                       THEN COALESCE(found, expected)
                       ELSE found - expected END) AS v
    FROM classified WHERE kind NOT IN ('ok', 'awaiting', 'void')
) b
ON CONFLICT (dedupe_key) DO UPDATE
   SET last_run_id = EXCLUDED.last_run_id, severity = EXCLUDED.severity, found = EXCLUDED.found,
       difference = EXCLUDED.difference, external_ids = EXCLUDED.external_ids
"""
# One statement: the classification runs once, writes the breaks (a data-modifying CTE) and
# returns the totals by kind.
_RUN = _CLASSIFIED + ", written AS (" + _BREAKS_TAIL + ") SELECT kind, COUNT(*) FROM classified GROUP BY kind"  # noqa: S608


def internal_snapshot(*, now: datetime | None = None) -> None:
    house = settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS
    completion = settings.CLEARHOUSE_RECON_COMPLETION
    methods = [m for m in ("ach", "wire", "sepa", "swift") if m in completion]
    params: dict[str, Any] = {
        "now": now or timezone.now(),
        "currencies": list(house),
        "accounts": [a.get("iban") or a["account"] for a in house.values()],
        "house_custody": settings.CLEARHOUSE_HOUSE_CUSTODY_ACCOUNT["account"],
        "methods": methods,
        "method_days": [int(completion[m]) for m in methods],
        "custody_days": int(completion["custody"]),
        "chain_minutes": int(completion["chain_minutes"]),
        "chains": [c for c in settings.CLEARHOUSE_RECON_CHAIN_LISTS if c in settings.CLEARHOUSE_CHAIN_RAILS],
    }
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_BANK, params)
        cursor.execute(_SNAPSHOT_CUSTODY, params)
        cursor.execute(_SNAPSHOT_CHAIN, params)
        cursor.execute(_SNAPSHOT_DEPOSITS, params)


def business_day_ordinals(*, first: date, last: date) -> tuple[list[str], list[date], list[int]]:
    """For every asset (by code, and by ISIN for securities) and every day of ``first..last``:
    the number of the asset calendar's business days up to that day; asset ``*`` (one we do not
    know) counts Monday to Friday. Two dates are N business days apart when their numbers
    differ by N (a weekend booking counts as the Friday)."""
    from calendars import is_business_day
    from reference.models import Asset

    assets, days, ords = [], [], []
    span = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    calendars = [("*", "", None), *Asset.objects.values_list("code", "isin", "calendar")]
    for code, isin, calendar in calendars:
        count = 0
        for day in span:
            count += is_business_day(calendar, day) if calendar else day.weekday() < 5
            for key in filter(None, (code, isin)):
                assets.append(key)
                days.append(day)
                ords.append(count)
    return assets, days, ords


def _date_span(*, now: datetime) -> tuple[date, date]:
    """The value dates a run may compare (bounded: a stray date far out gets no rule match)."""
    from django.db.models import Max, Min

    from reconciliation.models import ExternalRecord, InternalRecord

    internal = InternalRecord.objects.aggregate(lo=Min("value_date"), hi=Max("value_date"))
    external = ExternalRecord.objects.aggregate(lo=Min("value_date"), hi=Max("value_date"))
    today = now.date()
    lows = [d for d in (internal["lo"], external["lo"]) if d] or [today]
    highs = [d for d in (internal["hi"], external["hi"]) if d] or [today]
    return max(min(lows), today - timedelta(days=800)), min(max(highs), today + timedelta(days=400))


def reconciliation_run(
    *,
    actor: Actor,
    as_of: datetime | None = None,
    grace: timedelta | None = None,
    tolerance: Decimal = Decimal("0.01"),
    date_days: int = 3,
    rule_amount: Decimal | None = None,
    rule_days: int | None = None,
    age_days: int = 3,
) -> ReconciliationRun:
    """Snapshot, classify and record the breaks (see the module docstring). Runs of the same
    state twice find the same breaks and open none twice.

    A confirmation is missing once ``grace`` (default ``CLEARHOUSE_RECON_GRACE_MINUTES``) has
    passed after the rail's expected completion (``CLEARHOUSE_RECON_COMPLETION``), measured
    at ``as_of`` (default: now)."""
    now = as_of or timezone.now()
    if grace is None:
        grace = timedelta(minutes=int(settings.CLEARHOUSE_RECON_GRACE_MINUTES))
    with transaction.atomic():
        run = ReconciliationRun.objects.create(started_by=actor_label(actor))
        internal_snapshot(now=timezone.now())
        first, last = _date_span(now=now)
        bd_assets, bd_days, bd_ords = business_day_ordinals(first=first, last=last)
        params: dict[str, Any] = {
            "house": sorted(house_accounts()),
            "due_cutoff": now - grace,
            "tolerance": tolerance,
            "date_days": date_days,
            "aged": now - timedelta(days=age_days),
            "rule_amount": rule_amount
            if rule_amount is not None
            else Decimal(settings.CLEARHOUSE_RECON_RULES["amount"]),
            "rule_days": rule_days if rule_days is not None else int(settings.CLEARHOUSE_RECON_RULES["days"]),
            "bd_assets": bd_assets,
            "bd_days": bd_days,
            "bd_ords": bd_ords,
            "bd_known": sorted(set(bd_assets)),
            "run": run.pk,
        }
        with connection.cursor() as cursor:
            cursor.execute(_RUN, params)
            counts = {kind: int(n) for kind, n in cursor.fetchall()}
        _record_new_breaks(run, actor=actor)
        resolved = breaks_auto_resolve(run=run, actor=actor)
        quiet = ("ok", "awaiting", "void")
        run.totals = {
            "expected": sum(n for kind, n in counts.items() if kind not in ("unexpected", "void")),
            "matched": counts.get("ok", 0),
            "awaiting": counts.get("awaiting", 0),
            "not_paid": counts.get("void", 0),
            "breaks": {k: n for k, n in counts.items() if k not in quiet},
            "auto_resolved": resolved,
        }
        run.finished_at = timezone.now()
        run.save(update_fields=("totals", "finished_at"))
        return run


def _record_new_breaks(run: ReconciliationRun, *, actor: Actor) -> None:
    """History rows and transition-log entries for the breaks this run opened (set-based)."""
    from ledger.services.audit import LogEntry, transition_log_append
    from reconciliation.models import Break
    from settlement.services.trades import history_insert_sql

    params: dict[str, Any] = {"run": run.pk, "now": timezone.now(), "reason": f"found by run {run.pk}", "user": None}
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
