from rest_framework.routers import DefaultRouter

from netting.api import NetPaymentViewSet, NettingWindowViewSet
from settlement.api.views import BalanceViewSet, FeePreviewView, InstructionViewSet, StatementView, TradeViewSet

router = DefaultRouter()
router.register("trades", TradeViewSet, basename="trade")
router.register("instructions", InstructionViewSet, basename="instruction")
router.register("balances", BalanceViewSet, basename="balance")
router.register("fees/preview", FeePreviewView, basename="fee-preview")
router.register("statements", StatementView, basename="statement")
router.register("netting-windows", NettingWindowViewSet, basename="netting-window")
router.register("net-payments", NetPaymentViewSet, basename="net-payment")

urlpatterns = router.urls
