"""Settlement dates on business days of a market calendar (pure: no Django, no app imports).

Holiday data comes from the maintained ``holidays`` package (its financial calendars: NYSE,
the Federal Reserve, ECB TARGET, LSE). ``24x7`` (crypto) has no closed days. A calendar is named
by its code (the values of ``common.choices.MarketCalendar``). The apps and the network
simulators in ``rails/`` share these rules, so they live in this small package below both.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays

__all__ = ["ALWAYS", "CALENDARS", "business_days_between", "is_business_day", "next_business_day", "settlement_date"]

ALWAYS = "24x7"  # open every day (crypto)
# Calendar code -> the ``holidays`` package's financial calendar.
_FINANCIAL_CODES: dict[str, str] = {
    "NYSE": "NYSE",
    "FED": "XFED",
    "TARGET": "XECB",
    "LSE": "XLON",
}
CALENDARS: frozenset[str] = frozenset({ALWAYS, *_FINANCIAL_CODES})


@lru_cache(maxsize=256)
def _closed_days(calendar: str, year: int) -> frozenset[date]:
    code = _FINANCIAL_CODES.get(calendar)
    if code is None:
        if calendar == ALWAYS:
            return frozenset()
        raise ValueError(f"unknown market calendar {calendar!r}")
    return frozenset(holidays.financial_holidays(code, years=year).keys())


def is_business_day(calendar: str, day: date) -> bool:
    if calendar == ALWAYS:
        return True
    if day.weekday() >= 5:
        return False
    return day not in _closed_days(calendar, day.year)


def next_business_day(calendar: str, day: date) -> date:
    """``day`` itself when it is a business day, else the next one."""
    while not is_business_day(calendar, day):
        day += timedelta(days=1)
    return day


@lru_cache(maxsize=8192)
def settlement_date(*, trade_date: date, cycle: int, calendars: tuple[str, ...]) -> date:
    """T+``cycle`` counted in days on which every calendar in ``calendars`` is open.

    A trade executed on a closed day counts from the next open day (T+0 on a Saturday for an
    equity settles on Monday). Both legs of a trade use the same date: delivery versus payment.
    """

    def open_all(day: date) -> bool:
        return all(is_business_day(cal, day) for cal in calendars)

    day = trade_date
    while not open_all(day):
        day += timedelta(days=1)
    remaining = cycle
    while remaining > 0:
        day += timedelta(days=1)
        if open_all(day):
            remaining -= 1
    return day


def business_days_between(*, calendar: str, start: date, end: date) -> int:
    """Business days after ``start`` up to and including ``end`` (0 when ``end <= start``)."""
    days, day = 0, start
    while day < end:
        day += timedelta(days=1)
        if is_business_day(calendar, day):
            days += 1
    return days
