"""Reads for the operations dashboard: a handful of aggregate queries, each answered from an
index or a small table, so the page stays fast with millions of instructions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from common.choices import InstructionStatus as S
from ops.models import ApprovalRequest, OpsAlert, ReviewCase
from settlement.models import ChainTransfer, SettlementHalt, SettlementInstruction

IN_FLIGHT = (S.PENDING, S.LOCKED, S.PROCESSING)


@dataclass
class Dashboard:
    now: datetime
    by_status: dict[str, int]
    total: int
    settled_last_hour: int
    failed_last_hour: int
    per_minute: list[tuple[str, int, int]]  # (HH:MM, settled, failed), oldest first
    oldest_stuck: SettlementInstruction | None
    stuck_count: int
    by_rail: list[tuple[str, str, int]]  # (rail, status, count)
    halts: list[SettlementHalt]
    cases_by_kind: dict[str, int]
    breaks_by_severity: dict[str, int]
    windows_by_status: dict[str, int]
    pending_approvals: int
    recent_alerts: list[OpsAlert] = field(default_factory=list)

    @property
    def settlement_rate(self) -> float | None:
        done = self.settled_last_hour + self.failed_last_hour
        return None if done == 0 else 100.0 * self.settled_last_hour / done

    @property
    def failure_rate(self) -> float | None:
        rate = self.settlement_rate
        return None if rate is None else 100.0 - rate


def _counts(queryset: Any, *fields: str) -> list[tuple[Any, ...]]:
    return list(queryset.order_by().values_list(*fields).annotate(n=Count("pk")))


def dashboard_read(*, now: datetime | None = None) -> Dashboard:
    from netting.models import NettedInstruction, NettingWindow
    from reconciliation.models import Break

    now = now or timezone.now()
    hour_ago = now - timedelta(hours=1)
    by_status = {status: n for status, n in _counts(SettlementInstruction.objects, "status")}
    recent = SettlementInstruction.objects.filter(status__in=(S.SETTLED, S.FAILED), updated_at__gte=hour_ago)
    minutes: dict[str, list[int]] = {}
    for minute, status, n in _counts(recent.annotate(minute=TruncMinute("updated_at")), "minute", "status"):
        row = minutes.setdefault(timezone.localtime(minute).strftime("%H:%M"), [0, 0])
        row[0 if status == S.SETTLED else 1] += n
    per_minute = [(label, settled, failed) for label, (settled, failed) in sorted(minutes.items())]
    stale = now - timedelta(seconds=settings.CLEARHOUSE_DASHBOARD_STUCK_AFTER_SECONDS)
    stuck = [
        SettlementInstruction.objects.filter(status=status, updated_at__lt=stale).order_by("updated_at").first()
        for status in IN_FLIGHT
    ]
    oldest = min((s for s in stuck if s is not None), key=lambda s: s.updated_at, default=None)
    stuck_count = SettlementInstruction.objects.filter(status__in=IN_FLIGHT, updated_at__lt=stale).count()
    rails = [(f"chain: {chain}", status, n) for chain, status, n in _counts(ChainTransfer.objects, "chain", "status")]
    rails += [
        (f"fiat/custody: {m or 'undecided'}", st, n)
        for m, st, n in _counts(NettedInstruction.objects, "method", "status")
    ]
    breaks = Break.objects.filter(status__in=("open", "investigating", "awaiting_approval"))
    return Dashboard(
        now=now,
        by_status={status: by_status.get(status, 0) for status in S.values},
        total=sum(by_status.values()),
        settled_last_hour=sum(row[1] for row in per_minute),
        failed_last_hour=sum(row[2] for row in per_minute),
        per_minute=per_minute,
        oldest_stuck=oldest,
        stuck_count=stuck_count,
        by_rail=sorted(rails),
        halts=list(SettlementHalt.objects.filter(lifted_at__isnull=True).select_related("asset")),
        cases_by_kind={kind: n for kind, n in _counts(ReviewCase.objects.filter(status="open"), "kind")},
        breaks_by_severity={sev: n for sev, n in _counts(breaks, "severity")},
        windows_by_status={status: n for status, n in _counts(NettingWindow.objects, "status")},
        pending_approvals=ApprovalRequest.objects.filter(status="pending").count(),
        recent_alerts=list(OpsAlert.objects.filter(~Q(level="info"))[:5]),
    )
