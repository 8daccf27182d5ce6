"""The rails' reports become external records; one that cannot be read stays an import failure."""

from __future__ import annotations

import pytest
from django.urls import reverse

from common.exceptions import IllegalTransition, ValidationFailed
from ledger.models import TransitionLog
from netting.models import RailReport
from netting.reports import rail_report_record_retry
from ops.models import OpsAlert
from reconciliation.models import ExternalRecord
from reconciliation.services import rail_reports_record
from tests.factories import ACTOR
from tests.helpers import house_usd_credit, staff_user

pytestmark = pytest.mark.django_db


def test_rail_reports_record_unreadable_report_stays_an_import_failure_with_an_alert():
    # given a readable booking notification and one the parser refuses
    good = RailReport.objects.create(
        network="bank",
        sequence=1,
        kind="camt.054",
        content=house_usd_credit(reference="E2E-1", amount="10.00", entry_ref="R1").decode(),
    )
    bad = RailReport.objects.create(network="bank", sequence=2, kind="camt.054", content="<Document><oops")

    # when the reports are recorded (twice: the hourly run comes again)
    first = rail_reports_record()
    second = rail_reports_record()

    # then the good one is recorded; the bad one is not marked recorded, says why, is alerted once
    assert first == {"records": 1, "reports": 1, "refused": 1}
    assert second == {"records": 0, "reports": 0, "refused": 0}  # not retried on its own
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.recorded and good.record_error == ""
    assert not bad.recorded and bad.record_error
    alert = OpsAlert.objects.get(dedupe_key=f"rail-report-unreadable:{bad.pk}")
    assert alert.level == "critical" and "bank report #2" in alert.title
    assert alert.link == f"/admin/netting/railreport/{bad.pk}/change/"
    assert TransitionLog.objects.filter(entity_type="railreport", entity_id=bad.pk, to_status="import_failed").exists()
    assert ExternalRecord.objects.count() == 1


def test_rail_report_record_retry_tries_an_import_failure_again(django_user_model):
    # given an import failure whose content was fixed at the source (here: a readable report)
    report = RailReport.objects.create(network="bank", sequence=7, kind="camt.054", content="not xml")
    rail_reports_record()
    RailReport.objects.filter(pk=report.pk).update(
        content=house_usd_credit(reference="E2E-7", amount="70.00", entry_ref="R7").decode()
    )
    with pytest.raises(ValidationFailed, match="reason"):
        rail_report_record_retry(report=report, actor=ACTOR, reason=" ")

    # when someone retries it with a reason
    rail_report_record_retry(report=report, actor=ACTOR, reason="parser fixed")
    outcome = rail_reports_record()

    # then it is recorded now, the retry is in the transition log, and it cannot be retried twice
    report.refresh_from_db()
    assert outcome["reports"] == 1 and report.recorded and report.record_error == ""
    assert ExternalRecord.objects.filter(reference="E2E-7").count() == 1
    assert TransitionLog.objects.filter(
        entity_type="railreport", entity_id=report.pk, from_status="import_failed", reason="parser fixed"
    ).exists()
    with pytest.raises(IllegalTransition):
        rail_report_record_retry(report=report, actor=ACTOR, reason="again")


def test_rail_report_record_retry_from_the_admin_needs_a_reason_and_the_operator_role(client, django_user_model):
    # given an import failure, an operator and an auditor
    report = RailReport.objects.create(network="bank", sequence=3, kind="camt.054", content="not xml")
    rail_reports_record()
    operator = staff_user(django_user_model, "ops", "operator")
    auditor = staff_user(django_user_model, "audit", "auditor")
    url = reverse("admin:netting_railreport_changelist")
    form = {"action": "record_retry_selected", "_selected_action": [report.pk], "apply": "1", "reason": "fixed"}

    # when the auditor and then the operator ask for it to be imported again
    client.force_login(auditor)
    listing = client.get(url + "?import_failed=yes")
    client.post(url, form)
    still_failed = RailReport.objects.get(pk=report.pk).record_error
    client.force_login(operator)
    client.post(url, form)

    # then the failure is listed, only the operator's request counts, and it is logged with the user
    assert listing.status_code == 200 and f"/admin/netting/railreport/{report.pk}/change/".encode() in listing.content
    assert still_failed
    assert RailReport.objects.get(pk=report.pk).record_error == ""
    entry = TransitionLog.objects.get(entity_type="railreport", entity_id=report.pk, from_status="import_failed")
    assert (entry.actor_label, entry.reason) == ("ops", "fixed")
