"""Whether the warehouse feed is alive: a dead feed must not look like a quiet night.

A night is stale (run status `stale_data`: stored, reported with a warning at the top of
the email, and a non-zero exit) when

- there are active patients but none has a lab result newer than PRCRS_MAX_LAB_AGE_HOURS;
- the newest lab result in the warehouse (any patient) is older than that, or there is
  none, even with no active patient: an empty or dead feed is never a quiet night;
- there are no active patients although some were active within the last
  PRCRS_ACTIVE_DAYS nights (the newest infusion is less than twice that old): infusions
  stopped arriving, or the last patient just finished (the message says both);
- the newest infusion is older than PRCRS_MAX_INFUSION_AGE_DAYS (default 60; 0: no
  limit), or there is none.

Ages are measured from the moment the night was scored, or from the data cut-off for a
past night (backfill), whichever is earlier. Warehouse timestamps are read as local time
in PRCRS_TIMEZONE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Date, DateTime, Engine, Integer, TextualSelect

from prcrs_batch.settings import Settings
from prcrs_batch.task.data_day import data_cutoff
from prcrs_batch.warehouse.queries import CONTRACT, Source, prepare, query

log = logging.getLogger(__name__)

QUERY = "feed_freshness"  # .sql, in sql/ or sql/omop/


@dataclass(frozen=True)
class FeedState:
    """What the warehouse held for one night, as of `reference`."""

    as_of: date
    reference: datetime  # ages are measured from here (naive, warehouse local time)
    active_patients: int
    newest_infusion: date | None  # on or before the as-of date
    newest_lab: datetime | None  # any patient's, before the data cut-off
    newest_active_lab: datetime | None  # an active patient's, within the freshness limit

    @property
    def lab_age_hours(self) -> float | None:
        """Age of the newest lab result in the warehouse."""
        if self.newest_lab is None:
            return None
        return (self.reference - self.newest_lab).total_seconds() / 3600

    @property
    def infusion_age_days(self) -> int | None:
        """Days from the newest infusion to the as-of date."""
        return None if self.newest_infusion is None else (self.as_of - self.newest_infusion).days


def reference_time(as_of: date, now: datetime) -> datetime:
    """The moment the feed's age is measured from: now, or the end of a past as-of day.

    >>> reference_time(date(2026, 11, 1), datetime(2026, 11, 26, 2, 0))
    datetime.datetime(2026, 11, 2, 0, 0)
    >>> reference_time(date(2026, 11, 26), datetime(2026, 11, 26, 2, 0))
    datetime.datetime(2026, 11, 26, 2, 0)
    """
    return min(now, data_cutoff(as_of))


def _query(source: Source, dialect: str) -> TextualSelect:
    return query(source.folder, QUERY, dialect).columns(
        newest_infusion=Date(),
        active_patients=Integer(),
        newest_lab=DateTime(),
        newest_active_lab=DateTime(),
    )


def read_feed(
    *,
    connection: Connection,
    as_of: date,
    active_days: int,
    max_lab_age_hours: int,
    now: datetime,
    source: Source = CONTRACT,
    zone: ZoneInfo | None = None,
) -> FeedState:
    """The feed's state for the night `as_of` (one cheap query, sql/feed_freshness.sql, or
    sql/omop/'s)."""
    reference = reference_time(as_of, now)
    prepare(connection, source)
    row = connection.execute(
        _query(source, connection.dialect.name),
        {
            "as_of": as_of,
            "first_infusion": as_of - timedelta(days=active_days),
            "window_end": data_cutoff(as_of),
            "fresh_since": reference - timedelta(hours=max_lab_age_hours),
        }
        | source.params(),
    ).one()
    return FeedState(
        as_of=as_of,
        reference=reference,
        active_patients=int(row.active_patients or 0),
        newest_infusion=_as_date(row.newest_infusion),
        newest_lab=_wall_clock(row.newest_lab, zone),
        newest_active_lab=_wall_clock(row.newest_active_lab, zone),
    )


