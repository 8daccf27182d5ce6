from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from reconciliation.services import bank_statements_fetch, chain_lists_fetch, rail_reports_record


@shared_task(acks_late=True, singleton=True)
def bank_statements_fetch_task(day: str | None = None) -> list[int]:
    """Beat, after the bank's end of day: import yesterday's statements of the house accounts.
    Safe to run twice: a statement already imported is recognised by its content."""
    from datetime import date

    on = date.fromisoformat(day) if day else timezone.localdate() - timedelta(days=1)
    return [outcome.file.pk for outcome in bank_statements_fetch(on=on)]


@shared_task(acks_late=True, singleton=True)
def rail_reports_record_task() -> dict[str, int]:
    """Beat: record the rails' fetched reports as external records (each once)."""
    return rail_reports_record()


@shared_task(acks_late=True, singleton=True)
def chain_lists_fetch_task() -> dict[str, int]:
    """Beat: import the chains' new final blocks' transactions of our wallets (each block once)."""
    return chain_lists_fetch()


@shared_task(acks_late=True, singleton=True)
def reconciliation_run_task() -> int:
    """Beat, hourly (``0 */1 * * *``, editable in the admin): record the rails' new reports and
    the chains' new transactions, pass on bank charges not yet charged, then run the
    reconciliation. Running twice finds the same
    breaks and opens none twice."""
    from reconciliation.engine import reconciliation_run
    from reconciliation.services import RECON, reconciliation_inputs_gather

    reconciliation_inputs_gather()
    return reconciliation_run(actor=RECON).pk
