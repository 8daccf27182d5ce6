"""Beat's schedule is editable in the admin: settings only supply the entries the database lacks."""

from __future__ import annotations

import pytest
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from config.beat import EditableScheduler, beat_defaults_install
from config.celery import app


@pytest.mark.django_db(transaction=True)  # the scheduler commits and recycles its connection, as beat does
def test_an_entry_edited_in_the_admin_survives_beat_restarts():
    PeriodicTask.objects.all().delete()
    installed = beat_defaults_install()
    assert "reconciliation-hourly" in installed and beat_defaults_install() == []
    hourly = PeriodicTask.objects.get(name="reconciliation-hourly")
    assert (hourly.crontab.minute, hourly.crontab.hour) == ("0", "*/1")
    assert hourly.task == "reconciliation.tasks.reconciliation_run_task"

    # ops move the hourly run to half past and disable the chain fetch
    hourly.crontab = CrontabSchedule.objects.create(minute="30", hour="*", timezone="UTC")
    hourly.save()
    PeriodicTask.objects.filter(name="chain-lists-fetch").update(enabled=False)
    PeriodicTask.objects.filter(name="webhooks-retry").delete()  # and one entry got lost

    scheduler = EditableScheduler(app=app, lazy=True)
    scheduler.setup_schedule()
    hourly.refresh_from_db()
    assert hourly.crontab.minute == "30"
    assert not PeriodicTask.objects.get(name="chain-lists-fetch").enabled
    assert PeriodicTask.objects.filter(name="webhooks-retry").exists()  # defaults fill what is missing
    assert "reconciliation-hourly" in scheduler.all_as_schedule()


@pytest.mark.django_db
def test_the_admin_lists_the_schedule(admin_client):
    beat_defaults_install()
    page = admin_client.get("/admin/django_celery_beat/periodictask/")
    assert page.status_code == 200 and b"reconciliation-hourly" in page.content


@pytest.mark.django_db
def test_beat_migration_moves_sweepers_at_their_old_defaults_to_the_recovery_interval(settings):
    # given: a deployment whose sweepers were installed at the old intervals, one edited by ops
    from importlib import import_module

    from django.apps import apps
    from django_celery_beat.models import IntervalSchedule

    migration = import_module("settlement.migrations.0020_beat_sweepers_at_the_recovery_interval")
    PeriodicTask.objects.all().delete()
    old30 = IntervalSchedule.objects.create(every=30, period="seconds")
    old60 = IntervalSchedule.objects.create(every=60, period="seconds")
    edited = IntervalSchedule.objects.create(every=120, period="seconds")
    PeriodicTask.objects.create(name="crypto-sweep-stuck", task="settlement.tasks.crypto_sweep_task", interval=old30)
    PeriodicTask.objects.create(name="webhooks-retry", task="settlement.tasks.webhooks_retry_task", interval=old60)
    PeriodicTask.objects.create(name="netting-payments-sweep", task="netting.tasks.netted_sweep_task", interval=edited)
    # when
    migration.sweepers_to_recovery_interval(apps, None)
    # then: the defaults move, the ops choice stays
    every = {t.name: t.interval.every for t in PeriodicTask.objects.select_related("interval")}
    assert every == {
        "crypto-sweep-stuck": settings.CLEARHOUSE_SWEEP_EVERY_SECONDS,
        "webhooks-retry": settings.CLEARHOUSE_SWEEP_EVERY_SECONDS,
        "netting-payments-sweep": 120,
    }
