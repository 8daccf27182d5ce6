from django.apps import AppConfig


class NettingConfig(AppConfig):
    name = "netting"
    verbose_name = "Netting"

    def ready(self) -> None:
        from common.ports import ports_register
        from netting.selectors import leg_net_payment_ids
        from netting.services import netting_windows_for, window_hold_open

        # settlement (below netting) puts legs in windows and reads a leg's net payments through common.ports
        ports_register(
            netting_windows_for=netting_windows_for,
            window_hold_open=window_hold_open,
            leg_net_payment_ids=leg_net_payment_ids,
        )
