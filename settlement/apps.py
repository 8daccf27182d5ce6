from django.apps import AppConfig
from django.contrib.auth.signals import user_login_failed


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
        user_login_failed.connect(_login_failed, dispatch_uid="admin_login_failed")
