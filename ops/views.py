"""Admin pages that are not a model's list: the operations dashboard."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.safestring import mark_safe

from common.charts import stacked_bars_svg
from ops.dashboard import dashboard_read


def dashboard(request: HttpRequest) -> TemplateResponse:
    """Counts by status and rail, the last hour's settlement and failure rate (chart per
    minute), the oldest stuck instruction, halts, open cases and breaks, windows, approvals."""
    if not request.user.has_perm("settlement.view_settlementinstruction"):
        raise PermissionDenied
    figures = dashboard_read()
    chart = stacked_bars_svg(
        [(minute, (settled, failed)) for minute, settled, failed in figures.per_minute],
        series=(("settled", "#3a7"), ("failed", "#c33")),
        caption="instructions settled and failed per minute, last hour",
        label_every=5,
    )
    context = {
        **admin.site.each_context(request),
        "title": "Operations dashboard",
        "d": figures,
        "chart": mark_safe(chart),  # noqa: S308 - built from numbers and escaped labels
    }
    return TemplateResponse(request, "admin/dashboard.html", context)
