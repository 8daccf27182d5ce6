"""The long netting tasks stay below the broker's visibility timeout: a task with more work than
its time budget starts no new item after it and hands the rest on as a new task, and every item
is still done exactly once (issue 19: a batch running past ``CELERY_VISIBILITY_TIMEOUT`` was
redelivered to the second worker while still running)."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from ledger.models import LedgerAccount
from netting.models import AttemptStatus, Direction, NettedInstruction, NettedStatus, RailReport
from netting.pipeline import CSA
from settlement.services.trades import TradeInput, trades_ingest
from tests.factories import ACTOR
from tests.netting.conftest import FiatMarket

pytestmark = pytest.mark.django_db


def _pay_ins(m: FiatMarket) -> list[int]:
    """A closed fiat window of two EUR/USD trades between four firms: its four pay-ins."""
    from netting.models import NettingWindow, WindowStatus
    from netting.services import window_close

    trades_ingest(
        items=[
            TradeInput("budget", f"B{n}", m.eur_usd, m.parties[b], m.parties[s], Decimal("100"), Decimal("1.1000"),
                       timezone.now())
            for n, (b, s) in enumerate([(0, 1), (2, 3)])
        ],
        actor=ACTOR,
    )  # fmt: skip
    window = window_close(window=NettingWindow.objects.get(asset_class="fiat", status=WindowStatus.OPEN), actor=ACTOR)
    return list(
        NettedInstruction.objects.filter(window=window, direction=Direction.PAY_IN)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


class Queue:
    """Stands in for the broker: what a task enqueues is kept, then run one task at a time."""

    def __init__(self, monkeypatch, task) -> None:
        self.task, self.sent = task, []
        monkeypatch.setattr(task, "delay", lambda items: self.sent.append(list(items)))

    def drain(self) -> list[tuple[list[int], dict[str, int]]]:
        runs = []
        while self.sent:
            items = self.sent.pop(0)
            runs.append((items, self.task(items)))
        return runs


def _slow_clock(monkeypatch, *modules) -> None:
    """Every reading of the clock is one second after the previous one; every task has half a
    second: the first item is always started, the next only if the clock has not passed it."""
    import netting.tasks as tasks

    ticks = itertools.count()
    for module in modules:
        monkeypatch.setattr(module, "monotonic", lambda: float(next(ticks)))
    monkeypatch.setattr(tasks, "task_deadline", lambda: 0.5)


def test_an_advance_task_over_its_time_budget_hands_the_rest_on_and_sends_each_payment_once(
    fiat_market: FiatMarket, monkeypatch, django_capture_on_commit_callbacks
):
    import netting.pipeline.send as send
    import netting.tasks as tasks

    # given four pay-ins to advance and a clock that runs out after the second of them
    m = fiat_market
    ids = _pay_ins(m)
    assert len(ids) == 4
    queue = Queue(monkeypatch, tasks.netted_advance_task)
    _slow_clock(monkeypatch, send)
    # when one advance task is given all four
    with django_capture_on_commit_callbacks(execute=False):
        queue.sent.append(ids)
        runs = queue.drain()
    # then each task stopped at its budget and handed the rest on, never an item twice
    assert runs == [
        (ids, {"submitted": 2, "handed_on": 2}),
        (ids[2:], {"submitted": 1, "handed_on": 1}),
        (ids[3:], {"submitted": 1}),
    ]
    # and every payment was sent once, its one attempt accepted by the bank
    for ni in NettedInstruction.objects.filter(pk__in=ids):
        assert ni.status == NettedStatus.SUBMITTED
        (attempt,) = ni.rail_attempts.all()
        assert (attempt.status, attempt.sends) == (AttemptStatus.ACCEPTED, 1)
    sent = [p.message_id for p in m.bank.payments]
    assert sorted(sent) == sorted(set(sent)) and len(sent) == 4


def test_a_reports_task_over_its_time_budget_hands_the_rest_on_and_books_each_payment_once(
    fiat_market: FiatMarket, monkeypatch, django_capture_on_commit_callbacks
):
    import netting.pipeline.reports as reports
    import netting.tasks as tasks
    from netting.pipeline import netted_advance, rail_reports_fetch

    # given four pay-ins sent and settled at the bank, its reports fetched and handed to a task
    m = fiat_market
    ids = _pay_ins(m)
    with django_capture_on_commit_callbacks(execute=False):
        netted_advance(ids=ids)
    m.bank.set_date(NettedInstruction.objects.get(pk=ids[0]).settlement_date)
    queue = Queue(monkeypatch, tasks.reports_apply_task)
    with django_capture_on_commit_callbacks(execute=False):
        rail_reports_fetch(network="bank", dispatch=True)
    (report_ids,) = queue.sent
    assert len(report_ids) > 2 * 2
    # when a task applies them two at a time with a clock that runs out after the first two
    monkeypatch.setattr(reports, "REPORTS_STEP", 2)
    _slow_clock(monkeypatch, reports)
    with django_capture_on_commit_callbacks(execute=False):
        runs = queue.drain()
    # then the first task applied two steps (the clock's first reading is within the budget), every
    # later one a step, each handing the rest on, and every report was applied once
    expected = [report_ids] + [report_ids[start:] for start in range(4, len(report_ids), 2)]
    assert [items for items, _ in runs] == expected
    done = [4] + [2] * (len(runs) - 1)
    handed_on = [max(0, len(items) - n) for items, n in zip(expected, done, strict=True)]
    assert [outcome.get("handed_on", 0) for _, outcome in runs] == handed_on
    assert sum(outcome.get("settled", 0) for _, outcome in runs) == 4
    assert sum(outcome.get("investigate", 0) + outcome.get("error", 0) for _, outcome in runs) == 0
    assert not RailReport.objects.filter(pk__in=report_ids, applied=False).exists()
    # and each pay-in was booked once: settled, its lock posted, the CSA holding exactly the four
    assert set(NettedInstruction.objects.filter(pk__in=ids).values_list("status", flat=True)) == {NettedStatus.SETTLED}
    assert set(NettedInstruction.objects.filter(pk__in=ids).values_list("lock__status", flat=True)) == {"posted"}
    held = {a.asset.code: a.balance for a in LedgerAccount.objects.filter(system_code=CSA).select_related("asset")}
    assert held == {"USD": Decimal("220.00"), "EUR": Decimal("200.00")}
