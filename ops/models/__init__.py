from ops.models.alerts import AlertLevel, OpsAlert
from ops.models.approvals import ApprovalKind, ApprovalRequest, ApprovalStatus
from ops.models.cases import Notification, ReviewCase
from ops.models.reports import DailyReport

__all__ = [
    "AlertLevel",
    "ApprovalKind",
    "ApprovalRequest",
    "ApprovalStatus",
    "DailyReport",
    "Notification",
    "OpsAlert",
    "ReviewCase",
]
