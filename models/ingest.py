"""Ingestion logic: shaping source rows into table contracts, and data-quality checks.

The checks here back the Dagster asset checks that stand in front of everything that reaches
money: completeness per local day (23, 24 or 25 hours), duplicates, negative or implausible
values, and unit sanity.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.meters import MeteringPointInfo
from models.prices import to_per_kwh
from models.timeutil import day_intervals_utc, local_day

MAX_PLAUSIBLE_KW = 60.0
"""Largest plausible average power of a household or small-business metering point [kW]."""


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


def price_frame(
    import_rows: pd.DataFrame,
    *,
    unit: str,
    currency: str,
    export_price: float,
    tz: str,
    source: str,
) -> pd.DataFrame:
    """The ``prices`` rows: the time-of-use import series (unit-checked) and the export price.

    Parameters
    ----------
    import_rows : DataFrame
        ``ts, price`` in ``unit``.
    unit : str
        Declared unit of the import prices, e.g. ``USD/kWh`` or ``EUR/MWh``.
    currency : str
        The community's currency.
    export_price : float
        Flat export price [currency/kWh].
    """
    imp = pd.DataFrame(
        {
            "ts": import_rows["ts"].to_numpy(),
            "price_type": "import",
            "price_per_kwh": to_per_kwh(import_rows["price"], unit, currency, source).to_numpy(),
            "currency": currency,
            "source": source,
        }
    )
    exp = imp.assign(
        price_type="export", price_per_kwh=float(export_price), source="tariff:export_price"
    )
    out = pd.concat([imp, exp], ignore_index=True)
    out["ts"] = pd.DatetimeIndex(out["ts"]).tz_convert("UTC")
    out["day"] = local_day(out["ts"], tz).to_numpy()
    return out


def check_readings_complete(
    readings: pd.DataFrame, day: dt.date, tz: str, metering_points: Mapping[str, MeteringPointInfo]
) -> CheckResult:
    """Every metering point has every interval of the local day (23, 24 or 25 hours)."""
    problems = []
    total_expected = 0
    for mp, info in sorted(metering_points.items()):
        if day < info.valid_from or (info.valid_to is not None and day > info.valid_to):
            continue
        expected = day_intervals_utc(day, tz, info.interval_minutes)
        total_expected += len(expected)
        got = readings.loc[readings["metering_point_id"] == mp, "ts"]
        n_got = int(got.isin(expected).sum())
        if n_got != len(expected):
            problems.append(f"{mp}: expected {len(expected)}, got {n_got}")
    return CheckResult(
        not problems,
        "every metering point has every interval of the local day",
        {
            "expected_intervals": total_expected,
            "incomplete_metering_points": len(problems),
            "details": "; ".join(problems[:20]) or "complete",
        },
    )


def check_readings_unique(readings: pd.DataFrame) -> CheckResult:
    """No metering point has the same interval twice."""
    dup = int(readings.duplicated(["metering_point_id", "ts"]).sum())
    return CheckResult(dup == 0, "no duplicate (metering point, interval)", {"duplicates": dup})


def check_readings_plausible(readings: pd.DataFrame, interval_minutes: int = 60) -> CheckResult:
    """No negative energy, none above :data:`MAX_PLAUSIBLE_KW` x interval, no NaN."""
    kwh = readings["kwh"].to_numpy(dtype=float)
    limit = MAX_PLAUSIBLE_KW * interval_minutes / 60.0
    neg = int((kwh < 0).sum())
    high = int((kwh > limit).sum())
    nan = int(np.isnan(kwh).sum())
    return CheckResult(
        neg == 0 and high == 0 and nan == 0,
        f"energies are finite, >= 0 and <= {limit:g} kWh per interval",
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
    n = len(day_intervals_utc(day, tz, interval_minutes))
    counts = prices.groupby("price_type")["ts"].nunique().to_dict()
    ok_count = counts.get("import", 0) == n and counts.get("export", 0) == n
    v = prices["price_per_kwh"].to_numpy(dtype=float)
    ok_unit = bool(len(v)) and bool(np.all((v >= 0) & (v < 5.0)))
    return CheckResult(
        ok_count and ok_unit,
        "import and export prices for every interval, in [currency/kWh] between 0 and 5",
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
