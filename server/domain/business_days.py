"""TARGET2 business days: the calendar on which SEPA credit transfers settle.

Why TARGET2 and not a national calendar: SEPA credit transfers are cleared and settled on TARGET2
days — every weekday except New Year's Day, Good Friday, Easter Monday, 1 May and 25/26 December — in
every SEPA country alike. "Booked within N business days" is counted on it, so a payout paid on a
Thursday before Easter is not reported as unbooked on Tuesday.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache

__all__ = ["add_business_days", "business_days_between", "easter_sunday", "is_business_day"]


def easter_sunday(year: int) -> date:
    """Easter Sunday of the Gregorian calendar (the anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return date(year, month, day + 1)


@cache
def _holidays(year: int) -> frozenset[date]:
    easter = easter_sunday(year)
    return frozenset(
        {
            date(year, 1, 1),
            easter - timedelta(days=2),  # Good Friday
            easter + timedelta(days=1),  # Easter Monday
            date(year, 5, 1),
            date(year, 12, 25),
            date(year, 12, 26),
        }
    )


def is_business_day(day: date) -> bool:
    """True on a TARGET2 settlement day."""
    return day.weekday() < 5 and day not in _holidays(day.year)


def add_business_days(day: date, count: int) -> date:
    """The business day ``count`` business days after ``day`` (``day`` itself need not be one)."""
    if count < 0:
        raise ValueError("count must be 0 or more")
    current = day
    while count > 0:
        current += timedelta(days=1)
        if is_business_day(current):
            count -= 1
    return current


def business_days_between(start: date, end: date) -> int:
    """Business days after ``start`` up to and including ``end`` (0 when ``end <= start``)."""
    count, current = 0, start
    while current < end:
        current += timedelta(days=1)
        if is_business_day(current):
            count += 1
    return count
