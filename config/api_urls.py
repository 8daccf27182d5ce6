"""The REST API's routes (``/api/v1/``): settlement's, then netting's, on one router so the API
root lists them all. Netting sits above settlement, so the top layer mounts both."""

from netting.api import netting_routes_register
from settlement.api.urls import ApiRouter, settlement_routes_register

router = ApiRouter()
settlement_routes_register(router)
netting_routes_register(router)

urlpatterns = router.urls
