from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from django.core import checks

        from common.ports import ports_register
        from ops.dbroles import app_role_check, app_role_sync
        from ops.ports import approval_pending, case_exists
        from ops.roles import roles_sync
        from ops.services.alerts import ops_alert
        from ops.services.approvals import approval_propose, approver_require, permission_require
        from ops.services.cases import case_open, escalate, instruction_escalate, notify

        # the lower layers open cases, notify and alert through common.ports
        ports_register(
            case_open=case_open,
            escalate=escalate,
            notify=notify,
            ops_alert=ops_alert,
            permission_require=permission_require,
            approver_require=approver_require,
            approval_propose=approval_propose,
            approval_pending=approval_pending,
            case_exists=case_exists,
            instruction_escalate=instruction_escalate,
        )
        # the roles keep every model's permissions as models are added
        post_migrate.connect(roles_sync, sender=self, dispatch_uid="roles_sync")
        # the application's database role gets its privileges on the tables migrations add
        post_migrate.connect(app_role_sync, sender=self, dispatch_uid="app_role_sync")
        checks.register(app_role_check, checks.Tags.database, checks.Tags.security, deploy=True)
