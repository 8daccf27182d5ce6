"""Pulling external records from the networks into reconciliation's store."""

from __future__ import annotations

from datetime import date

from django.conf import settings

from reconciliation.importers import ImportOutcome, external_import
from reconciliation.models import Source
from settlement.services.actors import Actor, SystemActor

RECON = SystemActor("reconciliation")


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
