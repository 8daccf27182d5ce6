from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SettlementConfig(AppConfig):
    name = "settlement"
    verbose_name = "Settlement"

    def ready(self) -> None:
        from config.beat import beat_defaults_install
        from settlement.roles import roles_sync

        # beat's entries appear in the admin (to edit) right after migrate, before beat first runs
        post_migrate.connect(beat_defaults_install, sender=self, dispatch_uid="beat_defaults_install")
        # the roles keep every model's permissions as models are added
        post_migrate.connect(roles_sync, sender=self, dispatch_uid="roles_sync")
