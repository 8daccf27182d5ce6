"""Beat's schedule lives in the database (django-celery-beat), editable in the admin.

``CELERY_BEAT_SCHEDULE`` in settings only provides the defaults: an entry missing from the
database is installed from it (after ``migrate``, and when beat starts), but an entry that
exists is never written over, so a schedule ops changed in the admin (the hourly reconciliation
moved to half past, a task disabled) survives beat restarts and deployments. The stock
``DatabaseScheduler`` rewrites every entry from settings each time beat starts.
"""

from __future__ import annotations

from typing import Any

from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler


def _missing(schedule: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    present = set(PeriodicTask.objects.filter(name__in=list(schedule)).values_list("name", flat=True))
    return {name: entry for name, entry in schedule.items() if name not in present}


class EditableScheduler(DatabaseScheduler):
    def setup_schedule(self) -> None:
        self.install_default_entries(self.schedule)
        self.update_from_dict(_missing(self.app.conf.beat_schedule))


def beat_defaults_install(**_: Any) -> list[str]:
    """Install the settings' entries that the database lacks; returns their names."""
    from config.celery import app

    missing = _missing(app.conf.beat_schedule)
    for name, entry in missing.items():
        EditableScheduler.Entry.from_entry(name, app=app, **entry)
    return sorted(missing)
