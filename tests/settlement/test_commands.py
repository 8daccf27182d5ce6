from __future__ import annotations

import pytest
from django.core.management import call_command

from settlement.models import Journal, LedgerAccount, Participant

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent():
    call_command("seed_demo")
    counts = (Participant.objects.count(), Journal.objects.count(), LedgerAccount.objects.count())
    call_command("seed_demo")
    assert (Participant.objects.count(), Journal.objects.count(), LedgerAccount.objects.count()) == counts
    assert counts[0] == 5
