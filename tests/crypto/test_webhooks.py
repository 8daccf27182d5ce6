"""Webhook delivery: HMAC-signed POST to the participant's URL, retried on a schedule spanning
hours (a receiver down for a while loses nothing) until a 2xx answer; giving up alerts ops."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from unittest import mock

import pytest
import time_machine
from django.conf import settings

from ops.models import Notification, OpsAlert
from ops.models.cases import DeliveryStatus
from ops.services.cases import notify
from ops.services.webhooks import webhook_deliver, webhooks_due

pytestmark = pytest.mark.django_db
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def receiver(settings):
    settings.CLEARHOUSE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the test receiver is on loopback
    received: list[tuple[dict, bytes]] = []
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(answers.pop(0) if answers else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received, answers
    server.shutdown()


def test_webhook_is_signed_and_retried_until_accepted(receiver, alice, bob):
    url, received, answers = receiver
    alice.webhook_url, alice.webhook_secret = url, "s3cret"
    alice.save()
    answers.append(503)  # the first attempt is refused by the receiver
    with time_machine.travel(START, tick=False) as clock:
        notify(
            event="settled",
            instruction=None,
            message="trade settled",
            dedupe_key="k1",
            participant_ids=[alice.pk, bob.pk],
            payload={"trade": "T1"},
        )
        alice_note = Notification.objects.get(participant=alice)
        assert alice_note.delivery_status == DeliveryStatus.PENDING
        assert Notification.objects.get(participant=bob).delivery_status == DeliveryStatus.NONE  # no URL
        first = webhook_deliver(notification_id=alice_note.pk)
        assert not first.delivered and not first.final and first.error == "HTTP 503"
        assert first.retry_in == settings.CLEARHOUSE_WEBHOOK_RETRY_SCHEDULE[0]
        # a duplicate task before the retry is due posts nothing
        assert not webhook_deliver(notification_id=alice_note.pk).final and len(received) == 1
        clock.shift(timedelta(seconds=first.retry_in))
        second = webhook_deliver(notification_id=alice_note.pk)
    assert second.delivered
    alice_note.refresh_from_db()
    assert alice_note.delivery_status == DeliveryStatus.DELIVERED and alice_note.delivery_attempts == 2
    headers, body = received[-1]
    expected = hmac.new(b"s3cret", headers["X-Clearhouse-Timestamp"].encode() + b"." + body, hashlib.sha256)
    assert headers["X-Clearhouse-Signature"] == f"sha256={expected.hexdigest()}"
    assert headers["X-Clearhouse-Delivery"] == str(alice_note.pk)
    assert json.loads(body)["data"] == {"trade": "T1"}
    # delivered once: a duplicate task run sends nothing
    assert webhook_deliver(notification_id=alice_note.pk).final and len(received) == 2


def test_webhook_gives_up_after_the_bound_and_alerts_ops(receiver, alice, settings):
    # given: a receiver that always fails, two attempts allowed
    settings.CLEARHOUSE_WEBHOOK_MAX_ATTEMPTS = 2
    url, _received, answers = receiver
    alice.webhook_url, alice.webhook_secret = url, "x"
    alice.save()
    answers.extend([500, 500, 500])
    with time_machine.travel(START, tick=False) as clock:
        notify(event="failed", instruction=None, message="m", dedupe_key="k2", participant_ids=[alice.pk])
        note = Notification.objects.get()
        # when
        webhook_deliver(notification_id=note.pk)
        clock.shift(timedelta(hours=1))
        assert webhook_deliver(notification_id=note.pk).final
    # then: given up, and operations are told (once)
    note.refresh_from_db()
    assert note.delivery_status == DeliveryStatus.FAILED and note.last_error == "HTTP 500"
    alert = OpsAlert.objects.get(dedupe_key=f"webhook-given-up:{note.pk}")
    assert alert.level == "warning" and alert.link == f"/admin/ops/notification/{note.pk}/change/"
    assert alert.email_pending


def test_webhooks_sweep_a_receiver_down_for_15_minutes_loses_nothing(receiver, alice, settings):
    # given: a receiver that answers 503 for the first 15 minutes, and notifications for it
    url, received, _answers = receiver
    alice.webhook_url, alice.webhook_secret = url, "x"
    alice.save()
    statuses: list[int] = []
    with time_machine.travel(START, tick=False) as clock:
        for n in range(3):
            notify(event="settled", instruction=None, message="m", dedupe_key=f"o{n}", participant_ids=[alice.pk])
        # when: beat's sweep runs every CLEARHOUSE_SWEEP_EVERY_SECONDS (its tasks run at once)
        step = timedelta(seconds=settings.CLEARHOUSE_SWEEP_EVERY_SECONDS)
        while datetime.now(UTC) < START + timedelta(minutes=45):
            down = datetime.now(UTC) < START + timedelta(minutes=15)
            with mock.patch("ops.services.webhooks.webhook_post") as post:
                post.return_value.status_code = 503 if down else 200
                for pk in webhooks_due():
                    webhook_deliver(notification_id=pk)
                statuses += [post.return_value.status_code] * post.call_count
            clock.shift(step)
    # then: nothing given up, each delivered exactly once after the receiver came back
    notes = Notification.objects.all()
    assert {n.delivery_status for n in notes} == {DeliveryStatus.DELIVERED}
    assert statuses.count(200) == 3 and statuses.count(503) >= 3
    assert all(n.delivered_at > START + timedelta(minutes=15) for n in notes)
    assert not OpsAlert.objects.exists() and not received


def test_webhooks_sweep_sends_a_first_attempt_whose_task_was_lost(receiver, alice, settings):
    # given: a notification whose on-commit task never reached a worker
    url, received, _answers = receiver
    alice.webhook_url, alice.webhook_secret = url, "x"
    alice.save()
    with time_machine.travel(START, tick=False) as clock:
        notify(event="settled", instruction=None, message="m", dedupe_key="lost", participant_ids=[alice.pk])
        note = Notification.objects.get()
        assert webhooks_due() == []  # its own task is still expected
        # when: the stuck threshold passes
        clock.shift(timedelta(seconds=settings.CLEARHOUSE_STUCK_AFTER_SECONDS + 1))
        # then: the sweep dispatches it
        assert webhooks_due() == [note.pk]
        assert webhook_deliver(notification_id=note.pk).delivered
    assert len(received) == 1
