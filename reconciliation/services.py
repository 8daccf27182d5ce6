"""Pulling external records from the networks into reconciliation's store."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from common.actors import Actor, SystemActor
from reconciliation.importers import ImportOutcome, ImportRejected, external_import
from reconciliation.locking import lock_chain_scan
from reconciliation.models import ChainScan, Source

RECON = SystemActor("reconciliation")
logger = logging.getLogger(__name__)


BANK_SOURCES = (Source.CAMT053, Source.CAMT054)


def records_import(
    *, source: str, name: str, content: bytes, actor: Actor, mapping: dict[str, str] | None = None
) -> ImportOutcome:
    """Import one external file (``external_import``); when it is a bank report that brought new
    bookings, their charges are passed on at once (``bank_charges_pass_on`` for this file). Every
    import path (rail reports, statement fetch, the admin upload) goes through here."""
    outcome = external_import(source=source, name=name, content=content, actor=actor, mapping=mapping)
    if outcome.created and source in BANK_SOURCES:
        return replace(outcome, charges=bank_charges_pass_on(actor=actor, file_id=outcome.file.pk))
    return outcome


def bank_statements_fetch(*, on: date, actor: Actor = RECON) -> list[ImportOutcome]:
    """Fetch the end-of-day camt.053 of every house account for ``on`` from the bank network and
    import it (idempotent: fetching the same day twice stores it once)."""
    from rails.networks import network_client

    client = network_client("bank")
    outcomes = []
    for currency, account in sorted(settings.CLEARHOUSE_HOUSE_BANK_ACCOUNTS.items()):
        key = account.get("iban") or account["account"]
        xml = client.statement(account=key, on=on)
        outcomes.append(
            records_import(
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
    once. A report that cannot be read is an import failure, not a record: it stays unrecorded
    with the reason (``record_error``, filter "import failed" in the admin, its raw content beside
    it), operations are alerted once, and it is not tried again until someone clears the error
    (``netting.reports.rail_report_record_retry``)."""
    from netting.models import RailReport

    outcome = {"records": 0, "reports": 0, "refused": 0}
    reports = list(
        RailReport.objects.filter(recorded=False, record_error="", kind__in=list(REPORT_SOURCES)).order_by("pk")[:limit]
    )
    for report in reports:
        try:
            result = records_import(
                source=REPORT_SOURCES[report.kind],
                name=f"{report.network} report #{report.sequence}{f' of epoch {report.epoch}' if report.epoch else ''}"
                f" ({report.kind})",
                content=report.content.encode(),
                actor=actor,
            )
        except ImportRejected as exc:
            _report_import_failed(report, error=exc.message, actor=actor)
            outcome["refused"] += 1
            continue
        outcome["records"] += result.created
        for state, n in result.charges.items():
            outcome[f"bank_charges_{state}"] = outcome.get(f"bank_charges_{state}", 0) + n
        RailReport.objects.filter(pk=report.pk).update(recorded=True)
        outcome["reports"] += 1
    return outcome


def _report_import_failed(report: Any, *, error: str, actor: Actor) -> None:
    """Keep an unreadable report visible as an import failure (in the transition log too) and
    alert operations (once)."""
    from common.ports import ops_alert
    from ledger.services.audit import LogEntry, transition_log_append
    from netting.models import RailReport

    logger.error("%s report %s could not be recorded: %s", report.network, report.sequence, error)
    with transaction.atomic():
        RailReport.objects.filter(pk=report.pk, recorded=False).update(record_error=error or "unreadable")
        transition_log_append(
            entries=[LogEntry("railreport", report.pk, "unrecorded", "import_failed", f"not imported: {error}", {})],
            actor=actor,
        )
        ops_alert(
            title=f"{report.network} report #{report.sequence} ({report.kind}) could not be imported",
            body=f"Reconciliation could not read this report: {error}. Its records are missing from the external "
            "records until it is imported: fix the cause, then clear the error (retry) on the report.",
            link=f"/admin/netting/railreport/{report.pk}/change/",
            level="critical",
            roles=("operator",),
            dedupe_key=f"rail-report-unreadable:{report.pk}",
        )


