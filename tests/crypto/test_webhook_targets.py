"""Webhook targets (server-side request forgery guard): internal addresses are refused when the URL
is saved and again after DNS resolution when a delivery connects; no redirect is followed and the
receiver's answer is never copied into ``last_error``."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.exceptions import ValidationError

from common import webhook_targets
from ops.models import Notification
from ops.models.cases import DeliveryStatus
from ops.services.cases import notify
from ops.services.webhooks import webhook_deliver
from reference.models import Participant

pytestmark = pytest.mark.django_db

PUBLIC = "93.184.216.34"  # a public unicast address (never connected to: the tests resolve it away)


@pytest.fixture
def receiver():
    """A loopback HTTP receiver; ``answers`` holds (status, headers, body) to send back."""
    received: list[str] = []
    answers: list[tuple[int, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            received.append(self.path)
            status, headers, body = answers.pop(0) if answers else (200, {}, b"")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, received, answers
    server.shutdown()


def _pending_note(participant: Participant, url: str) -> Notification:
    # stored without the model validation, as a URL saved before the guard (or by a raw update) would be
    Participant.objects.filter(pk=participant.pk).update(webhook_url=url, webhook_secret="s")
    notify(event="settled", instruction=None, message="m", dedupe_key="k", participant_ids=[participant.pk])
    return Notification.objects.get(participant=participant)


def _resolving(monkeypatch, *answers: list[str]) -> None:
    """getaddrinfo answers the given address lists in turn (the last one from then on)."""
    queue = list(answers)

    def fake_getaddrinfo(host, port, *args, **kwargs):
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    monkeypatch.setattr(webhook_targets.socket, "getaddrinfo", fake_getaddrinfo)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::1]:8000/admin/",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.10/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0:8000/",
        "http://[::ffff:127.0.0.1]:8000/",
        "http://[fe80::1]/hook",
        "http://localhost:8000/admin/",
        "http://user:secret@" + PUBLIC + "/hook",
        "ftp://" + PUBLIC + "/hook",
    ],
)
def test_validate_webhook_url_refuses_internal_targets_at_save(alice, url):
    # given a participant whose webhook URL points inside the house
    alice.webhook_url = url
    # when the admin form validates it / then the URL is refused with a field error
    with pytest.raises(ValidationError) as error:
        alice.full_clean()
    assert "webhook_url" in error.value.message_dict


def test_validate_webhook_url_refuses_a_name_resolving_to_a_private_address(alice, monkeypatch):
    # given a public-looking name that resolves to a public and a private address
    _resolving(monkeypatch, [PUBLIC, "10.0.0.7"])
    alice.webhook_url = "https://hooks.example.com/clearhouse"
    # when / then
    with pytest.raises(ValidationError) as error:
        alice.full_clean()
    assert "10.0.0.7" in str(error.value.message_dict["webhook_url"])


def test_validate_webhook_url_requires_https_in_production(alice, settings, monkeypatch):
    # given production rules
    settings.CLEARHOUSE_WEBHOOK_REQUIRE_HTTPS = True
    _resolving(monkeypatch, [PUBLIC])
    # when / then plain http is refused and https to a public host accepted
    alice.webhook_url = "http://hooks.example.com/clearhouse"
    with pytest.raises(ValidationError):
        alice.full_clean()
    alice.webhook_url = "https://hooks.example.com/clearhouse"
    alice.full_clean()


def test_validate_webhook_url_accepts_the_allow_list(alice, settings):
    # given the test receiver's network on the allow-list
    settings.CLEARHOUSE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.0/8"]
    alice.webhook_url = "http://127.0.0.1:8000/hook"
    # when / then
    alice.full_clean()


def test_webhook_deliver_refuses_an_internal_target_at_send(alice, receiver):
    # given a stored URL pointing at a loopback service (not on the allow-list)
    port, received, _answers = receiver
    note = _pending_note(alice, f"http://127.0.0.1:{port}/internal")
    # when a delivery is attempted
    outcome = webhook_deliver(notification_id=note.pk)
    # then nothing was sent, and the attempt is counted with our own short reason
    assert received == []
    note.refresh_from_db()
    assert not outcome.delivered and note.delivery_status == DeliveryStatus.PENDING
    assert note.delivery_attempts == 1
    assert note.last_error.startswith("target refused: 127.0.0.1 resolves to 127.0.0.1, a loopback address")


def test_webhook_deliver_rechecks_the_address_when_it_connects(alice, receiver, monkeypatch):
    # given a name that resolves to a public address when checked, then to loopback (DNS rebinding)
    port, received, _answers = receiver
    _resolving(monkeypatch, [PUBLIC], ["127.0.0.1"])
    note = _pending_note(alice, f"http://hooks.example.com:{port}/hook")
    # when a delivery is attempted
    webhook_deliver(notification_id=note.pk)
    # then the connection was refused before anything was sent
    assert received == []
    note.refresh_from_db()
    assert note.last_error.startswith("target refused: hooks.example.com resolves to 127.0.0.1")


def test_webhook_deliver_connects_to_the_checked_address(alice, receiver, settings, monkeypatch):
    # given an allowed name that resolves to the receiver
    port, received, _answers = receiver
    settings.CLEARHOUSE_WEBHOOK_ALLOWED_HOSTS = ["hooks.test"]
    _resolving(monkeypatch, ["127.0.0.1"])
    note = _pending_note(alice, f"http://hooks.test:{port}/hook")
    # when
    outcome = webhook_deliver(notification_id=note.pk)
    # then
    assert outcome.delivered and received == ["/hook"]


def test_webhook_deliver_does_not_follow_redirects(alice, receiver, settings):
    # given a receiver that redirects to an internal page
    settings.CLEARHOUSE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    port, received, answers = receiver
    answers.append((302, {"Location": f"http://127.0.0.1:{port}/admin/secret"}, b""))
    note = _pending_note(alice, f"http://127.0.0.1:{port}/hook")
    # when
    outcome = webhook_deliver(notification_id=note.pk)
    # then one request only, and the redirect is a failed attempt
    assert received == ["/hook"]
    assert not outcome.delivered and outcome.error == "HTTP 302"


def test_webhook_deliver_keeps_no_answer_text_in_last_error(alice, receiver, settings):
    # given a receiver answering with internal data, and then a closed port
    settings.CLEARHOUSE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    port, _received, answers = receiver
    answers.append((500, {}, b"redis_version:7.2.4 internal secret"))
    note = _pending_note(alice, f"http://127.0.0.1:{port}/hook")
    # when
    webhook_deliver(notification_id=note.pk)
    # then only the status code is kept
    note.refresh_from_db()
    assert note.last_error == "HTTP 500"
    # given a port nobody listens on
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    Participant.objects.filter(pk=alice.pk).update(webhook_url=f"http://127.0.0.1:{closed_port}/hook")
    Notification.objects.filter(pk=note.pk).update(next_attempt_at=None)  # the next attempt is due now
    # when
    webhook_deliver(notification_id=note.pk)
    # then the kind of failure only, not the library's message with host, port and path
    note.refresh_from_db()
    assert note.last_error == "no answer (ConnectionError)"
