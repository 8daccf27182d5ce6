from datetime import date

import pytest

from calendars import is_business_day, settlement_date
from common.choices import MarketCalendar as C


@pytest.mark.parametrize(
    ("trade_date", "cycle", "calendars", "expected"),
    [
        # crypto T+0 settles every day, weekends too
        (date(2026, 11, 28), 0, (C.ALWAYS,), date(2026, 11, 28)),
        # US equity T+1 over Thanksgiving (Thu 26 Nov 2026): Wed -> Fri
        (date(2026, 11, 25), 1, (C.NYSE, C.FED), date(2026, 11, 27)),
        # Friday T+1 -> Monday
        (date(2026, 11, 20), 1, (C.NYSE,), date(2026, 11, 23)),
        # T+2 across a weekend
        (date(2026, 11, 19), 2, (C.NYSE,), date(2026, 11, 23)),
        # a trade on Saturday counts from Monday
        (date(2026, 11, 21), 1, (C.NYSE,), date(2026, 11, 24)),
        # EUR on TARGET: Good Friday 3 Apr and Easter Monday 6 Apr 2026 are closed
        (date(2026, 4, 2), 1, (C.TARGET,), date(2026, 4, 7)),
        # Veterans Day (11 Nov) closes the Fed but not the NYSE: both calendars must be open
        (date(2026, 11, 10), 1, (C.NYSE, C.FED), date(2026, 11, 12)),
        (date(2026, 11, 10), 1, (C.NYSE,), date(2026, 11, 11)),
    ],
)
def test_settlement_date_counts_business_days(trade_date, cycle, calendars, expected):
    assert settlement_date(trade_date=trade_date, cycle=cycle, calendars=calendars) == expected


def test_christmas_is_closed_on_nyse():
    assert not is_business_day(C.NYSE, date(2026, 12, 25))
    assert is_business_day(C.ALWAYS, date(2026, 12, 25))


def test_every_market_calendar_choice_has_rules():
    from calendars import CALENDARS

    assert {c.value for c in C} == CALENDARS
