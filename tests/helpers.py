"""Test helpers shared across apps: admin page smoke checks, a real Celery worker process, and a
camt.054 credit on the house USD account."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from config.celery import worker_argv
from rails.formats import iso20022

ROOT = Path(__file__).resolve().parents[1]
HOUSE_USD = "4400123456"  # the house's USD account in config/settings.py


def assert_admin_pages_render(client, app_label: str) -> None:
    """Every changelist of ``app_label`` and the detail page of its first row answer 200."""
    for model in admin.site._registry:
        if model._meta.app_label != app_label:
            continue
        info = (model._meta.app_label, model._meta.model_name)
        assert client.get(reverse("admin:{}_{}_changelist".format(*info))).status_code == 200, model
        obj = model.objects.first()
        if obj is not None:
            assert client.get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk])).status_code == 200, model


def start_worker(name: str, env: dict[str, str]) -> subprocess.Popen:
    """A real Celery worker process on the test database and broker, with ``env`` on top."""
    db = connection.settings_dict
    full_env = os.environ | {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_VISIBILITY_TIMEOUT": "5",
        **env,
    }
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        worker_argv(sys.executable, name),
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def house_usd_credit(
    *, reference: str, amount: str, entry_ref: str, value_date: date | None = None, counterparty: str = ""
) -> bytes:
    """A camt.054 booking a credit on the house USD account, carrying ``reference``."""
    booking = iso20022.Booking(
        entry_ref=entry_ref,
        account=HOUSE_USD,
        amount=Decimal(amount),
        currency="USD",
        credit_debit="CRDT",
        booking_date=timezone.localdate(),
        value_date=value_date or timezone.localdate(),
        end_to_end_id=reference,
        counterparty_account=counterparty,
    )
    return iso20022.build_camt054(
        message_id=f"N{entry_ref}", created_at=datetime.now(UTC), account=HOUSE_USD, currency="USD", bookings=[booking]
    )


def staff_user(django_user_model: Any, username: str, *roles: str) -> Any:
    """A staff login in the given roles (groups installed by the roles migration)."""
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.groups.set(Group.objects.filter(name__in=roles))
    assert user.groups.count() == len(roles), roles
    return user
