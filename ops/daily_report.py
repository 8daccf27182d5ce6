"""The daily settlement report: what settled (count and value per rail and asset), what failed
and why, netting efficiency (gross legs and value against net payments), fees earned (and costs
passed on at cost: gas, bank charges), and
reconciliation breaks opened, closed and still open; with a chart of settled and failed per
hour. Every figure is one aggregate query (GROUP BY in PostgreSQL); no row is loaded into
Python to be counted."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils import timezone

from common.actors import Actor, actor_label
from common.charts import stacked_bars_svg
from common.money import format_amount
from ops.models import DailyReport

_SETTLED = """
SELECT CASE WHEN i.netting_window_id IS NOT NULL THEN 'netted'
            WHEN EXISTS (SELECT 1 FROM settlement_chaintransfer c
                         WHERE c.instruction_id = i.id AND c.status = 'confirmed') THEN 'chain: ' || a.chain
            ELSE 'ledger' END AS rail,
       a.code, COUNT(*), SUM(i.amount), MAX(a.precision)
FROM settlement_settlementinstruction i JOIN settlement_asset a ON a.id = i.asset_id
WHERE i.status = 'settled' AND i.updated_at >= %(start)s AND i.updated_at < %(end)s
GROUP BY 1, 2 ORDER BY 1, 2
"""

_FAILED = """
SELECT LEFT(COALESCE(NULLIF(failure_reason, ''), 'no reason given'), 120), COUNT(*)
FROM settlement_settlementinstruction
WHERE status = 'failed' AND updated_at >= %(start)s AND updated_at < %(end)s
GROUP BY 1 ORDER BY 2 DESC LIMIT 20
"""

_PER_HOUR = """
SELECT EXTRACT(HOUR FROM updated_at AT TIME ZONE 'UTC')::int, status, COUNT(*)
FROM settlement_settlementinstruction
WHERE status IN ('settled', 'failed') AND updated_at >= %(start)s AND updated_at < %(end)s
GROUP BY 1, 2
"""

_NETTING = """
SELECT a.code, SUM(o.legs), SUM(o.pays), SUM(GREATEST(-o.net, 0)), COUNT(*) FILTER (WHERE o.net <> 0),
       MAX(a.precision)
FROM netting_netobligation o
JOIN netting_nettingwindow w ON w.id = o.window_id
JOIN settlement_asset a ON a.id = o.asset_id
WHERE w.closed_at >= %(start)s AND w.closed_at < %(end)s
GROUP BY a.code ORDER BY a.code
"""

_FEES = """
SELECT a.code, COUNT(*) FILTER (WHERE f.kind = 'schedule'), COALESCE(SUM(f.fee) FILTER (WHERE f.kind = 'schedule'), 0),
       COALESCE(SUM(f.fee) FILTER (WHERE f.kind = 'pass_through'), 0), MAX(a.precision)
FROM settlement_feecharge f JOIN settlement_asset a ON a.id = f.asset_id
WHERE f.status = 'posted' AND f.posted_at >= %(start)s AND f.posted_at < %(end)s
GROUP BY a.code ORDER BY a.code
"""

_BREAKS = """
SELECT
  (SELECT COUNT(*) FROM reconciliation_break b JOIN reconciliation_reconciliationrun r ON r.id = b.first_run_id
   WHERE r.started_at >= %(start)s AND r.started_at < %(end)s),
  (SELECT COUNT(DISTINCT h.id) FROM reconciliation_historicalbreak h
   WHERE h.status IN ('resolved', 'written_off') AND h.history_date >= %(start)s AND h.history_date < %(end)s),
  (SELECT COUNT(*) FROM reconciliation_break WHERE status IN ('open', 'investigating', 'awaiting_approval'))
"""


def _money(value: Decimal | None, precision: int) -> str:
    return format_amount(value or Decimal(0), precision)


def daily_figures(*, day: date) -> dict[str, Any]:
    params = {"start": datetime.combine(day, datetime.min.time(), UTC)}
    params["end"] = params["start"] + timedelta(days=1)
    with connection.cursor() as cursor:
        cursor.execute(_SETTLED, params)
        settled = [
            {"rail": rail, "asset": code, "count": n, "value": _money(value, precision)}
            for rail, code, n, value, precision in cursor.fetchall()
        ]
        cursor.execute(_FAILED, params)
        failures = [{"reason": reason, "count": n} for reason, n in cursor.fetchall()]
        cursor.execute(_PER_HOUR, params)
        hours = {h: [0, 0] for h in range(24)}
        for hour, status, n in cursor.fetchall():
            hours[hour][0 if status == "settled" else 1] += n
        cursor.execute(_NETTING, params)
        netting = []
        for code, legs, gross, net, payments, precision in cursor.fetchall():
            saved = Decimal(0) if not gross else (1 - (net or 0) / gross) * 100
            netting.append(
                {
                    "asset": code,
                    "gross_legs": int(legs or 0),
                    "net_payments": payments,
                    "gross_value": _money(gross, precision),
                    "net_value": _money(net, precision),
                    "value_saved_percent": f"{saved:.1f}",
                }
            )
        cursor.execute(_FEES, params)
        fees = [
            {"asset": code, "charges": n, "earned": _money(total, precision), "passed_on": _money(costs, precision)}
            for code, n, total, costs, precision in cursor.fetchall()
        ]
        cursor.execute(_BREAKS, params)
        opened, closed, still_open = cursor.fetchone()
    settled_count = sum(row["count"] for row in settled)
    failed_count = sum(row["count"] for row in failures)
    return {
        "day": day.isoformat(),
        "settled": settled,
        "settled_count": settled_count,
        "failed_count": failed_count,
        "failure_rate_percent": f"{(100 * failed_count / (settled_count + failed_count)):.2f}"
        if settled_count + failed_count
        else "0.00",
        "failures": failures,
        "per_hour": [[h, s, f] for h, (s, f) in sorted(hours.items())],
        "netting": netting,
        "fees": fees,
        "breaks": {"opened": opened, "closed": closed, "open": still_open},
    }


def daily_report_build(*, day: date, actor: Actor) -> DailyReport:
    """Generate (or regenerate) the report of ``day`` (UTC)."""
    started = time.perf_counter()
    figures = daily_figures(day=day)
    chart = stacked_bars_svg(
        [(f"{h:02d}", (s, f)) for h, s, f in figures["per_hour"]],
        series=(("settled", "#3a7"), ("failed", "#c33")),
        caption=f"instructions settled and failed per hour (UTC), {day.isoformat()}",
        label_every=3,
    )
    report, _ = DailyReport.objects.update_or_create(
        day=day,
        defaults={
            "figures": figures,
            "chart_svg": chart,
            "generated_at": timezone.now(),
            "generated_by": actor_label(actor),
            "seconds": time.perf_counter() - started,
        },
    )
    return report
