"""Recovery mechanics: tasks retry named transient database errors (and nothing else), the
recovery settings fit the 30-second budget, and the alert e-mail goes through an outbox that a
sweep re-sends when the mail server was down or hung."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from unittest import mock

import psycopg
import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import Group
from django.core import mail
from django.db import InterfaceError, OperationalError, connection

from config.celery import advisory_key, app
from netting.tasks import netted_sweep_task
from ops.models import OpsAlert
from ops.services.alerts import ops_alert, ops_alert_email_send, ops_alerts_email_due
from ops.tasks import ops_alert_email_task
from reconciliation.tasks import reconciliation_run_task
from settlement.tasks import backoff_seconds
from tests import factories

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _flaky(exc: Exception, result: int = 3):
    calls: list[int] = []

    def run(*_args, **_kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise exc
        return result

    return run, calls


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("server closed the connection unexpectedly"),
        InterfaceError("connection already closed"),
        psycopg.OperationalError("connection refused"),
    ],
)
def test_task_retries_a_transient_database_error(exc):
    # given: the service fails once with a dropped or refused database connection
    run, calls = _flaky(exc)
    # when
    with mock.patch("netting.tasks.netted_sweep", side_effect=run):
        result = netted_sweep_task.apply(throw=False)
    # then: retried (not acked as failed), and the second run did the work
    assert result.state == "SUCCESS" and result.result == 3
    assert len(calls) == 2


def test_task_does_not_retry_other_errors():
    # given: a bug, not a transient error
    run, calls = _flaky(ValueError("bug"))
    # when
    with mock.patch("netting.tasks.netted_sweep", side_effect=run):
        result = netted_sweep_task.apply(throw=False)
    # then
    assert result.state == "FAILURE" and len(calls) == 1


def test_task_retries_are_bounded():
    # given: the database stays down and the task has used up its retries
    calls: list[int] = []

    def down():
        calls.append(1)
        raise OperationalError("the database system is starting up")

    # when
    with mock.patch("netting.tasks.netted_sweep", side_effect=down):
        result = netted_sweep_task.apply(throw=False, retries=settings.CLEARHOUSE_TASK_DB_RETRIES)
    # then: no further retry; the task fails and the sweepers own the work
    assert netted_sweep_task.max_retries == settings.CLEARHOUSE_TASK_DB_RETRIES
    assert result.state == "FAILURE" and isinstance(result.result, OperationalError) and len(calls) == 1


def test_recovery_settings_fit_the_30_second_budget():
    # given: the settings as deployed (env defaults)
    options = app.conf.broker_transport_options
    schedule = app.conf.beat_schedule
    sweepers = ("crypto-sweep-stuck", "netting-payments-sweep", "webhooks-retry", "ops-alerts-email-sweep")
    # when: the longest a piece of work can sit after a crash before someone picks it up
    by_sweeper = max(schedule[name]["schedule"].total_seconds() for name in sweepers)
    by_sweeper += settings.CLEARHOUSE_STUCK_AFTER_SECONDS
    by_redelivery = options["visibility_timeout"] + options["unacked_restore_interval"] * options.get(
        "unacked_restore_throttle", 10
    )
    # then
    assert by_sweeper <= 20 and by_redelivery <= 20  # 10 s left for the work itself
    assert options["unacked_mutex_expire"] <= 30  # a killed worker's restore lock does not block restores
    assert options["visibility_timeout"] > settings.CLEARHOUSE_COUNTDOWN_MAX_SECONDS
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True
    assert settings.EMAIL_TIMEOUT and settings.EMAIL_TIMEOUT <= 30


def test_task_countdowns_stay_below_the_visibility_timeout():
    # given: the longest backoff a retry can draw (jitter at its top)
    with mock.patch("settlement.tasks.random.uniform", side_effect=lambda _low, high: high):
        # when
        longest = max(backoff_seconds(attempt) for attempt in range(20))
    # then: Redis never hands a delayed task to a second worker while the first still holds it
    assert longest <= settings.CLEARHOUSE_COUNTDOWN_MAX_SECONDS
    assert app.conf.broker_transport_options["visibility_timeout"] > settings.CLEARHOUSE_COUNTDOWN_MAX_SECONDS


def test_singleton_task_does_nothing_while_another_copy_runs(db):
    # given: another worker is running the hourly reconciliation (it holds the task's lock), as
    # when Redis hands a run still going after the visibility timeout to a second worker
    params = connection.settings_dict
    other = psycopg.connect(
        host=params["HOST"], port=params["PORT"], user=params["USER"], dbname=params["NAME"], autocommit=True
    )
    key = advisory_key("task:reconciliation.tasks.reconciliation_run_task")
    other.execute("SELECT pg_advisory_lock(%s)", [key])
    with (
        mock.patch("reconciliation.engine.reconciliation_run") as run,
        mock.patch("reconciliation.services.reconciliation_inputs_gather"),
    ):
        # when: the second copy starts
        reconciliation_run_task.apply()
        # then: it does nothing
        assert not run.called
        # when: the first is done (its worker unlocks; had it died, the lock would go with its
        # connection, but the server lets go of it only some time after the client is gone)
        other.execute("SELECT pg_advisory_unlock(%s)", [key])
        other.close()
        reconciliation_run_task.apply()
    # then: the next copy runs
    assert run.call_count == 1


@pytest.fixture
def operator(db):
    user = factories.UserFactory(username="op", email="op@example.com", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="operator")[0])
    return user


@pytest.fixture
def dead_smtp(settings):
    """An SMTP server that accepts the connection and never answers (a hung mail server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", listener.getsockname()[1]
    settings.EMAIL_TIMEOUT = 1
    yield listener
    listener.close()


def test_ops_alert_email_survives_a_hung_mail_server_and_is_resent_by_the_sweep(
    operator, dead_smtp, settings, django_capture_on_commit_callbacks
):
    with time_machine.travel(START, tick=False) as clock:
        # given: an alert, its e-mail queued after commit (not sent in the caller)
        with (
            mock.patch("ops.tasks.ops_alert_email_task.delay") as enqueue,
            django_capture_on_commit_callbacks(execute=True),
        ):
            alert = ops_alert(title="Review case #1", body="look", dedupe_key="case:1")
        enqueue.assert_called_once_with(alert.pk)
        # when: the task runs while the mail server hangs
        assert ops_alert_email_task.apply(args=[alert.pk]).result == "retry"
        # then: the worker was released after EMAIL_TIMEOUT and the e-mail stays in the outbox
        alert.refresh_from_db()
        assert alert.email_pending and alert.email_attempts == 1 and "timed out" in alert.email_error
        assert ops_alerts_email_due() == []  # not due before its backoff

        # when: the mail server is back and the sweep runs after the backoff
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        clock.shift(timedelta(seconds=11))
        assert ops_alerts_email_due() == [alert.pk]
        assert ops_alert_email_task.apply(args=[alert.pk]).result == "sent"
    # then: sent once, and a duplicate task sends nothing
    alert.refresh_from_db()
    assert not alert.email_pending and alert.emailed == 1
    assert [m.to for m in mail.outbox] == [["op@example.com"]]
    assert ops_alert_email_send(alert_id=alert.pk) == "done" and len(mail.outbox) == 1


def test_ops_alert_email_whose_task_was_lost_is_sent_by_the_sweep(operator, settings):
    with time_machine.travel(START, tick=False) as clock:
        # given: an alert whose task never ran (the broker was down after commit)
        with mock.patch("ops.tasks.ops_alert_email_task.delay"):
            alert = ops_alert(title="Halt", level="critical")
        # when: the stuck threshold passes
        clock.shift(timedelta(seconds=settings.CLEARHOUSE_STUCK_AFTER_SECONDS + 1))
        # then: the sweep finds it and its task sends it
        assert ops_alerts_email_due() == [alert.pk]
        assert ops_alert_email_task.apply(args=[alert.pk]).result == "sent"
    assert OpsAlert.objects.get(pk=alert.pk).emailed == 1 and len(mail.outbox) == 1


def test_ops_alert_email_gives_up_after_the_bound(operator, dead_smtp, settings):
    # given: a mail server that never answers, two attempts allowed
    settings.CLEARHOUSE_ALERT_EMAIL_MAX_ATTEMPTS = 2
    with time_machine.travel(START, tick=False) as clock:
        with mock.patch("ops.tasks.ops_alert_email_task.delay"):
            alert = ops_alert(title="x")
        # when
        assert ops_alert_email_send(alert_id=alert.pk) == "retry"
        clock.shift(timedelta(minutes=1))
        assert ops_alert_email_send(alert_id=alert.pk) == "gave_up"
    # then: the in-app alert stands, the outbox no longer holds it
    alert.refresh_from_db()
    assert not alert.email_pending and alert.email_attempts == 2 and alert.emailed == 0
