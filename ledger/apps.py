from django.apps import AppConfig
from django.db.models.signals import post_migrate


class LedgerConfig(AppConfig):
    name = "ledger"
    verbose_name = "Ledger"

    def ready(self) -> None:
        from ledger.dbguards import guards_sync

        # every history table is append-only, also those of models added after the guards' migration
        post_migrate.connect(guards_sync, sender=self, dispatch_uid="audit_guards_sync")
