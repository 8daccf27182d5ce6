from typing import Any

from rest_framework.routers import DefaultRouter

from settlement.api.views import BalanceViewSet, FeePreviewView, InstructionViewSet, StatementView, TradeViewSet


class ApiRouter(DefaultRouter):
    """A detail route takes any id without a slash, so the view answers a malformed one with the
    API's JSON 404 (the default ``[^/.]+`` left ``/trades/1.5/`` to Django's HTML 404, even with DEBUG)."""

    def get_lookup_regex(self, viewset: Any, lookup_prefix: str = "") -> str:
        lookup_field = getattr(viewset, "lookup_field", "pk")
        lookup_url_kwarg = getattr(viewset, "lookup_url_kwarg", None) or lookup_field
        value_regex = getattr(viewset, "lookup_value_regex", "[^/]+")
        return f"(?P<{lookup_prefix}{lookup_url_kwarg}>{value_regex})"


def settlement_routes_register(router: DefaultRouter) -> None:
    """Settlement's API routes; ``config.api_urls`` mounts them with netting's on one router."""
    router.register("trades", TradeViewSet, basename="trade")
    router.register("instructions", InstructionViewSet, basename="instruction")
    router.register("balances", BalanceViewSet, basename="balance")
    router.register("fees/preview", FeePreviewView, basename="fee-preview")
    router.register("statements", StatementView, basename="statement")
