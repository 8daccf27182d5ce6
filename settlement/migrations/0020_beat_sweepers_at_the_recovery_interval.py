"""Beat's schedule lives in the database and settings never overwrite an entry there
(config/beat.py), so a deployment that installed the sweepers at their old intervals (30 s and
a minute) would keep them and recover in minutes. Move the entries still at their old defaults
to CLEARHOUSE_SWEEP_EVERY_SECONDS; an interval ops chose in the admin is left alone."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

OLD_DEFAULT_SECONDS = {"crypto-sweep-stuck": 30, "netting-payments-sweep": 30, "webhooks-retry": 60}


def sweepers_to_recovery_interval(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    moved = 0
    for name, seconds in OLD_DEFAULT_SECONDS.items():
        task = PeriodicTask.objects.filter(name=name, interval__period="seconds", interval__every=seconds).first()
        if task is None:
            continue
        task.interval, _ = IntervalSchedule.objects.get_or_create(
            every=settings.CLEARHOUSE_SWEEP_EVERY_SECONDS, period="seconds"
        )
        task.save(update_fields=["interval"])
        moved += 1
    if moved:  # a running beat re-reads its schedule
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):
    dependencies = [
        ("settlement", "0019_webhook_schedule_and_alert_email_outbox"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(sweepers_to_recovery_interval, migrations.RunPython.noop)]
