from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

from ledger.models import Journal, LedgerAccount
from reference.models import Participant

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent():
    call_command("seed_demo")
    counts = (Participant.objects.count(), Journal.objects.count(), LedgerAccount.objects.count())
    call_command("seed_demo")
    assert (Participant.objects.count(), Journal.objects.count(), LedgerAccount.objects.count()) == counts
    assert counts[0] == 5


def test_seed_demo_gives_the_demo_admin_a_second_factor_when_required(settings):
    # given the admin second factor required (production settings)
    settings.CLEARHOUSE_ADMIN_OTP_REQUIRED = True
    out = StringIO()
    # when the demo is seeded (twice: idempotent)
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=StringIO())
    # then the demo admin has one confirmed TOTP device, and the output says how to add it
    device = TOTPDevice.objects.get(user__username="demo")
    assert device.confirmed
    assert "otpauth://totp/" in out.getvalue()
