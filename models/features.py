"""Forecast features, computed strictly as of each day's issue time (no look-ahead).

A forecast for local day ``d`` is issued at ``issue_time(d)`` (local midnight starting ``d``).
Every feature of a row of day ``d`` uses only what was known then:

- lags of the target at ``ts - 24 h`` when that interval ended before the issue time, else
  ``ts - 48 h`` (so a 25-hour day never peeks at its own first hour), and ``ts - 168 h``;
- weather *forecasts* whose ``issue_time`` is at or before the issue time (the freshest one
  per valid time), never observations of the day;
- calendar terms in local time, and a per-series scale (mean of the last 28 known days).

The frame is long: one row per ``unique_id`` and ``ts`` with ``y`` the target (NaN for the day
being forecast).
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pvlib

from models.timeutil import day_bounds_utc, day_intervals_utc

WEATHER_FEATURES = (
    "temperature_2m",
    "relative_humidity_2m",
    "diffuse_radiation",
    "direct_normal_irradiance",
)
FEATURES: dict[str, list[str]] = {
    "load": [
        "hour",
        "dow",
        "is_weekend",
        "doy_sin",
        "doy_cos",
        "temperature_2m",
        "relative_humidity_2m",
        "lag_1d",
        "lag_2d",
        "lag_7d",
        "mean_7d",
        "profile_28d",
        "profile_dow_4w",
        "level_1d",
        "level_7d",
        "is_holiday",
        "uid_code",
    ],
    "pv": [
        "hour",
        "temperature_2m",
        "diffuse_radiation",
        "direct_normal_irradiance",
        "pvwatts_per_kw",
        "clearsky_ghi",
        "persist_cs",
        "mean_3d_cs",
        "max_7d_cs",
        "lag_1d",
        "mean_7d",
        "level_1d",
        "uid_code",
    ],
    "price": ["hour", "dow", "is_weekend", "is_holiday", "month", "lag_1d", "lag_7d"],
}
SCALED = (
    "lag_1d",
    "lag_2d",
    "lag_7d",
    "mean_3d",
    "mean_7d",
    "max_7d",
    "profile_28d",
    "profile_dow_4w",
    "level_1d",
    "level_7d",
    "persist_cs",
    "mean_3d_cs",
    "max_7d_cs",
)
"""Columns divided by the series' scale, like the target (``y_norm = y / scale``)."""
"""Model features per target (lags and the PV physics term are normalised by the scale)."""


def features_for(target: str, weather_basis: str = "forecast") -> list[str]:
    """The model columns of ``target``: without the weather columns when no weather forecast
    is stored (``weather_basis='clearsky'``: PV keeps its clear-sky physics terms)."""
    cols = FEATURES[target]
    if weather_basis == "forecast":
        return list(cols)
    return [c for c in cols if c not in WEATHER_FEATURES]


def weather_covers(
    weather: pd.DataFrame | None, days: Sequence[dt.date], tz: str, interval_minutes: int = 60
) -> bool:
    """Whether a forecast issued by each day's issue time covers every interval of ``days``."""
    if weather is None or weather.empty:
        return False
    w = weather_as_of(weather, days, tz)
    w = w[w[list(WEATHER_FEATURES)].notna().any(axis=1)]
    have = set(pd.DatetimeIndex(w["ts"]))
    return all(
        t in have
        for d in days
        for t in pd.DatetimeIndex(day_intervals_utc(d, tz, interval_minutes))
    )


def clearsky_ghi(ts: pd.DatetimeIndex, latitude: float, longitude: float) -> np.ndarray:
    """Clear-sky GHI (pvlib Haurwitz) at mid-interval [W/m^2]; known at any time."""
    zen = pd.Series(_zenith(ts, latitude, longitude), index=ts)
    return pvlib.clearsky.haurwitz(zen)["ghi"].to_numpy(dtype=float)


def _zenith(ts: pd.DatetimeIndex, latitude: float, longitude: float) -> np.ndarray:
    """Apparent solar zenith at mid-interval [deg]."""
    mid = ts + pd.Timedelta(minutes=30)
    sp = pvlib.solarposition.get_solarposition(mid, latitude, longitude)
    return sp["apparent_zenith"].to_numpy(dtype=float)


