"""API tokens: scopes, revocation, expiry, rotation from the admin, rate limiting, and failed
authentications recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from settlement.models import ApiToken, AuthFailure
from settlement.services.tokens import token_issue, token_revoke
from tests import factories
from tests.factories import ACTOR
from tests.helpers import staff_user

pytestmark = pytest.mark.django_db
TRADES, INSTRUCTIONS = "/api/v1/trades/", "/api/v1/instructions/"


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture(autouse=True)
def _fresh_rate_counts():
    cache.clear()


def test_scopes_decide_what_a_token_may_do(alice, usd, btc):
    factories.instrument(btc, usd)
    reader = token_issue(user=factories.participant_user(alice), name="alice reports", scopes=["read"], actor=ACTOR)
    client = bearer(reader.key)
    assert client.get(INSTRUCTIONS).status_code == 200
    refused = client.post(TRADES, {"external_id": "X1"}, format="json")
    assert refused.status_code == 403 and "trades:write" in refused.json()["error"]["message"]
    stored = ApiToken.objects.get(pk=reader.token.pk)
    assert reader.key not in (stored.key_hash, stored.prefix) and stored.key_hash != ""
    assert stored.last_used_at is not None


def test_revoked_expired_and_unknown_keys_are_refused_and_recorded(staff_user):
    live = token_issue(user=staff_user, name="engine", scopes=["read"], actor=ACTOR)
    assert bearer(live.key).get(INSTRUCTIONS).status_code == 200
    token_revoke(token=live.token, actor=ACTOR, reason="leaked in a log")
    expired = token_issue(
        user=staff_user, name="old", scopes=["read"], actor=ACTOR, expires_at=timezone.now() - timedelta(seconds=1)
    )
    for key in (live.key, expired.key, "chk_deadbeef_nope"):
        assert bearer(key).get(INSTRUCTIONS).status_code == 401
    reasons = list(AuthFailure.objects.order_by("pk").values_list("channel", "who", "reason"))
    assert reasons == [
        ("api", live.token.prefix, "revoked key"),
        ("api", expired.token.prefix, "expired key"),
        ("api", "deadbeef", "unknown key"),
    ]


def test_administrators_issue_rotate_and_revoke_in_the_admin(django_user_model, staff_user):
    admin_client = Client()
    admin_client.force_login(staff_user_in(django_user_model, "administrator"))
    page = admin_client.post(
        reverse("admin:settlement_apitoken_add"),
        {"user": staff_user.pk, "name": "matching engine", "scopes": ["read", "trades:write"]},
        follow=True,
    )
    message = next(str(m) for m in page.context["messages"] if "shown once" in str(m))
    key = message.rsplit(": ", 1)[1]
    assert bearer(key).get(INSTRUCTIONS).status_code == 200
    token = ApiToken.objects.get(name="matching engine")

    url = reverse("admin:settlement_apitoken_changelist")
    form = {"action": "rotate_selected", "_selected_action": [token.pk], "apply": "1", "reason": "quarterly"}
    page = admin_client.post(url, form, follow=True)
    new_key = next(str(m) for m in page.context["messages"] if "New key" in str(m)).rsplit(": ", 1)[1]
    assert bearer(key).get(INSTRUCTIONS).status_code == 401
    assert bearer(new_key).get(INSTRUCTIONS).status_code == 200

    new = ApiToken.objects.get(replaces=token)
    form = {"action": "revoke_selected", "_selected_action": [new.pk], "apply": "1", "reason": "engine retired"}
    admin_client.post(url, form)
    assert bearer(new_key).get(INSTRUCTIONS).status_code == 401

    operator = Client()
    operator.force_login(staff_user_in(django_user_model, "operator"))
    assert operator.get(reverse("admin:settlement_apitoken_add")).status_code == 403


def staff_user_in(django_user_model, role):
    return staff_user(django_user_model, f"{role}-person", role)


def test_requests_beyond_the_rate_are_throttled(settings, staff_user):
    settings.CLEARHOUSE_API_RATE = "3/min"
    client = bearer(token_issue(user=staff_user, name="busy", scopes=["read"], actor=ACTOR).key)
    codes = [client.get(INSTRUCTIONS).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    other = bearer(token_issue(user=staff_user, name="calm", scopes=["read"], actor=ACTOR).key)
    assert other.get(INSTRUCTIONS).status_code == 200  # counted per token


def test_failed_admin_logins_are_recorded(client, django_user_model):
    django_user_model.objects.create_user("ops", password="right-password", is_staff=True)
    client.post(reverse("admin:login"), {"username": "ops", "password": "wrong"})
    failure = AuthFailure.objects.get()
    assert (failure.channel, failure.who, failure.reason) == ("admin", "ops", "wrong username or password")
