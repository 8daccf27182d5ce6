"""Run reports: the breaks a run saw as CSV, and an SVG chart of matched vs breaks over runs
(rendered on the server: no chart library, nothing fetched from outside)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from django.db.models import Q
from django.utils.html import escape

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
    writer = csv.writer(out)
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
    runs = list(runs)
    if not runs:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="720" height="20"><text y="15">no runs yet</text></svg>'
    totals = [(r.pk, r.totals.get("matched", 0), sum(r.totals.get("breaks", {}).values())) for r in runs]
    top = max(m + b for _, m, b in totals) or 1
    bar = max(4, (width - 40) // len(totals) - 2)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30}" role="img">']
    parts.append(f'<text x="0" y="12" font-size="11">matched (green) and breaks (red) per run; max {top}</text>')
    for n, (pk, matched, breaks) in enumerate(totals):
        x = 20 + n * (bar + 2)
        h_m = round(matched / top * height)
        h_b = round(breaks / top * height)
        base = height + 20
        parts.append(
            f'<rect x="{x}" y="{base - h_m}" width="{bar}" height="{h_m}" fill="#3a7">'
            f"<title>run {pk}: {matched} matched</title></rect>"
        )
        parts.append(
            f'<rect x="{x}" y="{base - h_m - h_b}" width="{bar}" height="{h_b}" fill="#c33">'
            f"<title>run {pk}: {breaks} breaks</title></rect>"
        )
        parts.append(f'<text x="{x}" y="{base + 10}" font-size="8">{escape(str(pk))}</text>')
    parts.append("</svg>")
    return "".join(parts)