def clearsky_weather(ts: pd.DatetimeIndex, latitude: float, longitude: float) -> pd.DataFrame:
    """Clear-sky irradiance (Haurwitz GHI split by Erbs) and 20 degC, indexed by ts.

    Used where no weather forecast is stored: PV is then forecast from clear-sky physics.
    """
    mid = ts + pd.Timedelta(minutes=30)
    zen = _zenith(ts, latitude, longitude)
    ghi = pvlib.clearsky.haurwitz(pd.Series(zen, index=ts))["ghi"].to_numpy(dtype=float)
    split = pvlib.irradiance.erbs(ghi, zen, np.asarray(pd.DatetimeIndex(mid).dayofyear))
    return pd.DataFrame(
        {
            "temperature_2m": 20.0,
            "relative_humidity_2m": np.nan,
            "diffuse_radiation": np.nan_to_num(np.asarray(split["dhi"], dtype=float)),
            "direct_normal_irradiance": np.nan_to_num(np.asarray(split["dni"], dtype=float)),
        },
        index=ts,
    )


def apply_scale(frame: pd.DataFrame, scale: pd.Series) -> pd.DataFrame:
    """Divide the target and the :data:`SCALED` columns of raw feature rows by each series'
    scale [kWh or kWp]; a copy with the ``scale`` column set (missing or non-positive: 1)."""
    f = frame.copy()
    sc = f["unique_id"].map(scale).astype(float).fillna(1.0).to_numpy(dtype=float)
    sc = np.where(sc > 0, sc, 1.0)
    f["scale"] = sc
    f["y_norm"] = f["y"].to_numpy(dtype=float) / sc
    for c in SCALED:
        if c in f:
            f[c] = f[c].to_numpy(dtype=float) / sc
    return f


def holiday_calendar(
    country: str | None, subdiv: str | None, years: Sequence[int], extra: Sequence[dt.date] = ()
) -> list[dt.date]:
    """Public holidays of ``country`` (ISO code, ``holidays`` package) plus ``extra`` dates.

    Holidays are published years ahead, so they are known at every issue time.
    """
    return sorted(set(extra) | _public_holidays(country, subdiv, tuple(years)))


@functools.lru_cache(maxsize=16)
def _public_holidays(country: str | None, subdiv: str | None, years: tuple[int, ...]) -> set:
    """The ``holidays`` package's calendar, computed once per community and years."""
    if not country:
        return set()
    import holidays

    return set(holidays.country_holidays(country, subdiv=subdiv, years=list(years)))


def issue_time(day: dt.date, tz: str) -> pd.Timestamp:
    """Issue time of the forecast for local ``day``: local midnight starting it, in UTC."""
    return day_bounds_utc(day, tz)[0]


def weather_as_of(weather: pd.DataFrame, days: Sequence[dt.date], tz: str) -> pd.DataFrame:
    """For each day, the freshest weather forecast per valid time issued by the day's issue time.

    Parameters
    ----------
    weather : DataFrame
        Rows of the ``weather`` table (observations are ignored).
    days : sequence of date
        Local days.
    tz : str
        Community time zone.

    Returns
    -------
    DataFrame
        ``ts`` plus :data:`WEATHER_FEATURES`, one row per valid time in the days.
    """
    fc = weather[weather["kind"] == "forecast"]
    if not len(days) or fc.empty:
        return pd.DataFrame(columns=["ts", *WEATHER_FEATURES])
    # each valid time belongs to one local day, whose issue time bounds what may be used
    issues = {d: day_bounds_utc(d, tz)[0] for d in days}
    vday = pd.Series(pd.DatetimeIndex(fc["ts"]).tz_convert(tz).date, index=fc.index)
    fc = fc[vday.isin(issues).to_numpy()]
    vday = vday[fc.index]
    limit = pd.to_datetime(vday.map(issues), utc=True)
    w = fc[(fc["issue_time"] <= limit).to_numpy()]
    w = w.sort_values(["ts", "issue_time"]).groupby("ts", as_index=False).last()
    return w[["ts", *WEATHER_FEATURES]].reset_index(drop=True)


