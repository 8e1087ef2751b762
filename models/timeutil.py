"""Local days and UTC intervals.

A community's day is a local calendar day. In UTC it has 23, 24 or 25 hours (92, 96 or 100
quarter-hours) on daylight-saving change days. All timestamps ECM stores are tz-aware UTC and
mark the start of an interval.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pandas as pd


def day_bounds_utc(
    day: dt.date | str, tz: str | zoneinfo.ZoneInfo
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC start (inclusive) and end (exclusive) of a local day.

    Parameters
    ----------
    day : date or ISO string
        The local calendar day.
    tz : str or ZoneInfo
        The community's time zone.
    """
    d = pd.Timestamp(day).date()
    zone = tz if isinstance(tz, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo(tz)
    start = pd.Timestamp(dt.datetime.combine(d, dt.time(0), tzinfo=zone)).tz_convert("UTC")
    end = pd.Timestamp(
        dt.datetime.combine(d + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    ).tz_convert("UTC")
    return start, end


def day_intervals_utc(
    day: dt.date | str, tz: str | zoneinfo.ZoneInfo, interval_minutes: int = 60
) -> pd.DatetimeIndex:
    """UTC interval starts of a local day: 23, 24 or 25 hours (92, 96 or 100 quarter-hours)."""
    start, end = day_bounds_utc(day, tz)
    return pd.date_range(start, end, freq=f"{interval_minutes}min", inclusive="left")


def expected_intervals(
    day: dt.date | str, tz: str | zoneinfo.ZoneInfo, interval_minutes: int = 60
) -> int:
    """Number of intervals in a local day [-]."""
    start, end = day_bounds_utc(day, tz)
    return int((end - start) / pd.Timedelta(minutes=interval_minutes))


def local_day(ts: pd.Series | pd.DatetimeIndex, tz: str) -> pd.Series:
    """Local calendar day of UTC timestamps, as ``datetime.date`` values."""
    s = pd.Series(pd.DatetimeIndex(ts).tz_convert(tz))
    return s.dt.date.astype(object)


def as_date(day: dt.date | str) -> dt.date:
    """Parse a ``YYYY-MM-DD`` string (or pass a date through)."""
    return pd.Timestamp(day).date()
