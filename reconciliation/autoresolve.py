"""Breaks that resolve themselves, each with its reason in the break's history and the
transition log:

* a break a run no longer finds (the late confirmation arrived, the duplicate was reversed);
* a house bank account's booking short by a correspondent bank's fee of at most
  ``CLEARHOUSE_RECON_FEE_SCHEDULE`` (per currency): the fee is booked - a balanced journal from
  the house's absorbed bank charges (``bank-charges:absorbed``, a house cost account) to the bank
  charges account (``bank-charges``, where passed-on charges go as well) - and the break resolves
  citing that journal. The ledger thus records what the bank took. A larger shortfall, or one
  whose journal cannot be posted, stays open for people: an adjusting journal needs a second
  person's approval (``reconciliation.resolution``, four-eyes).
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from common.actors import Actor
from common.exceptions import DomainError, ValidationFailed
from reconciliation.locking import lock_breaks
from reconciliation.models import Break, ReconciliationRun

logger = logging.getLogger(__name__)

ABSORBED_BANK_CHARGES = "bank-charges:absorbed"

_NO_LONGER_FOUND = """
UPDATE reconciliation_break b SET status = 'resolved', resolution = r.why
FROM (
    SELECT id, status AS was, 'no longer found by run ' || %(run)s || ' (e.g. a late confirmation arrived)' AS why
    FROM reconciliation_break
    WHERE status IN ('open', 'investigating') AND last_run_id <> %(run)s
) r
WHERE b.id = r.id
RETURNING b.id, r.was, r.why
"""

_FEE_SHORTFALLS = """
SELECT b.id
FROM reconciliation_break b
JOIN unnest(%(fee_assets)s::text[], %(fee_caps)s::numeric[]) AS f(asset, cap) ON f.asset = b.asset_code
WHERE b.status = 'open' AND b.kind = 'amount' AND b.last_run_id = %(run)s AND b.account = ANY(%(house)s)
  AND b.difference < 0 AND -b.difference <= f.cap
ORDER BY b.id
"""


def breaks_auto_resolve(*, run: ReconciliationRun, actor: Actor) -> int:
    """Resolve the known patterns among the breaks after ``run`` (inside the run's transaction);
    returns how many resolved."""
    from ledger.services.audit import LogEntry, transition_log_append
    from settlement.services.trades import history_insert_sql

    with connection.cursor() as cursor:
        cursor.execute(_NO_LONGER_FOUND, {"run": run.pk})
        gone = cursor.fetchall()
        if gone:
            cursor.execute(
                history_insert_sql(Break, "id = ANY(%(ids)s)", history_type="~"),
                {"ids": [pk for pk, _, _ in gone], "now": timezone.now(), "reason": "auto-resolved", "user": None},
            )
    if gone:
        transition_log_append(
            entries=[LogEntry("break", pk, was, "resolved", why, {"run": run.pk}) for pk, was, why in gone],
            actor=actor,
        )
    return len(gone) + _correspondent_fees_book(run=run, actor=actor)


def _correspondent_fees_book(*, run: ReconciliationRun, actor: Actor) -> int:
    """Book each shortfall within the fee schedule as a correspondent bank fee and resolve its
    break; one that cannot be booked stays open (logged)."""
    from netting.messages import house_accounts

    fees = settings.CLEARHOUSE_RECON_FEE_SCHEDULE
    with connection.cursor() as cursor:
        cursor.execute(
            _FEE_SHORTFALLS,
            {
                "run": run.pk,
                "house": sorted(house_accounts()),
                "fee_assets": list(fees),
                "fee_caps": [Decimal(v) for v in fees.values()],
            },
        )
        ids = [pk for (pk,) in cursor.fetchall()]
    booked = 0
    for brk in lock_breaks(ids, status="open"):
        try:
            with transaction.atomic():
                _correspondent_fee_book(brk, run=run, actor=actor)
        except DomainError as exc:
            logger.warning("break %s: correspondent fee not booked, left open: %s", brk.pk, exc.message)
            continue
        booked += 1
    return booked


def _correspondent_fee_book(brk: Break, *, run: ReconciliationRun, actor: Actor) -> None:
    from common.money import fits_precision, quantize
    from ledger.services.audit import transition_run
    from ledger.services.ledger import ledger_adjust, system_account_for
    from reference.models import Asset
    from settlement.services.fees import BANK_CHARGES

    asset = Asset.objects.filter(code=brk.asset_code).first()
    if asset is None:
        raise ValidationFailed(f"no asset {brk.asset_code} to book the fee in")
    if not fits_precision(-brk.difference, asset.precision):
        raise ValidationFailed(f"{-brk.difference} has more decimals than {asset.code} allows")
    fee = quantize(-brk.difference, asset.precision)
    journal = ledger_adjust(
        debit=system_account_for(code=ABSORBED_BANK_CHARGES, asset=asset),
        credit=system_account_for(code=BANK_CHARGES, asset=asset),
        amount=fee,
        reference=f"recon:correspondent-fee:break:{brk.pk}",
        actor=actor,
        memo=f"correspondent bank fee on {brk.reference or brk.account}: {fee} {asset.code} short (break {brk.pk})",
    )
    brk.resolution = (
        f"correspondent bank fee of {fee} {asset.code} within the fee schedule, "
        f"booked to {BANK_CHARGES} (journal {journal.reference})"
    )
    transition_run(
        brk,
        brk.mark_resolved,
        entity="break",
        actor=actor,
        reason=brk.resolution,
        metadata={"run": run.pk, "journal": journal.pk},
    )