def pv_physics(
    ts: pd.DatetimeIndex,
    weather: pd.DataFrame,
    latitude: float,
    longitude: float,
    tilt_deg: float = 20.0,
    azimuth_deg: float = 180.0,
) -> pd.DataFrame:
    """PVWatts output per installed kW and clear-sky GHI from forecast irradiance (pvlib).

    Parameters
    ----------
    ts : DatetimeIndex
        Interval starts (UTC); the sun is placed at mid-interval.
    weather : DataFrame
        Indexed by ts with temperature [degC], diffuse [W/m^2] and DNI [W/m^2].
    latitude, longitude : float
        Site [deg].
    tilt_deg, azimuth_deg : float
        Assumed plane of array [deg] (rooftop orientations are not in the data).

    Returns
    -------
    DataFrame
        ``pvwatts_per_kw`` [W/kW] and ``clearsky_ghi`` [W/m^2], indexed by ts.
    """
    mid = ts + pd.Timedelta(minutes=30)
    sp = pvlib.solarposition.get_solarposition(mid, latitude, longitude)
    zen = sp["apparent_zenith"].to_numpy()
    dni = weather["direct_normal_irradiance"].to_numpy(dtype=float)
    dhi = weather["diffuse_radiation"].to_numpy(dtype=float)
    cosz = np.clip(np.cos(np.radians(zen)), 0, None)
    ghi = dni * cosz + dhi
    poa = pvlib.irradiance.get_total_irradiance(
        tilt_deg,
        azimuth_deg,
        sp["apparent_zenith"].to_numpy(),
        sp["azimuth"].to_numpy(),
        dni,
        ghi,
        dhi,
    )["poa_global"]
    poa = np.nan_to_num(np.asarray(poa, dtype=float), nan=0.0).clip(0)
    tcell = pvlib.temperature.sapm_cell(
        poa, weather["temperature_2m"].to_numpy(dtype=float), 1.0, -3.56, -0.075, 3
    )
    pdc = pvlib.pvsystem.pvwatts_dc(poa, tcell, pdc0=1000.0, gamma_pdc=-0.004)
    cs = pvlib.clearsky.haurwitz(pd.Series(zen, index=ts))
    return pd.DataFrame(
        {
            "pvwatts_per_kw": np.asarray(pdc, dtype=float).clip(0),
            "clearsky_ghi": cs["ghi"].to_numpy(),
        },
        index=ts,
    )


