"""A night's data day, defined once (METHOD.md point 8): the day whose labs a night scores.

Training row t holds day t's labs and predicts days t+1..t+h. A night run at 02:00 has
yesterday's labs, not today's: its data day is yesterday, and everything else follows from
it - the data cut-off (the end of the data day), the target days (onset by the end of day
data_day + h), the dates stored and monitored, and the report's wording (read the morning
after the data day). A backfilled night with the whole day's data is the same row.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def data_day(moment: datetime) -> date:
    """The data day of a night run at `moment` (the site's wall-clock time): the last
    complete day, yesterday.

    >>> data_day(datetime(2026, 3, 2, 2, 0)), data_day(datetime(2026, 3, 2, 23, 59))
    (datetime.date(2026, 3, 1), datetime.date(2026, 3, 1))
    """
    return moment.date() - timedelta(days=1)


def current_data_day(zone: ZoneInfo) -> date:
    """The data day of a night run now, in the site's time zone (PRCRS_TIMEZONE)."""
    return data_day(datetime.now(zone).replace(tzinfo=None))


def data_cutoff(day: date) -> datetime:
    """The end of the data day (exclusive): a night reads labs collected before it.

    >>> data_cutoff(date(2026, 3, 1))
    datetime.datetime(2026, 3, 2, 0, 0)
    """
    return datetime.combine(day + timedelta(days=1), time.min)


def target_day(day: date, horizon: int) -> date:
    """The last day of a risk's window: "within h days" of data day t is onset on days
    t+1..t+h, by the end of day t+h.

    >>> target_day(date(2026, 3, 1), 3)
    datetime.date(2026, 3, 4)
    """
    return day + timedelta(days=horizon)


def reading_day(day: date) -> date:
    """The morning the night's report is read: the day after its data day."""
    return day + timedelta(days=1)
