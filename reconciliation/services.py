"""Pulling external records from the networks into reconciliation's store."""

from __future__ import annotations

import logging
from datetime import date

from django.conf import settings

from reconciliation.importers import ImportOutcome, ImportRejected, external_import
from reconciliation.models import Source
from settlement.services.actors import Actor, SystemActor

RECON = SystemActor("reconciliation")
logger = logging.getLogger(__name__)


def bank_statements_fetch(*, on: date, actor: Actor = RECON) -> list[ImportOutcome]:
    """Fetch the end-of-day camt.053 of every house account for ``on`` from the bank network and
    import it (idempotent: fetching the same day twice stores it once)."""
    from rails.network import network_client

    client = network_client("bank")
    outcomes = []
    for currency, account in sorted(settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS.items()):
        key = account.get("iban") or account["account"]
        xml = client.statement(account=key, on=on)
        outcomes.append(
            external_import(
                source=Source.CAMT053, name=f"{currency} {key} {on.isoformat()}.xml", content=xml.encode(), actor=actor
            )
        )
    return outcomes


REPORT_SOURCES = {
    "camt.054": Source.CAMT054,
    "pain.002": Source.PAIN002,
    "pacs.002": Source.PAIN002,
    "sese.025": Source.SESE025,
}


def rail_reports_record(*, limit: int = 5000, actor: Actor = RECON) -> dict[str, int]:
    """Import the reports the rails fetched (stored raw in ``netting.RailReport``) as external
    records: notifications, status reports and custody confirmations. Each report is imported
    once; a report that cannot be read is logged, marked and left for people (its raw content is
    in the admin)."""
    from netting.models import RailReport

    outcome = {"records": 0, "reports": 0, "refused": 0}
    reports = list(RailReport.objects.filter(recorded=False, kind__in=list(REPORT_SOURCES)).order_by("pk")[:limit])
    for report in reports:
        try:
            result = external_import(
                source=REPORT_SOURCES[report.kind],
                name=f"{report.network} report #{report.sequence} ({report.kind})",
                content=report.content.encode(),
                actor=actor,
            )
            outcome["records"] += result.created
        except ImportRejected as exc:
            logger.error("%s report %s could not be recorded: %s", report.network, report.sequence, exc.message)
            outcome["refused"] += 1
        RailReport.objects.filter(pk=report.pk).update(recorded=True)
        outcome["reports"] += 1
    return outcome
