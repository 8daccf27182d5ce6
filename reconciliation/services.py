"""Pulling external records from the networks into reconciliation's store."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import transaction

from reconciliation.importers import ImportOutcome, ImportRejected, external_import
from reconciliation.models import ChainScan, Source
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


def chain_transactions_fetch(*, chain: str, actor: Actor = RECON, max_blocks: int = 500) -> ImportOutcome | None:
    """Import the chain's own list of our wallets' transactions, from the block after the last
    one imported up to the newest block that has the asset's required confirmations (so a page
    never changes once imported), at most ``max_blocks`` blocks per call.

    Each transaction is one record, seen from our side: a transfer from one of our wallets is
    a debit of the sending wallet (counterparty: the receiving address), one that only pays in
    is a credit of the receiving wallet. The page is stored raw as a chain list; importing it
    twice, or two workers reading the same blocks, stores it once (the scan position is
    row-locked and moves in the same transaction as the import). Chains whose rail cannot list
    transactions yet are skipped (None)."""
    from rails.crypto.registry import chain_rail
    from settlement.models import Asset, WalletAddress

    rail = chain_rail(chain)
    asset = Asset.objects.filter(chain=chain, code=getattr(rail, "symbol", "")).first()
    if rail is None or asset is None or not hasattr(rail, "transactions"):
        return None
    scan, _ = ChainScan.objects.get_or_create(chain=chain)
    first = scan.next_block
    last = min(rail.head() - max(asset.required_confirmations, 1) + 1, first + max_blocks - 1)
    if last < first:
        return None
    wallets = {w.lower(): w for w in WalletAddress.objects.filter(chain=chain).values_list("address", flat=True)}
    rows = []
    for tx in rail.transactions(addresses=set(wallets), first_block=first, last_block=last):
        sender, receiver = wallets.get(tx["from"].lower()), wallets.get(tx["to"].lower())
        if sender is not None:
            address, counterparty, amount = sender, receiver or tx["to"], -tx["amount"]
        else:
            address, counterparty, amount = receiver, tx["from"], tx["amount"]
        rows.append(
            {
                "chain": chain,
                "tx_hash": tx["tx_hash"],
                "asset": asset.code,
                "amount": str(amount),
                "address": address,
                "counterparty": counterparty,
                "block": tx["block"],
                "confirmations": tx["confirmations"],
                "date": datetime.fromtimestamp(tx["timestamp"], UTC).date().isoformat(),
                "succeeded": tx["succeeded"],
            }
        )
    with transaction.atomic():
        scan = ChainScan.objects.select_for_update().get(chain=chain)
        if scan.next_block != first:
            return None  # another worker imported these blocks meanwhile
        outcome = None
        if rows:
            outcome = external_import(
                source=Source.CHAIN,
                name=f"{chain} blocks {first}-{last}.json",
                content=json.dumps(rows, indent=1).encode(),
                actor=actor,
            )
        scan.next_block = last + 1
        scan.save(update_fields=("next_block", "updated_at"))
    return outcome


def chain_lists_fetch(*, actor: Actor = RECON) -> dict[str, int]:
    """Every configured chain's new transactions (a chain that cannot be reached is logged and
    tried again next time; what was not imported stays behind the scan position)."""
    from rails.base import RailTransientError

    created = {}
    for chain in settings.CLEARHOUSE_CHAIN_RAILS:
        try:
            outcome = chain_transactions_fetch(chain=chain, actor=actor)
        except RailTransientError as exc:
            logger.warning("chain list of %s not fetched: %s", chain, exc)
            continue
        created[chain] = outcome.created if outcome else 0
    return created
