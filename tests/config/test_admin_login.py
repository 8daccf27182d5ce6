"""Admin login security: password rules, lockout after repeated failures (django-axes) and a
second factor for staff (django-otp) when CLEARHOUSE_ADMIN_OTP_REQUIRED is on."""

from __future__ import annotations

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def operator(db):
    user = factories.UserFactory(username="operator", is_staff=True, is_superuser=True)
    user.set_password(PASSWORD)
    user.save()
    return user


def _login(client, password: str, **extra: str):
    data = {"username": "operator", "password": password, "next": "/admin/", **extra}
    return client.post(reverse("admin:login"), data)


def test_validate_password_refuses_weak_passwords(operator):
    # given / when / then short, common, numeric and username-like passwords are refused
    for weak in ("x", "password123", "12345678901234", "operator1234"):
        with pytest.raises(ValidationError):
            validate_password(weak, user=operator)
    validate_password(PASSWORD, user=operator)


def test_admin_login_locks_out_after_repeated_failures(client, operator, settings):
    # given as many wrong passwords as the limit allows
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, "wrong password")
    # when the right password comes next
    response = _login(client, PASSWORD)
    # then the login is refused (locked out) and no session was opened
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("admin:index")).status_code == 302


def test_admin_login_succeeds_below_the_limit(client, operator, settings):
    # given fewer failures than the limit
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "wrong password")
    # when / then the right password logs in
    assert _login(client, PASSWORD).status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


def test_admin_refuses_staff_without_a_verified_device_when_otp_required(client, operator, settings):
    # given the second factor required, and a staff session opened by password only
    settings.CLEARHOUSE_ADMIN_OTP_REQUIRED = True
    TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    client.force_login(operator)
    # when the admin, a changelist or the ops dashboard is opened / then each sends to the login page
    for url in (reverse("admin:index"), reverse("admin:reference_participant_changelist"), reverse("ops-dashboard")):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login")), url
    # and the password alone does not log in
    response = _login(client, PASSWORD)
    assert response.status_code == 200 and "otp_token" in response.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302


def test_admin_login_with_a_totp_token_opens_the_admin(client, operator, settings):
    # given the second factor required and the operator's confirmed TOTP device
    settings.CLEARHOUSE_ADMIN_OTP_REQUIRED = True
    device = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    # when they log in with password and the current token
    response = _login(client, PASSWORD, otp_device=device.persistent_id, otp_token=f"{totp(device.bin_key):06d}")
    # then the admin opens
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200
