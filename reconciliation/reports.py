"""Run reports: the breaks a run saw as CSV, and an SVG chart of matched vs breaks over runs
(rendered on the server: no chart library, nothing fetched from outside)."""

from __future__ import annotations

import io
from collections.abc import Iterable

from django.db.models import Q

from common.exports import SafeCsvWriter
from reconciliation.models import Break, ReconciliationRun

CSV_COLUMNS = [
    "break",
    "kind",
    "severity",
    "status",
    "reference",
    "account",
    "asset",
    "expected",
    "found",
    "difference",
    "first_run",
    "last_run",
    "resolution",
]


def run_breaks_csv(run: ReconciliationRun) -> str:
    """Every break the run found (new or seen again), one row each."""
    out = io.StringIO()
    writer = SafeCsvWriter(out)
    writer.writerow(CSV_COLUMNS)
    for b in Break.objects.filter(Q(first_run=run) | Q(last_run=run)).order_by("pk"):
        writer.writerow(
            [
                b.pk,
                b.kind,
                b.severity,
                b.status,
                b.reference,
                b.account,
                b.asset_code,
                b.expected if b.expected is not None else "",
                b.found if b.found is not None else "",
                b.difference if b.difference is not None else "",
                b.first_run_id,
                b.last_run_id,
                b.resolution,
            ]
        )
    return out.getvalue()


def runs_chart_svg(runs: Iterable[ReconciliationRun], *, width: int = 720, height: int = 160) -> str:
    """Stacked bars per run, oldest left: matched (green) and breaks (red), scaled to the largest."""
    from common.charts import stacked_bars_svg

    return stacked_bars_svg(
        [(f"run {r.pk}", (r.totals.get("matched", 0), sum(r.totals.get("breaks", {}).values()))) for r in runs],
        series=(("matched", "#3a7"), ("breaks", "#c33")),
        caption="per run",
        width=width,
        height=height,
    )
