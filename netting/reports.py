"""Receiving the networks' reports: fetch the ones after our position and store them raw, once.

Our position on a network is the epoch of the last report received from it and the highest
sequence number received in that epoch. A network that restarts its sequence numbers names a new
epoch (numbered from 1 again); asked from the old position it serves the rest of the old epoch
and then the new one (or, if it cannot place the position, its current epoch from the start), so
nothing is skipped and nothing stalls. Each report's natural key is (network, epoch, sequence):
one fetched twice is stored once.

A network may also restart its numbering without naming a new epoch. Each fetch therefore asks
from one report before our position: the first report served must be the last one we hold, with
the same content. If it is not there, or is another report, and the network names no other epoch,
its numbering went back: its reports are fetched again from the start and kept under a name of
ours for that numbering, ``<network epoch>~<n>`` (``~`` never appears in a network's own names).
A network that no longer serves our last report for another reason (retention) is taken for a
restart too: its reports are then stored twice under two epochs, which is safe (applying a report
and recording its lines are idempotent by their natural keys) - skipping them would not be.
Every restart is told to operations once.
"""

import logging

from django.db import transaction

from common.actors import Actor
from common.exceptions import IllegalTransition, ValidationFailed
from ledger.services.audit import LogEntry, transition_log_append
from netting.locking import lock_report
from netting.models import RailReport

logger = logging.getLogger(__name__)


LOCAL = "~"


def reports_receive(*, network: str) -> int:
    """Fetch and store the network's new reports; returns the pk of the last report stored
    before (the new ones are above it)."""
    from rails.networks import network_client

    client = network_client(network)
    latest = RailReport.objects.filter(network=network).order_by("-pk").values("pk", "epoch").first()
    ours, before = (latest["epoch"], latest["pk"]) if latest else ("", 0)
    theirs = ours.split(LOCAL)[0]  # the network's name of the numbering we are in
    held = RailReport.objects.filter(network=network, epoch=ours).order_by("-sequence").first()
    after = held.sequence if held else 0
    page = client.reports(after=max(after - 1, 0), epoch=theirs)
    reports = page.reports
    if held is not None:
        first = reports[0] if reports else None
        if first is not None and (first.epoch, first.sequence, first.content) == (theirs, after, held.content):
            reports = reports[1:]  # our last report, where we left it
        elif page.epoch == theirs and (first is None or first.epoch == theirs):  # went back, no new epoch named
            ours = f"{theirs}{LOCAL}{_local_epochs(network=network, theirs=theirs) + 1}"
            page = client.reports(after=0, epoch=theirs)
            reports = page.reports
            _restart_alert(network=network, old=held.epoch, after=after, new=ours)
    if reports:
        RailReport.objects.bulk_create(
            [
                RailReport(
                    network=network,
                    epoch=ours if r.epoch == theirs else r.epoch,
                    sequence=r.sequence,
                    kind=r.kind,
                    content=r.content,
                )
                for r in reports
            ],
            ignore_conflicts=True,
        )
    if latest is not None and page.epoch != theirs:
        _restart_alert(network=network, old=ours, after=after, new=page.epoch)
    return before


def _local_epochs(*, network: str, theirs: str) -> int:
    return (
        RailReport.objects.filter(network=network, epoch__startswith=f"{theirs}{LOCAL}")
        .values("epoch")
        .distinct()
        .count()
    )


def _restart_alert(*, network: str, old: str, after: int, new: str) -> None:
    from common.ports import ops_alert

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
        report = lock_report(report.pk).get()
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
