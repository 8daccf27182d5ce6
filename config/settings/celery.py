"""Celery: recovery budgets (sweepers, visibility timeout, retries), the broker, routing and the
beat schedule."""

from __future__ import annotations

import os
from datetime import timedelta

from celery.schedules import crontab

from .base import env_bool

# --- Recovery (crashed worker, restarted broker, lost task, dead database connection) ----------
# Every pipeline is back at work within ~30 s of a fault clearing, by two independent paths:
# the broker redelivers what a dead worker held, and beat's sweepers re-dispatch, from the
# database, whatever sat in a non-final state too long. Tasks are idempotent, so both at once
# are harmless. Budget: SWEEP_EVERY + STUCK_AFTER and VISIBILITY + RESTORE_EVERY at most 20 s
# each, which leaves 10 s for the work itself (tests/*/test_workers.py measure it).
CLEARHOUSE_SWEEP_EVERY_SECONDS = int(os.environ.get("CLEARHOUSE_SWEEP_EVERY_SECONDS", "5"))
# An instruction, transfer, payment, report or e-mail idle this long in a non-final state is
# re-dispatched by its sweeper.
CLEARHOUSE_STUCK_AFTER_SECONDS = int(os.environ.get("CLEARHOUSE_STUCK_AFTER_SECONDS", "15"))
# The dashboard shows an instruction as stuck (for people to look at) after this long.
CLEARHOUSE_DASHBOARD_STUCK_AFTER_SECONDS = int(os.environ.get("CLEARHOUSE_DASHBOARD_STUCK_AFTER_SECONDS", "120"))
# A task a killed worker had taken (acks_late) goes back to the queue after this many seconds;
# each worker looks for such tasks every RESTORE_EVERY seconds. Countdowns stay below the
# visibility timeout (a longer wait is a time in the database that a sweeper acts on), else
# Redis would hand the same delayed task to several workers.
CELERY_VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "15"))
CELERY_RESTORE_EVERY_SECONDS = int(os.environ.get("CELERY_RESTORE_EVERY_SECONDS", "5"))
CLEARHOUSE_COUNTDOWN_MAX_SECONDS = min(10.0, CELERY_VISIBILITY_TIMEOUT / 2)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": CELERY_RESTORE_EVERY_SECONDS,
    "unacked_restore_throttle": 1,  # scan at every interval (the default scans every 10th)
    # the restore lock a killed worker held frees itself quickly (default 5 minutes)
    "unacked_mutex_expire": CELERY_VISIBILITY_TIMEOUT,
    "socket_timeout": 10,  # a publish on a dead connection fails instead of hanging
    "socket_connect_timeout": 5,
    "health_check_interval": 10,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker outlives a broker restart of any length
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}
# Tasks retry a named transient database error (config/celery.py: TRANSIENT_DB_ERRORS) this many
# times with exponential backoff (jitter, capped); then the sweepers own the work.
CLEARHOUSE_TASK_DB_RETRIES = int(os.environ.get("CLEARHOUSE_TASK_DB_RETRIES", "5"))
# A dead SMTP server costs a worker at most this long; the alert e-mail is re-sent by a sweep.
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
CLEARHOUSE_ALERT_EMAIL_MAX_ATTEMPTS = int(os.environ.get("CLEARHOUSE_ALERT_EMAIL_MAX_ATTEMPTS", "20"))
# Webhook retry schedule (seconds after the previous attempt, the last repeats): it spans more
# than an hour, so a receiver down for 15 minutes loses nothing; giving up raises an ops alert.
CLEARHOUSE_WEBHOOK_RETRY_SCHEDULE = [10, 30, 60, 120, 300, 600, 900, 1800]
CLEARHOUSE_WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("CLEARHOUSE_WEBHOOK_MAX_ATTEMPTS", "12"))

# --- Celery --------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
# No broker configured: run tasks in-process (demo mode). With a broker, tasks go to workers.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Confirmation checks are short and settle trades: their own queue, so they never wait behind
# big lock/sign/broadcast batches (workers consume both: `celery worker -Q celery,crypto.watch`).
CELERY_TASK_ROUTES = {"settlement.tasks.crypto_check_task": {"queue": "crypto.watch"}}
CELERY_BEAT_SCHEDULER = "config.beat:EditableScheduler"  # settings give defaults; the admin edits
CELERY_BEAT_SCHEDULE = {
    "ledger-void-expired-locks": {
        "task": "settlement.tasks.ledger_void_expired_locks_task",
        "schedule": timedelta(minutes=1),
    },
    "crypto-sweep-stuck": {
        "task": "settlement.tasks.crypto_sweep_task",
        "schedule": timedelta(seconds=CLEARHOUSE_SWEEP_EVERY_SECONDS),
    },
    "webhooks-retry": {
        "task": "settlement.tasks.webhooks_retry_task",
        "schedule": timedelta(seconds=CLEARHOUSE_SWEEP_EVERY_SECONDS),
    },
    "netting-close-windows": {
        "task": "netting.tasks.netting_close_windows_task",
        "schedule": timedelta(minutes=1),
    },
    "netting-payments-sweep": {
        "task": "netting.tasks.netted_sweep_task",
        "schedule": timedelta(seconds=CLEARHOUSE_SWEEP_EVERY_SECONDS),
    },
    "ops-alerts-email-sweep": {
        "task": "settlement.tasks.ops_alerts_email_sweep_task",
        "schedule": timedelta(seconds=CLEARHOUSE_SWEEP_EVERY_SECONDS),
    },
    "rail-reports-fetch": {
        "task": "netting.tasks.rail_reports_fetch_task",
        "schedule": timedelta(seconds=15),
    },
    "custody-buy-in-check": {
        "task": "netting.tasks.custody_buy_in_check_task",
        "schedule": crontab(minute=5),
    },
    "rail-reports-record": {
        "task": "reconciliation.tasks.rail_reports_record_task",
        "schedule": timedelta(minutes=5),
    },
    "chain-lists-fetch": {
        "task": "reconciliation.tasks.chain_lists_fetch_task",
        "schedule": timedelta(minutes=5),
    },
    "reconciliation-hourly": {
        "task": "reconciliation.tasks.reconciliation_run_task",
        "schedule": crontab(minute=0, hour="*/1"),
    },
    "bank-statements-fetch": {
        "task": "reconciliation.tasks.bank_statements_fetch_task",
        "schedule": crontab(hour=1, minute=30),
    },
    "daily-settlement-report": {
        "task": "settlement.tasks.daily_report_task",
        "schedule": crontab(hour=23, minute=55),
    },
    "transition-log-verify": {
        "task": "settlement.tasks.transition_log_verify_task",
        "schedule": crontab(minute=17),
    },
    "transition-log-anchor": {
        "task": "settlement.tasks.transition_log_anchor_task",
        "schedule": timedelta(minutes=1),
    },
    "ledger-verify-balances": {
        "task": "settlement.tasks.ledger_verify_balances_task",
        "schedule": crontab(minute=23),
    },
}