def chain_transactions_fetch(*, chain: str, actor: Actor = RECON, max_blocks: int = 500) -> ImportOutcome | None:
    """Import the chain's own list of our wallets' transactions, from the block after the last
    one imported up to the newest block that has the asset's required confirmations (so a page
    never changes once imported), at most ``max_blocks`` blocks per call.

    Each transaction is one record, seen from our side: a transfer from one of our wallets is
    a debit of the sending wallet (counterparty: the receiving address), one that only pays in
    is a credit of the receiving wallet. A transaction paying many settlements (the rails'
    ``sign_payouts``) is one record per payout, keyed and referenced ``tx_hash:index``. The page
    is stored raw as a chain list; importing it twice, or two workers reading the same blocks,
    stores it once (the scan position is
    row-locked and moves in the same transaction as the import). Chains whose rail cannot list
    transactions yet are skipped (None)."""
    from rails.crypto.registry import chain_rail
    from reference.models import Asset, WalletAddress

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
    address: str | None  # None only for a transaction of none of ours, which the rails do not list
    for tx in rail.transactions(addresses=set(wallets.values()), first_block=first, last_block=last):
        sender, receiver = wallets.get(tx["from"].lower()), wallets.get(tx["to"].lower())
        if sender is not None:
            address, counterparty, amount = sender, receiver or tx["to"], -tx["amount"]
        else:
            address, counterparty, amount = receiver, tx["from"], tx["amount"]
        row = {
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
        if "index" in tx:
            # one payout of a transaction paying many settlements: matched by "tx_hash:index",
            # as the internal snapshot keys a leg paid inside a chain transaction
            row |= {
                "index": tx["index"],
                "reference": f"{tx['tx_hash']}:{tx['index']}",
                "payout_reference": tx.get("reference", ""),
            }
        rows.append(row)
    with transaction.atomic():
        scan = lock_chain_scan(chain).get()
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
    """The new transactions of every chain reconciled against its list (``CLEARHOUSE_RECON_CHAIN_LISTS``
    among the configured rails, the chains whose transfers the run expects to find; a chain that
    cannot be reached is logged and tried again next time: what was not imported stays behind
    the scan position)."""
    from rails.base import RailTransientError

    created = {}
    for chain in [c for c in settings.CLEARHOUSE_RECON_CHAIN_LISTS if c in settings.CLEARHOUSE_CHAIN_RAILS]:
        try:
            outcome = chain_transactions_fetch(chain=chain, actor=actor)
        except RailTransientError as exc:
            logger.warning("chain list of %s not fetched: %s", chain, exc)
            continue
        created[chain] = outcome.created if outcome else 0
    return created


_CHARGED_BOOKINGS = """
SELECT DISTINCT ON (e.natural_key) e.natural_key, e.charges, e.source, e.detail ->> 'charge_type', a.instruction_id
FROM reconciliation_externalrecord e
JOIN netting_railattempt a ON a.end_to_end_id = e.reference
JOIN netting_nettedinstruction ni ON ni.id = a.instruction_id
JOIN settlement_asset s ON s.id = ni.asset_id AND s.code = e.asset_code
WHERE e.source IN ('camt053', 'camt054') AND e.account = ANY(%(house)s) AND e.charges > 0 AND e.reference <> ''
  AND e.natural_key LIKE e.account || ':%%'  -- the bank's own entry reference: the same in 053 and 054
  AND (%(file)s::bigint IS NULL OR e.file_id = %(file)s)
  AND NOT EXISTS (
      SELECT 1 FROM settlement_feecharge f WHERE f.external_key = e.natural_key AND f.status = 'posted'
  )
ORDER BY e.natural_key, e.source DESC, a.id
"""


def bank_charges_pass_on(*, actor: Actor = RECON, file_id: int | None = None) -> dict[str, int]:
    """Pass the charges a house account's bank booking reports (camt.053/054 Chrgs) on to the
    participant of the netted payment it books, once per booking (by the bank's entry reference,
    so a charge in both the notification and the statement is charged once). Runs after each
    import of a bank report (``records_import``; ``file_id``: only that file's bookings) and as a
    sweep before every
    reconciliation run, which also posts charges that earlier waited for the participant's funds.
    A booking without the bank's own entry reference is not passed on (nothing would tell its
    notification and statement apart)."""
    from django.db import connection

    from netting.fees import bank_charge_pass_on
    from netting.messages import house_accounts
    from netting.models import NettedInstruction

    with connection.cursor() as cursor:
        cursor.execute(_CHARGED_BOOKINGS, {"house": sorted(house_accounts()), "file": file_id})
        rows = cursor.fetchall()
    outcome: dict[str, int] = {}
    payments = NettedInstruction.objects.select_related("participant", "asset").in_bulk([row[4] for row in rows])
    for key, charges, source, charge_type, ni_id in rows:
        what = f"{source} booking {key}" + (f" ({charge_type})" if charge_type else "")
        result = bank_charge_pass_on(
            ni=payments[ni_id], fee=charges, external_key=key, source=f"bank charges on {what}", actor=actor
        )
        outcome[result] = outcome.get(result, 0) + 1
    return outcome


def reconciliation_inputs_gather(*, actor: Actor = RECON) -> dict[str, Any]:
    """What runs before each reconciliation (beat's hourly task and ``manage.py reconcile``):
    record the rails' reports, import the chains' new transactions, pass on bank charges."""
    return {
        "reports": rail_reports_record(actor=actor),
        "chains": chain_lists_fetch(actor=actor),
        "bank_charges": bank_charges_pass_on(actor=actor),
    }
