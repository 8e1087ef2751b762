"""Prices and tariffs: unit parsing and sanity checks.

Prices are stored in [currency/kWh]. A source declares its unit (``EUR/MWh``, ``USD/kWh``);
values are converted, and a series whose magnitude contradicts its declared unit (e.g. 85.3
declared as EUR/kWh, which is a per-MWh value) is refused with the unit named.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PER_KWH_PLAUSIBLE_MAX = 5.0
"""Largest plausible retail price per kWh in any currency unit ECM supports [currency/kWh]."""


class PriceUnitError(ValueError):
    """A price series has an unknown, mismatched or implausible unit."""


def parse_price_unit(unit: str) -> tuple[str, float]:
    """Parse ``<CUR>/kWh`` or ``<CUR>/MWh`` into (currency, factor to [currency/kWh]).

    Examples
    --------
    >>> parse_price_unit("EUR/MWh")
    ('EUR', 0.001)
    """
    m = re.fullmatch(r"\s*([A-Z]{3})\s*/\s*(kWh|MWh)\s*", unit)
    if not m:
        raise PriceUnitError(f"unknown price unit {unit!r}: expected '<CUR>/kWh' or '<CUR>/MWh'")
    return m.group(1), (1.0 if m.group(2) == "kWh" else 1e-3)


def to_per_kwh(values: pd.Series, unit: str, currency: str, source: str) -> pd.Series:
    """Convert prices to [currency/kWh] and check them.

    Parameters
    ----------
    values : Series
        Prices in ``unit``.
    unit : str
        Declared unit, e.g. ``USD/kWh``.
    currency : str
        The community's currency; the unit's currency must match.
    source : str
        Named in errors.

    Raises
    ------
    PriceUnitError
        Unknown unit, other currency, gaps (NaN) or magnitudes implausible for the unit.
    """
    cur, factor = parse_price_unit(unit)
    if cur != currency:
        raise PriceUnitError(f"{source}: prices in {cur} but the community settles in {currency}")
    v = pd.to_numeric(values, errors="coerce").astype(float)
    if v.isna().any():
        first = int(np.flatnonzero(v.isna().to_numpy())[0])
        raise PriceUnitError(f"{source}: missing or non-numeric price at position {first}")
    out = v * factor
    if (out.abs() > PER_KWH_PLAUSIBLE_MAX).any():
        raise PriceUnitError(
            f"{source}: prices up to {v.abs().max():.4g} {unit} are implausible for {unit} "
            f"(more than {PER_KWH_PLAUSIBLE_MAX} {cur}/kWh); is the unit {cur}/MWh?"
        )
    if unit.endswith("MWh") and (v.abs().max() < 1.0) and (v.abs().max() > 0):
        raise PriceUnitError(
            f"{source}: prices at most {v.abs().max():.4g} {unit} are implausible for {unit}; "
            f"is the unit {cur}/kWh?"
        )
    return out


def carbon_intensity(path: str | Path, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Grid carbon intensity [kg/kWh] by UTC interval start in [start, end), from a file with
    ``ts`` and one value column (Parquet or CSV).

    Raises
    ------
    PriceUnitError
        The file has no value column or negative values (naming the file).
    """
    path = Path(path)
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    cols = [c for c in df.columns if c != "ts"]
    if "ts" not in df.columns or len(cols) != 1:
        raise PriceUnitError(f"{path}: expected columns ts and one carbon intensity column")
    ts = pd.to_datetime(df["ts"], utc=True)
    s = pd.Series(df[cols[0]].to_numpy(dtype=float), index=ts)
    if (s < 0).any():
        raise PriceUnitError(f"{path}: negative carbon intensity in column {cols[0]}")
    return s[(s.index >= start) & (s.index < end)]


def tariff_rows(
    spec: Any,
    price_type: str,
    days: list[dt.date],
    *,
    tz: str,
    currency: str,
    interval_minutes: int = 60,
    holidays: tuple[dt.date, ...] = (),
) -> pd.DataFrame:
    """``prices`` rows of a configured flat or time-of-use price for local ``days``.

    Parameters
    ----------
    spec : models.config.PriceSpec
        Flat or time-of-use (an ``inbox`` spec has no rows here: they come from files).
    price_type : str
        ``import`` or ``export``.
    days : list of date
        Local days.
    tz : str
        Community time zone: periods are in local time (23, 24 or 25 hours a day).
    currency : str
        The community's currency.
    interval_minutes : int
        Interval length [min].
    holidays : tuple of date
        Local dates priced as ``holiday``.

    Returns
    -------
    DataFrame
        ``ts, price_type, price_per_kwh, currency, source, day``; the period's name is in
        ``source`` (``tariff:time_of_use:<name>``).
    """
    from models.config import WEEKDAYS
    from models.timeutil import day_intervals_utc

    cols = ["ts", "price_type", "price_per_kwh", "currency", "source", "day"]
    if spec.inbox or not days:
        return pd.DataFrame(columns=cols)
    frames = []
    hol = set(holidays)
    for d in days:
        ts = pd.DatetimeIndex(day_intervals_utc(d, tz, interval_minutes))
        if spec.flat is not None:
            price = np.full(len(ts), float(spec.flat))
            source = ["tariff:flat"] * len(ts)
        else:
            local = ts.tz_convert(tz)
            day_type = "holiday" if d in hol else WEEKDAYS[d.weekday()]
            price, source = [], []
            for t in local:
                period = next(p for p in spec.time_of_use if p.matches(t.month, day_type, t.hour))
                price.append(period.price_per_kwh)
                source.append(f"tariff:time_of_use:{period.name}")
        frames.append(
            pd.DataFrame(
                {
                    "ts": ts.tz_convert("UTC"),
                    "price_type": price_type,
                    "price_per_kwh": np.asarray(price, dtype=float),
                    "currency": currency,
                    "source": source,
                    "day": d,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[cols]
