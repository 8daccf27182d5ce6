"""Webhook delivery: HMAC-signed POST to the participant's URL, retried until a 2xx answer."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from settlement.models import Notification
from settlement.models.pipeline import DeliveryStatus
from settlement.services.crypto import notify
from settlement.services.webhooks import webhook_deliver

pytestmark = pytest.mark.django_db


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


def test_webhook_gives_up_after_the_bound(receiver, alice, settings):
    settings.CLEARHOUSE_WEBHOOK_MAX_ATTEMPTS = 2
    url, _received, answers = receiver
    alice.webhook_url, alice.webhook_secret = url, "x"
    alice.save()
    answers.extend([500, 500, 500])
    notify(event="failed", instruction=None, message="m", dedupe_key="k2", participant_ids=[alice.pk])
    note = Notification.objects.get()
    webhook_deliver(notification_id=note.pk)
    assert webhook_deliver(notification_id=note.pk).final
    note.refresh_from_db()
    assert note.delivery_status == DeliveryStatus.FAILED and note.last_error == "HTTP 500"
