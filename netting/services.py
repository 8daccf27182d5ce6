"""Netting: put legs in windows at ingest, close windows with set-based obligations, caps.

Everything here runs in the caller's transaction or its own ``atomic`` block and touches legs
only through aggregate SQL: the number of statements does not grow with the number of trades.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from common.actors import Actor, SystemActor, actor_label, stamp_history
from common.money import format_amount
from ledger.services.audit import LogEntry, transition_log_append
from netting.locking import lock_window, lock_window_shared
from netting.models import NetDebitCap, NetObligation, NettingWindow, WindowStatus
from reference.models import Asset

logger = logging.getLogger(__name__)
NETTING = SystemActor("netting")


def window_length(asset_class: str) -> timedelta:
    minutes = settings.CLEARHOUSE_NETTING_WINDOW_MINUTES
    return timedelta(minutes=float(minutes.get(asset_class, minutes.get("default", 15))))


def _open_window(asset_class: str, *, now: datetime | None = None) -> NettingWindow:
    """The open window of the class, created when there is none (race-safe: one open per class)."""
    window = NettingWindow.objects.filter(asset_class=asset_class, status=WindowStatus.OPEN).first()
    if window is not None:
        return window
    now = now or timezone.now()
    try:
        with transaction.atomic():
            window = NettingWindow(asset_class=asset_class, opened_at=now, closes_at=now + window_length(asset_class))
            stamp_history(window, actor=NETTING, reason="window opened")
            window.save()
            return window
    except IntegrityError:  # another transaction opened it first
        return NettingWindow.objects.get(asset_class=asset_class, status=WindowStatus.OPEN)


def _share_lock_open(window_id: int) -> bool:
    """FOR SHARE on the window row: waits while it is being closed; True if still open after."""
    return lock_window_shared(window_id) == WindowStatus.OPEN


def window_hold_open(*, window_id: int) -> bool:
    """Share-lock a window row for the rest of the caller's transaction and say whether it is
    still open. ``window_close`` takes the row FOR UPDATE, so a close waits for the caller to
    commit, and a caller that comes after a close (or waits behind one) sees it closed. Services
    that change legs of an open window (ingest, cancel) take this first, before any leg row."""
    if connection.vendor != "postgresql":  # the SQLite demo: no row locks, the status is enough
        return NettingWindow.objects.filter(pk=window_id, status=WindowStatus.OPEN).exists()
    return _share_lock_open(window_id)


def netting_windows_for(asset_classes: set[str]) -> dict[str, int]:
    """The open window of each class, share-locked for the rest of the caller's transaction (the
    ingest's), so none of them can close until the legs put in it are committed."""
    windows: dict[str, int] = {}
    for asset_class in sorted(asset_classes):
        for _ in range(5):
            window = _open_window(asset_class)
            if connection.vendor != "postgresql" or _share_lock_open(window.pk):
                break
        else:  # pragma: no cover - five windows closed under us in a row
            raise RuntimeError(f"could not find an open {asset_class} netting window")
        windows[asset_class] = window.pk
    return windows


_OBLIGATIONS_SQL = """
INSERT INTO netting_netobligation
    (window_id, participant_id, asset_id, settlement_date, pays, receives, net, legs, held)
SELECT %(window)s, participant_id, asset_id, settlement_date,
       SUM(pays), SUM(receives), SUM(receives) - SUM(pays), SUM(legs), FALSE
FROM (
    SELECT payer_id AS participant_id, asset_id, settlement_date,
           SUM(amount) AS pays, 0 AS receives, COUNT(*) AS legs
    FROM settlement_settlementinstruction
    WHERE netting_window_id = %(window)s AND status = ANY(%(live)s)
    GROUP BY payer_id, asset_id, settlement_date
    UNION ALL
    SELECT payee_id, asset_id, settlement_date, 0, SUM(amount), COUNT(*)
    FROM settlement_settlementinstruction
    WHERE netting_window_id = %(window)s AND status = ANY(%(live)s)
    GROUP BY payee_id, asset_id, settlement_date
) AS sides
GROUP BY participant_id, asset_id, settlement_date
"""

_SUMMARY_SQL = """
SELECT asset_id, COUNT(*), SUM(amount) FROM settlement_settlementinstruction
WHERE netting_window_id = %(window)s AND status = ANY(%(live)s) GROUP BY asset_id
"""

_NET_SQL = """
SELECT asset_id, COUNT(*) FILTER (WHERE net <> 0), COALESCE(SUM(net) FILTER (WHERE net > 0), 0),
       SUM(net)
FROM netting_netobligation WHERE window_id = %(window)s GROUP BY asset_id
"""

