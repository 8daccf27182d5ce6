from django.apps import AppConfig


class NettingConfig(AppConfig):
    name = "netting"
    verbose_name = "Netting"