def _wall_clock(value: datetime | date | None, zone: ZoneInfo | None) -> datetime | None:
    """A warehouse time as the naive local time ages are measured in: a timestamptz in
    `zone` (PRCRS_TIMEZONE), a DATE at its midnight.

    >>> _wall_clock(date(2026, 11, 25), None)
    datetime.datetime(2026, 11, 25, 0, 0)
    """
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime.combine(value, time())
    if value.tzinfo is not None:
        return value.astimezone(zone or ZoneInfo("UTC")).replace(tzinfo=None)
    return value


def _as_date(value: date | datetime | None) -> date | None:
    return value.date() if isinstance(value, datetime) else value


def stale_reasons(
    feed: FeedState, *, active_days: int, max_lab_age_hours: int, max_infusion_age_days: int
) -> list[str]:
    """Why the night's data looks stale; empty when the feed looks alive.

    >>> feed = FeedState(date(2026, 11, 26), datetime(2026, 11, 26, 2), 12,
    ...                  date(2026, 11, 20), datetime(2026, 11, 22, 6), None)
    >>> stale_reasons(feed, active_days=30, max_lab_age_hours=48, max_infusion_age_days=0)
    ['none of the 12 active patients has a lab result newer than 48 h (newest lab in the \
warehouse: 2026-11-22 06:00, 92 h old): check the lab feed']
    """
    reasons = []
    lab_age = feed.lab_age_hours
    if feed.active_patients and feed.newest_active_lab is None:
        reasons.append(
            f"none of the {feed.active_patients} active patients has a lab result newer than "
            f"{max_lab_age_hours} h ({_newest_lab(feed)}): check the lab feed"
        )
    elif lab_age is None or lab_age > max_lab_age_hours:
        reasons.append(
            f"{_newest_lab(feed)}, expected within {max_lab_age_hours} h "
            "(PRCRS_MAX_LAB_AGE_HOURS): check the lab feed"
        )
    age = feed.infusion_age_days
    if not feed.active_patients and age is not None and age < 2 * active_days:
        reasons.append(
            f"no active patients, but patients were active within the last {active_days} "
            f"nights (newest infusion {feed.newest_infusion}, {age} days before): check the "
            "infusion feed, unless the last patient has just finished"
        )
    if max_infusion_age_days and (age is None or age > max_infusion_age_days):
        newest = "no infusion at all" if age is None else f"{age} days ago"
        reasons.append(
            f"newest infusion {newest}, expected within {max_infusion_age_days} days "
            "(PRCRS_MAX_INFUSION_AGE_DAYS): check the infusion feed"
        )
    return reasons


def _newest_lab(feed: FeedState) -> str:
    if feed.newest_lab is None or feed.lab_age_hours is None:
        return "no lab result in the warehouse"
    return (
        f"newest lab in the warehouse: {feed.newest_lab:%Y-%m-%d %H:%M}, "
        f"{feed.lab_age_hours:.0f} h old"
    )


def assess_feed(
    warehouse: Engine, settings: Settings, as_of: date, now: datetime | None = None
) -> tuple[FeedState, list[str]]:
    """The feed's state for the night `as_of` and why it looks stale (empty: it does not);
    each reason is logged as a warning. `now`: default the current time in PRCRS_TIMEZONE."""
    moment = now or datetime.now(settings.zone).replace(tzinfo=None)  # warehouse times: local
    with warehouse.connect() as connection:
        feed = read_feed(
            connection=connection,
            as_of=as_of,
            active_days=settings.active_days,
            max_lab_age_hours=settings.max_lab_age_hours,
            now=moment,
            source=Source.from_settings(settings),
            zone=settings.zone,
        )
    reasons = stale_reasons(
        feed,
        active_days=settings.active_days,
        max_lab_age_hours=settings.max_lab_age_hours,
        max_infusion_age_days=settings.max_infusion_age_days,
    )
    for reason in reasons:
        log.warning("night %s: stale data: %s", as_of.isoformat(), reason)
    return feed, reasons
