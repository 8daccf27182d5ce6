from django.contrib.admin.apps import AdminConfig
from django.db.models.signals import post_migrate


class ClearhouseAdminConfig(AdminConfig):
    """django.contrib.admin with the second-factor site; as the project's own app config (the
    first installed app) it also installs the beat schedule's defaults after ``migrate``."""

    default_site = "config.admin_site.ClearhouseAdminSite"

    def ready(self) -> None:
        super().ready()
        from config.beat import beat_defaults_install

        # beat's entries appear in the admin (to edit) right after migrate, before beat first runs
        post_migrate.connect(beat_defaults_install, sender=self, dispatch_uid="beat_defaults_install")
