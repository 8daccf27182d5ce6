from django.apps import AppConfig
from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import post_migrate


def _login_failed(sender: object, credentials: dict, request: object = None, **_: object) -> None:
    """Failed admin logins go where failed API authentications go (for security review)."""
    from settlement.services.tokens import auth_failure_record

    meta = getattr(request, "META", {})
    auth_failure_record(
        channel="admin",
        who=str(credentials.get("username", "")),
        reason="wrong username or password",
        ip=meta.get("REMOTE_ADDR"),
        path=getattr(request, "path", ""),
    )


class SettlementConfig(AppConfig):
    name = "settlement"
    verbose_name = "Settlement"

    def ready(self) -> None:
        from django.core import checks

        from config.beat import beat_defaults_install
        from settlement.dbguards import guards_sync
        from settlement.dbroles import app_role_check, app_role_sync
        from settlement.roles import roles_sync

        # beat's entries appear in the admin (to edit) right after migrate, before beat first runs
        post_migrate.connect(beat_defaults_install, sender=self, dispatch_uid="beat_defaults_install")
        # the roles keep every model's permissions as models are added
        post_migrate.connect(roles_sync, sender=self, dispatch_uid="roles_sync")
        # every history table is append-only, also those of models added after the guards' migration
        post_migrate.connect(guards_sync, sender=self, dispatch_uid="audit_guards_sync")
        # the application's database role gets its privileges on the tables migrations add
        post_migrate.connect(app_role_sync, sender=self, dispatch_uid="app_role_sync")
        checks.register(app_role_check, checks.Tags.database, checks.Tags.security, deploy=True)
        user_login_failed.connect(_login_failed, dispatch_uid="admin_login_failed")
