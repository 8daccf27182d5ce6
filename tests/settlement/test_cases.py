"""Review cases opened outside any transaction (a pipeline step that caught a rail error after
its own transactions committed) are written with their log entry, not lost to an error."""

from __future__ import annotations

import pytest

from common.choices import CaseKind
from ledger.models import TransitionLog
from ops.models import ReviewCase
from ops.services.cases import case_open

pytestmark = pytest.mark.django_db(transaction=True)


def test_case_open_outside_a_transaction_writes_case_and_log_once():
    case = case_open(kind=CaseKind.ESCALATION, reason="could not sign: wallet short on chain", dedupe_key="t:1")
    again = case_open(kind=CaseKind.ESCALATION, reason="could not sign: wallet short on chain", dedupe_key="t:1")
    assert again.pk == case.pk
    assert ReviewCase.objects.count() == 1
    assert TransitionLog.objects.filter(entity_type="reviewcase", entity_id=case.pk).count() == 1
