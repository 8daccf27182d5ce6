"""Row locks of operations: review cases, notifications, alerts, four-eyes requests and the
reference rows an approved change rewrites.

These rows sit outside the settlement chain of the global lock order (stated in
``ledger.locking``): each is locked alone, one row per transaction, except that escalating an
instruction locks the instruction (``settlement.locking``) before it opens its case, and an
approved change locks its request before the record it rewrites. Every helper returns a query:
the lock is taken when the caller runs it.
"""

from __future__ import annotations

from typing import TypeVar

from django.db import models
from django.db.models import QuerySet

from ops.models import ApprovalRequest, Notification, OpsAlert, ReviewCase

M = TypeVar("M", bound=models.Model)


def lock_case(pk: int) -> QuerySet[ReviewCase]:
    return ReviewCase.objects.select_for_update().filter(pk=pk)


def lock_notification(pk: int) -> QuerySet[Notification]:
    return Notification.objects.select_for_update().filter(pk=pk)


def lock_alert(pk: int) -> QuerySet[OpsAlert]:
    return OpsAlert.objects.select_for_update().filter(pk=pk)


def lock_approval_request(pk: int) -> QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.select_for_update().filter(pk=pk)


def lock_change_target(model: type[M], pk: object) -> QuerySet[M]:
    """The reference-data record an approved four-eyes change rewrites, FOR UPDATE."""
    return model._default_manager.select_for_update().filter(pk=pk)
