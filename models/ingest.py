"""Ingestion logic: shaping source rows into table contracts, and data-quality checks.

The checks here back the Dagster asset checks that stand in front of everything that reaches
money: completeness per local day (23, 24 or 25 hours), duplicates, negative or implausible
values, and unit sanity.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.meters import MeteringPointInfo
from models.timeutil import day_intervals_utc, local_day

MAX_PLAUSIBLE_KW = 60.0
"""Largest plausible average power of a household or small-business metering point [kW]."""

PLAUSIBLE_PEAK_FACTOR = 1.5
"""How far above its configured size (kWp, contracted kW) a point's average power may go."""


@dataclass
class CheckResult:
    """Outcome of one data-quality check."""

    passed: bool
    description: str
    metadata: dict[str, float | int | str] = field(default_factory=dict)


def weather_frame(rows: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Add the local ``day`` of each valid time to weather source rows."""
    out = rows.copy()
    out["day"] = local_day(out["ts"], tz).to_numpy()
    return out


def _ranges(ts: pd.DatetimeIndex, tz: str, interval_minutes: int) -> str:
    """Compress interval starts into local ``HH:MM-HH:MM`` ranges (end exclusive)."""
    if len(ts) == 0:
        return ""
    local = pd.DatetimeIndex(sorted(ts)).tz_convert(tz)
    step = pd.Timedelta(minutes=interval_minutes)
    out, a, b = [], local[0], local[0]
    for t in local[1:]:
        if t - b == step:
            b = t
        else:
            out.append((a, b))
            a = b = t
    out.append((a, b))

    def end(x: pd.Timestamp, y: pd.Timestamp) -> str:
        e = y + step
        return "24:00" if e.date() > x.date() and (e.hour, e.minute) == (0, 0) else f"{e:%H:%M}"

    return ", ".join(f"{x:%H:%M}-{end(x, y)}" for x, y in out)


def check_readings_complete(
    readings: pd.DataFrame, day: dt.date, tz: str, metering_points: Mapping[str, MeteringPointInfo]
) -> CheckResult:
    """Every metering point has every interval of the local day (23, 24 or 25 hours)."""
    problems = []
    total_expected = missing_total = 0
    for mp, info in sorted(metering_points.items()):
        if day < info.valid_from or (info.valid_to is not None and day > info.valid_to):
            continue
        expected = pd.DatetimeIndex(day_intervals_utc(day, tz, info.interval_minutes))
        total_expected += len(expected)
        got = readings.loc[readings["metering_point_id"] == mp, "ts"]
        missing = expected[~expected.isin(got)]
        if len(missing):
            missing_total += len(missing)
            problems.append(
                f"{mp}: {len(missing)} of {len(expected)} intervals missing "
                f"({_ranges(missing, tz, info.interval_minutes)} local)"
            )
    estimated = int((readings["quality"] == "estimated").sum()) if "quality" in readings else 0
    return CheckResult(
        not problems,
        (
            f"every metering point has every interval of {day}"
            if not problems
            else f"{day} is not settled on missing meter data: "
            + "; ".join(problems[:10])
            + (f"; and {len(problems) - 10} more metering points" if len(problems) > 10 else "")
        ),
        {
            "expected_intervals": total_expected,
            "missing_intervals": missing_total,
            "incomplete_metering_points": len(problems),
            "estimated_intervals": estimated,
            "details": "; ".join(problems[:20]) or "complete",
        },
    )


def estimate_missing_readings(
    readings: pd.DataFrame,
    day: dt.date,
    tz: str,
    metering_points: Mapping[str, MeteringPointInfo],
    lookback_days: int = 7,
) -> pd.DataFrame:
    """Flagged estimates for the missing intervals of ``day`` (``missing_data: estimate``).

    An estimate is the mean of the same interval on the previous ``lookback_days`` days that
    have a reading; an interval with none stays missing (and the day is refused).

    Parameters
    ----------
    readings : DataFrame
        ``meter_readings`` rows of the day and the ``lookback_days`` before it.

    Returns
    -------
    DataFrame
        ``meter_readings`` rows with ``quality='estimated'``.
    """
    hist = readings.set_index(["metering_point_id", "ts"])["kwh"]
    rows = []
    for mp, info in sorted(metering_points.items()):
        if day < info.valid_from or (info.valid_to is not None and day > info.valid_to):
            continue
        expected = pd.DatetimeIndex(day_intervals_utc(day, tz, info.interval_minutes))
        got = readings.loc[readings["metering_point_id"] == mp, "ts"]
        for t in expected[~expected.isin(got)]:
            local = t.tz_convert(tz)
            prev = []
            for k in range(1, lookback_days + 1):
                past = (local - pd.Timedelta(days=k)).tz_convert("UTC")
                if (mp, past) in hist.index:
                    prev.append(float(hist.loc[(mp, past)]))
            if prev:
                rows.append((mp, t, float(np.mean(prev)), local.date()))
    out = pd.DataFrame(rows, columns=["metering_point_id", "ts", "kwh", "day"])
    out["ts"] = pd.DatetimeIndex(out["ts"]).tz_convert("UTC") if len(out) else out["ts"]
    out["quality"] = "estimated"
    out["source"] = f"ecm:estimate(mean of the same interval, previous {lookback_days} days)"
    out["source_sha256"] = None
    out["ingested_at"] = pd.Timestamp.now(tz="UTC").floor("s")
    return out


def check_readings_unique(readings: pd.DataFrame) -> CheckResult:
    """No metering point has the same interval twice."""
    dup = int(readings.duplicated(["metering_point_id", "ts"]).sum())
    return CheckResult(dup == 0, "no duplicate (metering point, interval)", {"duplicates": dup})


def plausible_kw(config: Any) -> dict[str, float]:
    """Largest plausible average power per metering point [kW]: :data:`MAX_PLAUSIBLE_KW`,
    or more where the configuration says the point is bigger (a production point up to
    ``PLAUSIBLE_PEAK_FACTOR`` x its kWp, a consumption point up to that factor x its
    contracted power). A 480 kWp community plant is thus not implausible at 400 kWh an hour."""
    out: dict[str, float] = {}
    for m in config.members:
        for mp in m.metering_points:
            size = m.pv_kwp if mp.direction == "production" else m.contracted_power_kw or 0.0
            out[mp.id] = max(MAX_PLAUSIBLE_KW, PLAUSIBLE_PEAK_FACTOR * size)
    pv = config.shared_assets.pv
    if pv is not None:
        out[pv.metering_point] = max(MAX_PLAUSIBLE_KW, PLAUSIBLE_PEAK_FACTOR * pv.kwp)
    return out


def check_readings_plausible(
    readings: pd.DataFrame,
    interval_minutes: int = 60,
    limits_kw: Mapping[str, float] | None = None,
) -> CheckResult:
    """No negative energy, none above the point's plausible power x interval, no NaN.

    Parameters
    ----------
    readings : DataFrame
        ``metering_point_id, kwh`` per interval.
    interval_minutes : int
        Interval length [min].
    limits_kw : Mapping[str, float], optional
        Plausible power per metering point (:func:`plausible_kw`) [kW]; others (and all,
        without it) :data:`MAX_PLAUSIBLE_KW`.
    """
    kwh = readings["kwh"].to_numpy(dtype=float)
    hours = interval_minutes / 60.0
    if limits_kw:
        kw = readings["metering_point_id"].map(limits_kw).fillna(MAX_PLAUSIBLE_KW)
        limit = kw.to_numpy(dtype=float) * hours
    else:
        limit = np.full(len(kwh), MAX_PLAUSIBLE_KW * hours)
    neg = int((kwh < 0).sum())
    high = int((kwh > limit).sum())
    nan = int(np.isnan(kwh).sum())
    bound = f"{MAX_PLAUSIBLE_KW * hours:g} kWh per interval"
    if limits_kw and len(limit) and limit.max() > MAX_PLAUSIBLE_KW * hours:
        bound += " (more for points the configuration sizes larger)"
    return CheckResult(
        neg == 0 and high == 0 and nan == 0,
        f"energies are finite, >= 0 and <= {bound}",
        {
            "negative": neg,
            "implausibly_high": high,
            "missing_values": nan,
            "max_kwh": float(np.nanmax(kwh)) if len(kwh) else 0.0,
        },
    )


def check_prices(
    prices: pd.DataFrame, day: dt.date, tz: str, interval_minutes: int = 60
) -> CheckResult:
    """Import and export prices cover the day, in [currency/kWh] and plausible."""
    expected = pd.DatetimeIndex(day_intervals_utc(day, tz, interval_minutes))
    n = len(expected)
    counts = prices.groupby("price_type")["ts"].nunique().to_dict()
    ok_count = counts.get("import", 0) == n and counts.get("export", 0) == n
    v = prices["price_per_kwh"].to_numpy(dtype=float)
    ok_unit = bool(len(v)) and bool(np.all((v >= 0) & (v < 5.0)))
    gaps = []
    for t in ("import", "export"):
        have = prices.loc[prices["price_type"] == t, "ts"]
        miss = expected[~expected.isin(have)]
        if len(miss):
            gaps.append(f"{t} price missing {_ranges(miss, tz, interval_minutes)} local")
    return CheckResult(
        ok_count and ok_unit,
        (
            "import and export prices for every interval, in [currency/kWh] between 0 and 5"
            if ok_count and ok_unit
            else f"{day} is not planned without prices: "
            + ("; ".join(gaps) or "price out of range")
        ),
        {
            "expected_intervals": n,
            "import_intervals": int(counts.get("import", 0)),
            "export_intervals": int(counts.get("export", 0)),
            "max_price_per_kwh": float(v.max()) if len(v) else 0.0,
        },
    )


def check_weather_forecasts(weather: pd.DataFrame, day: dt.date, tz: str) -> CheckResult:
    """A forecast issued by the day's issue time exists for every interval of the day."""
    expected = day_intervals_utc(day, tz)
    issue = expected[0]
    fc = weather[(weather["kind"] == "forecast") & (weather["issue_time"] <= issue)]
    covered = int(pd.DatetimeIndex(expected).isin(fc["ts"]).sum())
    return CheckResult(
        covered == len(expected),
        "a weather forecast issued by the issue time covers every interval",
        {"expected_intervals": len(expected), "covered_intervals": covered},
    )
