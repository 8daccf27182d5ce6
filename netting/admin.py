from __future__ import annotations

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from netting.models import NetDebitCap, NetObligation, NettingWindow
from settlement.admin import ReadOnlyAdminMixin


class ObligationInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = NetObligation
    fields = ("participant", "asset", "settlement_date", "pays", "receives", "net", "legs", "held")
    readonly_fields = fields
    extra = 0
    show_change_link = False


@admin.register(NettingWindow)
class NettingWindowAdmin(ReadOnlyAdminMixin, SimpleHistoryAdmin):
    """Windows are opened and closed by Celery beat only; a closed window is a record."""

    list_display = ("id", "asset_class", "status", "opened_at", "closes_at", "closed_at", "gross_legs", "net_payments")
    list_filter = ("asset_class", "status")
    date_hierarchy = "opened_at"
    readonly_fields = (
        "asset_class",
        "status",
        "opened_at",
        "closes_at",
        "closed_at",
        "closed_by",
        "gross_legs",
        "net_payments",
        "summary",
    )
    inlines = [ObligationInline]


@admin.register(NetObligation)
class NetObligationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("window", "participant", "asset", "settlement_date", "pays", "receives", "net", "held")
    list_filter = ("held", "asset", "window__asset_class")
    search_fields = ("participant__code",)
    list_select_related = ("window", "participant", "asset")


@admin.register(NetDebitCap)
class NetDebitCapAdmin(SimpleHistoryAdmin):
    """Caps are liquidity limits set by operations (every change kept in history)."""

    list_display = ("participant", "asset", "cap")
    list_filter = ("asset",)
    search_fields = ("participant__code",)
