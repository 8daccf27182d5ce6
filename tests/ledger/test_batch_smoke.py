from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from common.choices import AccountKind, LockStatus
from ledger.models import LedgerAccount, LedgerLock
from ledger.services.batch import HoldRequest, PostRequest, ledger_lock_many, ledger_post_many, ledger_void_many
from ledger.services.ledger import account_for
from tests.factories import ACTOR, fund

pytestmark = pytest.mark.django_db


def test_ledger_lock_many_smoke(alice, bob, usd):
    fund(alice, usd, "10.00")
    fund(bob, usd, "1.00")
    at = timezone.now() + timedelta(hours=1)
    out = ledger_lock_many(
        requests=[
            HoldRequest(1, alice.pk, usd.pk, Decimal("4"), "a1", at),
            HoldRequest(2, bob.pk, usd.pk, Decimal("2"), "b1", at),
            HoldRequest(3, alice.pk, usd.pk, Decimal("5"), "a2", at),
        ],
        actor=ACTOR,
    )
    assert set(out.locks) == {"a1", "a2"}
    assert set(out.failed) == {2}
    to = account_for(owner=bob, asset=usd, kind=AccountKind.AVAILABLE)
    journals = ledger_post_many(requests=[PostRequest(out.locks["a1"], to.pk, Decimal("3"))], actor=ACTOR)
    assert set(journals) == {out.locks["a1"].pk}
    ledger_void_many(locks=[out.locks["a2"]], actor=ACTOR, reason="x")
    assert LedgerLock.objects.get(reference="a2").status == LockStatus.VOIDED
    assert LedgerAccount.objects.get(owner=bob, asset=usd, kind=AccountKind.AVAILABLE).balance == Decimal("4")
    assert LedgerAccount.objects.get(owner=alice, asset=usd, kind=AccountKind.AVAILABLE).balance == Decimal("7")
