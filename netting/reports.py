"""Receiving the networks' reports: fetch the ones after our position and store them raw, once.

Our position on a network is the epoch of the last report received from it and the highest
sequence number received in that epoch. A
network that restarts its sequence numbers names a new epoch (numbered from 1 again); asked from
the old position it serves the rest of the old epoch and then the new one (or, if it cannot place
the position, its current epoch from the start), so nothing is skipped and nothing stalls. Each
report's natural key is (network, epoch, sequence): one fetched twice is stored once. A restart
is told to operations once per new epoch.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Max

from netting.models import RailReport
from settlement.exceptions import IllegalTransition, ValidationFailed
from settlement.services.actors import Actor
from settlement.services.audit import LogEntry, transition_log_append

logger = logging.getLogger(__name__)


def reports_receive(*, network: str) -> int:
    """Fetch and store the network's new reports; returns the pk of the last report stored
    before (the new ones are above it)."""
    from rails.network import network_client

    latest = RailReport.objects.filter(network=network).order_by("-pk").values("pk", "epoch").first()
    epoch, before = (latest["epoch"], latest["pk"]) if latest else ("", 0)
    after = RailReport.objects.filter(network=network, epoch=epoch).aggregate(m=Max("sequence"))["m"] or 0
    page = network_client(network).reports(after=after, epoch=epoch)
    if page.reports:
        RailReport.objects.bulk_create(
            [
                RailReport(network=network, epoch=r.epoch, sequence=r.sequence, kind=r.kind, content=r.content)
                for r in page.reports
            ],
            ignore_conflicts=True,
        )
    if latest is not None and page.epoch != epoch:
        _restart_alert(network=network, old=epoch, after=after, new=page.epoch)
    return before


def _restart_alert(*, network: str, old: str, after: int, new: str) -> None:
    from settlement.services.alerts import ops_alert

    logger.warning("%s restarted its report numbering: epoch %r after %r #%s", network, new, old, after)
    ops_alert(
        title=f"The {network} network restarted its report numbering (epoch {new or '-'})",
        body=f"The last report received before was #{after} of epoch {old or '-'}. Reports of the new epoch are "
        "stored and applied under their own numbers (nothing is skipped); check with the network that no report "
        "of the old epoch is missing.",
        link="/admin/netting/railreport/",
        level="warning",
        dedupe_key=f"report-epoch:{network}:{new}"[:200],
    )


def rail_report_record_retry(*, report: RailReport, actor: Actor, reason: str) -> RailReport:
    """Ops: have reconciliation import a report it could not read again (its next
    ``rail_reports_record``): clears the import error, with the reason in the transition log."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("a reason is required")
    with transaction.atomic():
        report = RailReport.objects.select_for_update().get(pk=report.pk)
        if report.recorded or not report.record_error:
            raise IllegalTransition(f"{report} is not an import failure")
        transition_log_append(
            entries=[
                LogEntry("railreport", report.pk, "import_failed", "unrecorded", reason, {"error": report.record_error})
            ],
            actor=actor,
        )
        report.record_error = ""
        report.save(update_fields=("record_error",))
        return report