_HOLD_SQL = """
UPDATE netting_netobligation o SET held = TRUE
FROM netting_netdebitcap c
WHERE o.window_id = %(window)s AND c.participant_id = o.participant_id AND c.asset_id = o.asset_id
  AND -o.net > c.cap
RETURNING o.id
"""


def window_close(*, window: NettingWindow, actor: Actor = NETTING) -> NettingWindow:
    """Close ``window``: wait for every in-flight ingest that is adding legs to it, open the next
    window of the class, compute net obligations and the plan's totals set-based, hold what
    breaches a net debit cap and escalate it. A closed window is left as it is (idempotent)."""
    from common.choices import InstructionStatus as S

    with transaction.atomic():
        window = lock_window(window.pk).get()
        if window.status != WindowStatus.OPEN:
            return window
        now = timezone.now()
        window.mark_closed()
        window.closed_at = now
        window.closed_by = actor_label(actor)
        window.save()
        _open_window(window.asset_class, now=now)
        params: dict[str, Any] = {"window": window.pk, "live": [S.PENDING, S.LOCKED]}
        with connection.cursor() as cursor:
            cursor.execute(_OBLIGATIONS_SQL, params)
            cursor.execute(_SUMMARY_SQL, params)
            gross = {row[0]: (int(row[1]), Decimal(row[2])) for row in cursor.fetchall()}
            cursor.execute(_NET_SQL, params)
            net = {row[0]: (int(row[1]), Decimal(row[2]), Decimal(row[3])) for row in cursor.fetchall()}
            cursor.execute(_HOLD_SQL, params)
            held_ids = [row[0] for row in cursor.fetchall()]
        assets = {a.pk: a for a in Asset.objects.filter(pk__in=list(gross))}
        summary: dict[str, dict[str, Any]] = {}
        for asset_id, (legs, value) in gross.items():
            payments, net_value, total = net.get(asset_id, (0, Decimal(0), Decimal(0)))
            if total != 0:  # cannot happen: every leg has a payer and a payee
                raise RuntimeError(f"obligations of window {window.pk} do not sum to zero for asset {asset_id}")
            asset = assets[asset_id]
            summary[asset.code] = {
                "gross_legs": legs,
                "gross_value": format_amount(value, asset.precision),
                "net_payments": payments,
                "net_value": format_amount(net_value, asset.precision),
            }
        window.summary = summary
        window.gross_legs = sum(legs for legs, _ in gross.values())
        window.net_payments = sum(item["net_payments"] for item in summary.values())
        stamp_history(window, actor=actor, reason="window closed")
        window.save()
        transition_log_append(
            entries=[
                LogEntry(
                    "nettingwindow",
                    window.pk,
                    WindowStatus.OPEN,
                    WindowStatus.CLOSED,
                    "window closed",
                    {"gross_legs": window.gross_legs, "net_payments": window.net_payments},
                )
            ],
            actor=actor,
        )
        if held_ids:
            _escalate_held(window, held_ids)
        from netting.pipeline.plan import plan_create

        plan_create(window=window, actor=actor)
        return window


def _escalate_held(window: NettingWindow, held_ids: list[int]) -> None:
    from common.choices import CaseKind
    from common.ports import case_open

    by_participant: dict[int, list[NetObligation]] = defaultdict(list)
    for obligation in NetObligation.objects.filter(pk__in=held_ids).select_related("participant", "asset"):
        by_participant[obligation.participant_id].append(obligation)
    caps = {
        (c.participant_id, c.asset_id): c.cap
        for c in NetDebitCap.objects.filter(participant_id__in=list(by_participant))
    }
    for obligations in by_participant.values():
        first = obligations[0]
        detail = ", ".join(
            f"owes {format_amount(-o.net, o.asset.precision)} {o.asset.code} "
            f"(cap {format_amount(caps[(o.participant_id, o.asset_id)], o.asset.precision)})"
            for o in obligations
        )
        case_open(
            kind=CaseKind.ESCALATION,
            reason=f"net debit cap breached in {window}: {first.participant.code} {detail}; payments held",
            dedupe_key=f"netcap:{window.pk}:{first.participant_id}",
        )


def windows_due(*, now: object = None) -> list[NettingWindow]:
    return list(
        NettingWindow.objects.filter(status=WindowStatus.OPEN, closes_at__lte=now or timezone.now()).order_by("pk")
    )


def windows_close_due(*, actor: Actor = NETTING) -> list[int]:
    """What Celery beat runs: close every window past its time (and open the next ones)."""
    closed = []
    for window in windows_due():
        window_close(window=window, actor=actor)
        closed.append(window.pk)
    return closed
