"""A network that restarts its report sequence numbers: nothing stalls, nothing is skipped, nothing twice."""

from __future__ import annotations

import pytest

from netting.models import NettedInstruction, NettedStatus, RailReport
from netting.pipeline import rail_reports_fetch
from ops.models import OpsAlert
from reconciliation.models import ExternalRecord
from reconciliation.services import rail_reports_record
from tests.helpers import house_usd_credit
from tests.netting.conftest import FiatMarket, pump, settle_day
from tests.netting.test_payments import close_all, ingest

pytestmark = pytest.mark.django_db


def _notify(bank, n: int) -> None:
    """A booking notification the network emits (for a payment that is not ours: applied as such)."""
    bank.emit("camt.054", house_usd_credit(reference=f"E2E-{n}", amount="1.00", entry_ref=f"R{n}").decode())


def _stored() -> list[tuple[str, int]]:
    return list(RailReport.objects.filter(network="bank").order_by("pk").values_list("epoch", "sequence"))


def test_rail_reports_fetch_after_a_sequence_restart_drains_the_old_epoch_then_the_new_one_once(
    fiat_market: FiatMarket,
):
    # given three reports received, two more emitted and not yet fetched, then a restart of the
    # network's numbering and two reports numbered 1 and 2 again
    bank = fiat_market.bank
    for n in (1, 2, 3):
        _notify(bank, n)
    rail_reports_fetch(network="bank")
    for n in (4, 5):
        _notify(bank, n)
    bank.inject("sequence_restart")
    for n in (6, 7):
        _notify(bank, n)

    # when the reports are fetched (twice) and recorded (twice)
    rail_reports_fetch(network="bank")
    rail_reports_fetch(network="bank")
    rail_reports_record()
    again = rail_reports_record()

    # then every report is stored, applied and recorded once, under its own epoch
    assert _stored() == [("", 1), ("", 2), ("", 3), ("", 4), ("", 5), ("restart-1", 1), ("restart-1", 2)]
    assert not RailReport.objects.filter(applied=False).exists()
    references = sorted(ExternalRecord.objects.values_list("reference", flat=True))
    assert references == [f"E2E-{n}" for n in range(1, 8)]
    assert again == {"records": 0, "reports": 0, "refused": 0}
    assert OpsAlert.objects.filter(dedupe_key="report-epoch:bank:restart-1").count() == 1


def test_rail_reports_fetch_when_the_network_forgot_the_old_epoch_takes_the_new_one_from_the_start(
    fiat_market: FiatMarket,
):
    # given five reports received, then a restart after which the network no longer knows the old epoch
    bank = fiat_market.bank
    for n in (1, 2, 3, 4, 5):
        _notify(bank, n)
    rail_reports_fetch(network="bank")
    bank.inject("sequence_restart")
    for n in (6, 7):
        _notify(bank, n)
    del bank.epochs[""]

    # when the reports are fetched
    rail_reports_fetch(network="bank")

    # then the new epoch's reports are stored from its first one, not skipped behind our old position
    assert _stored()[5:] == [("restart-1", 1), ("restart-1", 2)]


@pytest.mark.parametrize("new_reports", [2, 5])
def test_rail_reports_fetch_after_a_silent_sequence_reset_keeps_the_new_numbering_under_an_epoch_of_ours(
    fiat_market: FiatMarket, new_reports: int
):
    # given three reports received, then the network numbers from 1 again without naming an epoch,
    # fewer (2) or more (5) reports than we had
    bank = fiat_market.bank
    for n in (1, 2, 3):
        _notify(bank, n)
    rail_reports_fetch(network="bank")
    bank.inject("sequence_reset")
    for n in range(4, 4 + new_reports):
        _notify(bank, n)

    # when the reports are fetched (twice), one more is emitted and fetched, and all are recorded
    rail_reports_fetch(network="bank")
    rail_reports_fetch(network="bank")
    _notify(bank, 99)
    rail_reports_fetch(network="bank")
    rail_reports_record()

    # then the new numbering is stored whole under "~1", nothing twice, and operations were told
    assert _stored() == [("", 1), ("", 2), ("", 3)] + [("~1", n) for n in range(1, new_reports + 2)]
    assert not RailReport.objects.filter(applied=False).exists()
    references = sorted(ExternalRecord.objects.values_list("reference", flat=True))
    assert references == sorted(f"E2E-{n}" for n in [*range(1, 4 + new_reports), 99])
    assert OpsAlert.objects.filter(dedupe_key="report-epoch:bank:~1").count() == 1


def test_rail_reports_fetch_payments_settle_after_the_bank_restarts_its_sequence(fiat_market: FiatMarket):
    # given a first trade settled through the bank, its reports received
    m = fiat_market
    ingest(m.aapl_usd, [(m.parties[0], m.parties[1], "10", "100.00")])
    close_all()
    pump()
    day = NettedInstruction.objects.values_list("settlement_date", flat=True).first()
    settle_day(m, day)
    assert not NettedInstruction.objects.exclude(status=NettedStatus.SETTLED).exists()
    before = RailReport.objects.filter(network="bank").count()

    # when the bank restarts its report numbering and a second trade settles
    m.bank.inject("sequence_restart")
    ingest(m.aapl_usd, [(m.parties[2], m.parties[3], "1", "50.00")])
    close_all()
    pump()
    settle_day(m, m.bank.add_business_days(day, 1))  # the networks' next business day

    # then its payments settle on the new epoch's reports, every report of both epochs stored once
    assert not NettedInstruction.objects.exclude(status=NettedStatus.SETTLED).exists()
    emitted = [(r["epoch"], r["sequence"]) for reports in m.bank.epochs.values() for r in reports]
    assert sorted(_stored()) == sorted(emitted) and len(emitted) > before
    assert RailReport.objects.filter(network="bank", epoch="restart-1").exists()