def build_features(
    history: pd.DataFrame,
    days: Sequence[dt.date],
    *,
    target: str,
    tz: str,
    weather: pd.DataFrame | None = None,
    scale: pd.Series | None = None,
    latitude: float = 0.0,
    longitude: float = 0.0,
    interval_minutes: int = 60,
    weather_basis: str = "forecast",
    holiday_days: Sequence[dt.date] | None = None,
) -> pd.DataFrame:
    """Feature rows for every series and interval of ``days`` (see the module docstring).

    Parameters
    ----------
    history : DataFrame
        ``unique_id, ts, y``: actuals known so far (all before the last day's issue time for
        the day being forecast; earlier days' rows are training targets).
    days : sequence of date
        Local days to build rows for, ascending.
    target : str
        ``load``, ``pv`` or ``price``.
    tz : str
        Community time zone.
    weather : DataFrame, optional
        ``weather`` table rows (needed for load and pv).
    scale : Series, optional
        Per ``unique_id`` scale [kWh or kWp]; lags and ``y_norm`` are divided by it.
    latitude, longitude : float
        Site, for the PV physics term.
    weather_basis : str
        ``forecast``: weather forecasts are features (they must cover the days);
        ``clearsky``: none is used, PV's physics terms come from :func:`clearsky_weather`.
    holiday_days : sequence of date, optional
        Public holidays (local dates), known in advance (see :func:`holiday_calendar`).

    Returns
    -------
    DataFrame
        ``unique_id, ts, day, y, y_norm, scale`` and the features of ``FEATURES[target]``.
    """
    ids = sorted(history["unique_id"].unique())
    hist = history.set_index(["unique_id", "ts"])["y"].sort_index()
    hist = hist[~hist.index.duplicated(keep="last")]
    per_day = [day_intervals_utc(d, tz, interval_minutes) for d in days]
    n_ids = len(ids)
    ts_all = np.concatenate([np.tile(t.to_numpy(), n_ids) for t in per_day])
    f = pd.DataFrame(
        {
            "unique_id": np.concatenate([np.repeat(ids, len(t)) for t in per_day]),
            "ts": pd.DatetimeIndex(ts_all).tz_localize("UTC")
            if pd.DatetimeIndex(ts_all).tz is None
            else pd.DatetimeIndex(ts_all).tz_convert("UTC"),
            "day": np.concatenate(
                [
                    np.full(len(t) * n_ids, d, dtype=object)
                    for d, t in zip(days, per_day, strict=True)
                ]
            ),
            "_issue": pd.DatetimeIndex(
                np.concatenate([np.full(len(t) * n_ids, t[0].to_datetime64()) for t in per_day])
            ).tz_localize("UTC"),
        }
    )

    # the history on a regular UTC grid (series x interval), so that a lag is an index shift
    step = pd.Timedelta(minutes=interval_minutes)
    h_ts = pd.DatetimeIndex(hist.index.get_level_values("ts")).tz_convert("UTC")
    t0 = min(h_ts.min(), f["ts"].min()) - pd.Timedelta(days=60) if len(h_ts) else f["ts"].min()
    t1 = max(h_ts.max() if len(h_ts) else f["ts"].max(), f["ts"].max())
    n_grid = int((t1 - t0) / step) + 1
    grid = np.full((len(ids), n_grid), np.nan)
    code = {u: i for i, u in enumerate(ids)}
    if len(h_ts):
        on_grid = ((h_ts - t0) % step) == pd.Timedelta(0)
        pos = ((h_ts - t0) // step).to_numpy()
        u_idx = pd.Index(hist.index.get_level_values("unique_id")).map(code).to_numpy()
        grid[u_idx[on_grid], pos[on_grid]] = hist.to_numpy(dtype=float)[on_grid]
    row_u = f["unique_id"].map(code).to_numpy()
    row_p = ((f["ts"] - t0) // step).to_numpy().astype(np.int64)

    def look(offset_h: int) -> np.ndarray:
        p = row_p - int(pd.Timedelta(hours=offset_h) / step)
        ok = (p >= 0) & (p < n_grid)
        out = np.full(len(p), np.nan)
        out[ok] = grid[row_u[ok], p[ok]]
        return out

    known_24 = (
        f["ts"] - pd.Timedelta(hours=24) + pd.Timedelta(minutes=interval_minutes) <= f["_issue"]
    ).to_numpy()
    lag1 = np.where(known_24, look(24), look(48))
    # same local hour k days back; k = 1 falls back to two days where yesterday's hour was
    # not over at the issue time (the last hour of a 25-hour day)
    prev = np.column_stack([look(24 * k) if k > 1 else lag1 for k in range(1, 29)])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        f["lag_1d"] = lag1
        f["lag_2d"] = look(48)
        f["lag_7d"] = look(168)
        f["mean_3d"] = np.nanmean(prev[:, :3], axis=1)
        f["mean_7d"] = np.nanmean(prev[:, :7], axis=1)
        f["max_7d"] = np.nanmax(prev[:, :7], axis=1)
        f["profile_28d"] = np.nanmean(prev, axis=1)
        f["profile_dow_4w"] = np.nanmean(prev[:, [6, 13, 20, 27]], axis=1)
    # daily levels: mean of the last complete local day(s) before the issue time
    # from the sorted series, so that the sums do not depend on the row order of ``history``
    # (a query without ORDER BY): a last-bit difference changes the models' fingerprints
    hs = hist.reset_index()
    hh = (
        hs.assign(day=pd.DatetimeIndex(hs["ts"]).tz_convert(tz).date)
        .groupby(["unique_id", "day"])["y"]
        .mean()
    )
    day_idx = pd.Index(pd.to_datetime(f["day"]))
    for col, back in (("level_1d", [1]), ("level_7d", list(range(1, 8)))):
        vals = np.column_stack(
            [
                hh.reindex(
                    pd.MultiIndex.from_arrays(
                        [f["unique_id"], (day_idx - pd.Timedelta(days=b)).date]
                    )
                ).to_numpy(dtype=float)
                for b in back
            ]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            f[col] = np.nanmean(vals, axis=1)
    f["scale"] = 1.0
    idx = pd.MultiIndex.from_arrays([f["unique_id"], f["ts"]])
    f["y"] = hist.reindex(idx).to_numpy(dtype=float)
    f["y_norm"] = f["y"]
    if scale is not None:
        f = apply_scale(f, scale)
    local = pd.DatetimeIndex(f["ts"]).tz_convert(tz)
    f["hour"] = local.hour
    f["dow"] = local.dayofweek
    f["is_weekend"] = (local.dayofweek >= 5).astype(int)
    hol = set(holiday_days or ())
    f["is_holiday"] = pd.Series(local.date).isin(hol).astype(int).to_numpy()
    f["month"] = local.month
    doy = local.dayofyear.to_numpy()
    f["doy_sin"] = np.sin(2 * np.pi * doy / 365.25)
    f["doy_cos"] = np.cos(2 * np.pi * doy / 365.25)
    f["uid_code"] = pd.Categorical(f["unique_id"], categories=ids).codes
    if target == "pv":
        t_all = pd.DatetimeIndex(f["ts"].unique())
        prev = clearsky_ghi(t_all - pd.Timedelta(hours=24), latitude, longitude)
        now = clearsky_ghi(t_all, latitude, longitude)
        f["clearsky_ghi_lag_1d"] = f["ts"].map(pd.Series(prev, index=t_all)).to_numpy(float)
        cs_now = f["ts"].map(pd.Series(now, index=t_all)).to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(
                f["clearsky_ghi_lag_1d"] > 10.0,
                np.clip(cs_now / f["clearsky_ghi_lag_1d"], 0.0, 3.0),
                1.0,
            )
        # clear-sky-index persistence of yesterday and of the 3- and 7-day same-hour means
        f["persist_cs"] = f["lag_1d"].to_numpy(float) * ratio
        f["mean_3d_cs"] = f["mean_3d"].to_numpy(float) * ratio
        f["max_7d_cs"] = f["max_7d"].to_numpy(float) * ratio
    if target in ("load", "pv") and weather_basis == "clearsky":
        if target == "pv":
            t_all = pd.DatetimeIndex(f["ts"].unique())
            phys = pv_physics(
                t_all, clearsky_weather(t_all, latitude, longitude), latitude, longitude
            )
            f = f.join(phys, on="ts")
            f["pvwatts_per_kw"] = f["pvwatts_per_kw"] / 1000.0
    elif target in ("load", "pv"):
        if weather is None:
            raise ValueError(f"target {target!r} needs weather forecasts")
        w = weather_as_of(weather, days, tz).set_index("ts")
        w = w.reindex(pd.DatetimeIndex(f["ts"].unique()))
        missing = w[list(WEATHER_FEATURES)].isna().all(axis=1)
        if missing.any():
            first = w.index[missing.to_numpy()][0]
            raise ValueError(
                f"no weather forecast issued by the issue time for {int(missing.sum())} "
                f"interval(s), first {first.isoformat()}"
            )
        if target == "pv":
            phys = pv_physics(pd.DatetimeIndex(w.index), w, latitude, longitude)
            w = w.join(phys)
        f = f.join(w, on="ts")
        if target == "pv":
            f["pvwatts_per_kw"] = f["pvwatts_per_kw"] / 1000.0
    return f.drop(columns="_issue")
