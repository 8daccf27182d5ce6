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
