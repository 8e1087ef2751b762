"""Rule-based anomaly flags on meter readings and on forecasts against actuals.

Two families of checks produce rows of the ``anomalies`` table (see :mod:`models.contracts`):

* :func:`meter_anomalies`: per metering point and local day, ``gap`` (missing intervals),
  ``negative`` (kWh below zero), ``spike`` (far above the point's robust level) and
  ``flatline`` (the same non-zero value repeated, typical of a stuck meter or of substitute
  values);
* :func:`forecast_anomalies`: per forecast series, ``forecast_miss`` when several actuals fall
  well outside the forecast's q10-q90 band.

Every flag carries a human ``message`` with the numbers and a JSON ``evidence`` string with the
numbers behind it. Legitimate zeros (PV at night, a vacant home) are never flagged. The rules are
pure functions of their inputs: no I/O, no clock.

Conventions: timestamps are tz-aware UTC and mark the *start* of an interval; ``ts_end`` is the
*end* of the last interval concerned; energies are [kWh] per interval.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ANOMALY_COLUMNS = [
    "day",
    "rule",
    "severity",
    "subject_id",
    "ts_start",
    "ts_end",
    "message",
    "evidence",
]
"""Columns of the ``anomalies`` table, in order."""

RULES = (
    "gap",
    "negative",
    "spike",
    "flatline",
    "vacancy",
    "forecast_miss",
    "conflicting_duplicate",
    "negative_benefit",
    "negative_amount",
    "settlement_jump",
    "forecast_drift",
)
"""Rule names, in the order flags are listed."""

SEVERITIES = ("high", "medium", "low")
"""Severity levels, most severe first."""

MAD_TO_SIGMA = 1.4826
"""Scale factor making the MAD a consistent estimator of a normal standard deviation [-]."""

MEANAD_TO_SIGMA = 1.2533
"""Scale factor for the mean absolute deviation, used when the MAD is zero [-]."""

MIN_HISTORY_VALUES = 48
"""Fewer history values than this and spike statistics fall back to the day itself [-]."""

_EQ_TOL = 1e-9  # two values closer than this are "identical" [kWh]
_ZERO_TOL = 1e-9  # values with a magnitude below this are zeros [kWh]
_TS_DTYPE = "datetime64[ns, UTC]"
_STR_COLUMNS = ("rule", "severity", "subject_id", "message", "evidence")


@dataclass(frozen=True)
class AnomalyThresholds:
    """Thresholds of the anomaly rules.

    Attributes
    ----------
    spike_mad_k : float
        Robust z-score (MAD based) above which a value is a spike [-].
    spike_min_kwh : float
        A spike must also exceed this absolute level [kWh].
    flatline_min_intervals : int
        Identical non-zero values this many intervals in a row make a flat-line [-].
    flatline_high_intervals : int
        Flat-lines this long or longer are of high severity [-].
    forecast_miss_k : float
        An actual is a miss outside ``[q10 - k*w, q90 + k*w]`` with ``w = q90 - q10`` [-].
    forecast_miss_min_intervals : int
        A series is flagged with at least this many misses in the day [-].
    forecast_miss_tol_kwh : float
        A miss must also lie more than this from q50; for zero-width bands (q10 = q90, e.g.
        PV at night) this is the whole rule [kWh].
    vacancy_min_days : int
        A consumption point reading zero in every interval of this many days in a row (the
        day and the days before it) is vacant [d].
    spike_hour_window_h : float
        Spikes are judged against the history within this many hours of the same time of day
        (0: against the whole history) [h].
    spike_max_factor : float
        At a time of day, a spike must also exceed this multiple of the highest value of the
        history at that time of day (household loads are heavy-tailed: an evening with the air
        conditioner on is not a fault, a value half again above any seen at that hour is) [-].
    """

    spike_mad_k: float = 8.0
    spike_min_kwh: float = 0.5
    flatline_min_intervals: int = 4
    forecast_miss_k: float = 0.5
    forecast_miss_min_intervals: int = 3
    flatline_high_intervals: int = 12
    forecast_miss_tol_kwh: float = 0.05
    vacancy_min_days: int = 7
    spike_hour_window_h: float = 2.0
    spike_max_factor: float = 1.5


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def empty_anomalies() -> pd.DataFrame:
    """An empty ``anomalies`` frame with the contract's columns and dtypes."""
    return _frame([])


def _frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build an anomalies frame from flag records, with the contract's dtypes."""
    df = pd.DataFrame(list(records), columns=ANOMALY_COLUMNS)
    df["day"] = df["day"].astype(object)
    for c in _STR_COLUMNS:
        df[c] = df[c].astype("str")
    for c in ("ts_start", "ts_end"):
        df[c] = pd.to_datetime(df[c], utc=True).astype(_TS_DTYPE)
    return df.reset_index(drop=True)


def _as_day(day: dt.date | str) -> dt.date:
    if isinstance(day, dt.datetime):
        return day.date()
    if isinstance(day, dt.date):
        return day
    return pd.Timestamp(day).date()


def _utc(values: Any) -> pd.Series:
    """Timestamps as a UTC ``datetime64[ns]`` series (naive values are taken as UTC)."""
    return pd.Series(pd.to_datetime(values, utc=True)).astype(_TS_DTYPE).reset_index(drop=True)


def _utc_index(values: Any) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(values)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    return idx.as_unit("ns")


def _num(x: Any, digits: int = 6) -> float | None:
    """A JSON-safe rounded float (``None`` for NaN or infinity)."""
    v = float(x)
    return round(v, digits) if math.isfinite(v) else None


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").isoformat()


def _hm(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def _evidence(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, allow_nan=False, separators=(",", ":"))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of ``True`` in a boolean array, as ``(first, last)`` index pairs (inclusive)."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return []
    padded = np.concatenate([[False], m, [False]]).astype(np.int8)
    d = np.diff(padded)
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _gap_severity(n_missing: int, n_expected: int) -> str:
    if n_missing >= 4 or n_missing >= n_expected:
        return "high"
    return "medium" if n_missing >= 2 else "low"


def robust_threshold(values: np.ndarray, k: float) -> tuple[float, float, float, float]:
    """Robust upper threshold ``median + k * scale`` of a sample.

    ``scale`` is ``1.4826 * MAD``; when the MAD is zero (more than half of the values equal)
    it falls back to ``1.2533 * mean absolute deviation`` (Iglewicz & Hoaglin), which is zero
    only when all values are equal.

    Parameters
    ----------
    values : ndarray
        Finite sample [kWh].
    k : float
        Number of robust standard deviations [-].

    Returns
    -------
    threshold, median, mad, scale : float
        Threshold [kWh], median [kWh], median absolute deviation [kWh], robust scale [kWh].
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med)))
    scale = MAD_TO_SIGMA * mad
    if scale <= 0.0:
        scale = MEANAD_TO_SIGMA * float(np.mean(np.abs(v - med)))
    return med + k * scale, med, mad, scale


# --------------------------------------------------------------------------------------------
# meter anomalies
# --------------------------------------------------------------------------------------------


def _prepare_readings(df: pd.DataFrame | None) -> pd.DataFrame:
    """Readings with a string id, UTC ns timestamps and finite float kWh, sorted."""
    if df is None or len(df) == 0:
        return pd.DataFrame(
            {
                "metering_point_id": pd.Series([], dtype="str"),
                "ts": pd.Series([], dtype=_TS_DTYPE),
                "kwh": pd.Series([], dtype=float),
            }
        )
    out = pd.DataFrame(
        {
            "metering_point_id": df["metering_point_id"].astype("str").to_numpy(),
            "ts": _utc(df["ts"]).to_numpy(),
            "kwh": pd.to_numeric(df["kwh"], errors="coerce").astype(float).to_numpy(),
        }
    )
    out = out[np.isfinite(out["kwh"].to_numpy())]
    out = out.drop_duplicates(["metering_point_id", "ts"], keep="last")
    return out.sort_values(["metering_point_id", "ts"], kind="stable").reset_index(drop=True)


def meter_anomalies(
    readings: pd.DataFrame,
    history: pd.DataFrame,
    expected_ts: pd.DatetimeIndex,
    metering_points: Mapping[str, str],
    day: dt.date,
    interval: pd.Timedelta = pd.Timedelta(hours=1),
    thresholds: AnomalyThresholds = AnomalyThresholds(),
) -> pd.DataFrame:
    """Flag gaps, negative values, spikes and flat-lines in one day of meter readings.

    Parameters
    ----------
    readings : DataFrame
        The day's readings: ``metering_point_id``, ``ts`` (interval start, UTC), ``kwh``
        [kWh]. Rows whose ``ts`` is not in ``expected_ts`` are ignored; a NaN ``kwh`` counts
        as missing; of duplicate (metering point, ts) rows the last one is used.
    history : DataFrame
        Earlier readings, same columns: the robust level for spikes (at least 48 values,
        else the day itself is used) and the tail of a flat-line that spans midnight. Rows
        at or after the day's first interval are ignored.
    expected_ts : DatetimeIndex
        The day's interval starts (UTC): 23/24/25 hours or 92/96/100 quarter-hours.
    metering_points : mapping
        Every metering point expected, id -> direction (``consumption`` | ``production``).
        Readings of other ids are checked as consumption but cannot have gaps.
    day : date
        The local day checked (the ``day`` column of the flags).
    interval : Timedelta
        Length of one interval.
    thresholds : AnomalyThresholds
        Rule thresholds.

    Returns
    -------
    DataFrame
        Columns :data:`ANOMALY_COLUMNS`, one row per flag, sorted by rule, subject and
        ``ts_start``; empty (with the same dtypes) when nothing is flagged.

    Notes
    -----
    * ``gap``: missing intervals, each contiguous run one flag; 1 interval ``low``, 2-3
      ``medium``, 4 or more (or the whole day) ``high``. No reading at all: one ``high`` flag
      over the whole day.
    * ``negative``: ``kwh < 0``, each contiguous run one ``high`` flag.
    * ``spike``: ``kwh > median + spike_mad_k * 1.4826 * MAD`` of the point's history and
      ``> spike_min_kwh``; contiguous spikes are one flag, ``medium``, ``high`` above twice the
      threshold. For production points the level is taken over non-zero values only (night
      zeros would pull it to zero and make every sunny hour a spike). Zeros are never spikes.
    * ``flatline``: ``flatline_min_intervals`` or more consecutive intervals with the same
      non-zero value (within 1e-9 kWh), ``medium``, ``high`` from ``flatline_high_intervals``.
      The history's tail is joined to the day so that a run spanning midnight is measured in
      full (``ts_start`` may then lie before the day); only runs touching the day are flagged.
    """
    day = _as_day(day)
    th = thresholds
    exp = _utc_index(expected_ts).sort_values().unique()
    n_exp = len(exp)
    if n_exp == 0:
        return empty_anomalies()
    interval = pd.Timedelta(interval)
    day_start, day_end = exp[0], exp[-1] + interval
    minutes = interval / pd.Timedelta(minutes=1)

    rd = _prepare_readings(readings)
    pos = exp.get_indexer(pd.DatetimeIndex(rd["ts"]))
    rd = rd.assign(pos=pos)[pos >= 0]
    hist = _prepare_readings(history)
    hist = hist[hist["ts"] < day_start]

    day_groups = {k: g for k, g in rd.groupby("metering_point_id", sort=False)}
    hist_groups = {k: g for k, g in hist.groupby("metering_point_id", sort=False)}
    subjects = sorted(set(map(str, metering_points)) | set(day_groups))

    records: list[dict[str, Any]] = []
    for mp in subjects:
        direction = str(metering_points.get(mp, "consumption"))
        values = np.full(n_exp, np.nan)
        g = day_groups.get(mp)
        if g is not None:
            values[g["pos"].to_numpy()] = g["kwh"].to_numpy()
        present = np.isfinite(values)
        h = hist_groups.get(mp)
        common = {"day": day, "subject_id": mp}

        # gap ------------------------------------------------------------------------------
        if mp in metering_points:
            if not present.any():
                records.append(
                    {
                        **common,
                        "rule": "gap",
                        "severity": "high",
                        "ts_start": exp[0],
                        "ts_end": day_end,
                        "message": (
                            f"Metering point {mp}: no readings at all for {day.isoformat()} "
                            f"(0 of {n_exp} intervals of {minutes:g} min)."
                        ),
                        "evidence": _evidence(
                            {
                                "missing_intervals": n_exp,
                                "expected_intervals": n_exp,
                                "received_intervals": 0,
                                "interval_minutes": minutes,
                            }
                        ),
                    }
                )
            else:
                n_present = int(present.sum())
                for a, b in _runs(~present):
                    n = b - a + 1
                    records.append(
                        {
                            **common,
                            "rule": "gap",
                            "severity": _gap_severity(n, n_exp),
                            "ts_start": exp[a],
                            "ts_end": exp[b] + interval,
                            "message": (
                                f"Metering point {mp}: {n} interval{'s' if n > 1 else ''} "
                                f"missing from {_hm(exp[a])} to {_hm(exp[b] + interval)} "
                                f"({n_present} of {n_exp} intervals received)."
                            ),
                            "evidence": _evidence(
                                {
                                    "missing_intervals": n,
                                    "expected_intervals": n_exp,
                                    "received_intervals": n_present,
                                    "interval_minutes": minutes,
                                }
                            ),
                        }
                    )

        if not present.any():
            continue

        # negative -------------------------------------------------------------------------
        neg = present & (np.nan_to_num(values, nan=0.0) < 0.0)
        for a, b in _runs(neg):
            seg = values[a : b + 1]
            n = b - a + 1
            records.append(
                {
                    **common,
                    "rule": "negative",
                    "severity": "high",
                    "ts_start": exp[a],
                    "ts_end": exp[b] + interval,
                    "message": (
                        f"Metering point {mp}: {n} negative reading{'s' if n > 1 else ''} "
                        f"from {_hm(exp[a])}, lowest {seg.min():.3f} kWh "
                        f"(total {seg.sum():.3f} kWh); interval energy cannot be negative."
                    ),
                    "evidence": _evidence(
                        {
                            "intervals": n,
                            "min_kwh": _num(seg.min()),
                            "sum_kwh": _num(seg.sum()),
                            "values_kwh": [_num(v) for v in seg],
                        }
                    ),
                }
            )

        # spike ----------------------------------------------------------------------------
        records.extend(_spikes(mp, direction, values, present, h, exp, interval, day, th))

        # flatline -------------------------------------------------------------------------
        records.extend(_flatlines(mp, values, present, h, exp, interval, day, th))

        # vacancy --------------------------------------------------------------------------
        if direction == "consumption":
            records.extend(_vacancy(mp, values, present, h, exp, interval, day, th))

    if not records:
        return empty_anomalies()
    out = _frame(records)
    order = {r: i for i, r in enumerate(RULES)}
    out = out.assign(_r=out["rule"].map(order))
    out = out.sort_values(["_r", "subject_id", "ts_start"], kind="stable").drop(columns="_r")
    return out.reset_index(drop=True)


def _vacancy(
    mp: str,
    values: np.ndarray,
    present: np.ndarray,
    history: pd.DataFrame | None,
    exp: pd.DatetimeIndex,
    interval: pd.Timedelta,
    day: dt.date,
    th: AnomalyThresholds,
) -> list[dict[str, Any]]:
    """One low flag when a complete day of zeros ends a run of ``vacancy_min_days`` zero days:
    the triage queue then keeps one vacancy case while it lasts, not a daily alarm."""
    if not present.all() or np.abs(values).max() > _ZERO_TOL or history is None:
        return []
    days_before = th.vacancy_min_days - 1
    since = exp[0] - pd.Timedelta(days=days_before)
    h = history[(history["ts"] >= since) & (history["ts"] < exp[0])]
    expected = int(round(days_before * pd.Timedelta(days=1) / interval))
    if len(h) < 0.95 * expected or np.abs(h["kwh"].to_numpy(dtype=float)).max() > _ZERO_TOL:
        return []
    return [
        {
            "day": day,
            "subject_id": mp,
            "rule": "vacancy",
            "severity": "low",
            "ts_start": since,
            "ts_end": exp[-1] + interval,
            "message": (
                f"Metering point {mp}: zero consumption in every interval for at least "
                f"{th.vacancy_min_days} days (vacant?); its case stays open while it lasts."
            ),
            "evidence": _evidence({"days": th.vacancy_min_days, "intervals": len(h) + len(exp)}),
        }
    ]


def _baseline(values: np.ndarray, direction: str) -> np.ndarray:
    """Values the robust level is computed on: non-negative; production: positive only."""
    v = values[np.isfinite(values)]
    if direction == "production":
        return v[v > _ZERO_TOL]
    return v[v >= 0.0]


def _spikes(
    mp: str,
    direction: str,
    values: np.ndarray,
    present: np.ndarray,
    hist: pd.DataFrame | None,
    exp: pd.DatetimeIndex,
    interval: pd.Timedelta,
    day: dt.date,
    th: AnomalyThresholds,
) -> list[dict[str, Any]]:
    """Spike flags of one metering point (see :func:`meter_anomalies`).

    Each interval is judged against the point's own history at the same time of day (within
    ``spike_hour_window_h`` hours, so the ordinary evening peak of a home is measured against
    its earlier evenings, not against its nights), where at least ``MIN_HISTORY_VALUES / 2``
    such values exist: above the robust threshold of those values and ``spike_max_factor``
    times the highest of them; otherwise against the whole history (or the day itself)."""
    base = _baseline(hist["kwh"].to_numpy() if hist is not None else np.array([]), direction)
    source = "history"
    if base.size < MIN_HISTORY_VALUES:
        base = _baseline(values[present], direction)
        source = "day"
    if base.size == 0:
        return []
    robust, med, mad, scale = robust_threshold(base, th.spike_mad_k)
    threshold = max(robust, th.spike_min_kwh)
    thresholds = np.full(len(values), threshold)
    if source == "history" and th.spike_hour_window_h > 0:
        h_min = (hist["ts"].dt.hour * 60 + hist["ts"].dt.minute).to_numpy()
        h_val = hist["kwh"].to_numpy(dtype=float)
        d_min = exp.hour.to_numpy() * 60 + exp.minute.to_numpy()
        w = th.spike_hour_window_h * 60
        for i, m in enumerate(d_min):
            gap = np.abs(h_min - m)
            near = _baseline(h_val[np.minimum(gap, 1440 - gap) <= w], direction)
            if near.size >= MIN_HISTORY_VALUES // 2:
                thresholds[i] = max(
                    robust_threshold(near, th.spike_mad_k)[0],
                    th.spike_min_kwh,
                    th.spike_max_factor * float(near.max()),
                )
    v = np.nan_to_num(values, nan=-np.inf)
    spike = present & (v > thresholds)
    out: list[dict[str, Any]] = []
    for a, b in _runs(spike):
        seg = values[a : b + 1]
        n = b - a + 1
        i_max = a + int(np.argmax(seg))
        peak = float(values[i_max])
        threshold = float(thresholds[i_max])
        severity = "high" if peak > 2.0 * threshold else "medium"
        out.append(
            {
                "day": day,
                "rule": "spike",
                "severity": severity,
                "subject_id": mp,
                "ts_start": exp[a],
                "ts_end": exp[b] + interval,
                "message": (
                    f"Metering point {mp}: {peak:.3f} kWh at {_hm(exp[i_max])} "
                    f"({n} interval{'s' if n > 1 else ''} above {threshold:.3f} kWh), "
                    f"{peak / threshold:.1f}x the spike threshold at that time of day (whole "
                    f"history: median {med:.3f} kWh, robust scale {scale:.3f} kWh over "
                    f"{base.size} {source} values)."
                ),
                "evidence": _evidence(
                    {
                        "threshold_kwh": _num(threshold),
                        "robust_threshold_kwh": _num(robust),
                        "spike_min_kwh": _num(th.spike_min_kwh),
                        "spike_mad_k": _num(th.spike_mad_k),
                        "median_kwh": _num(med),
                        "mad_kwh": _num(mad),
                        "scale_kwh": _num(scale),
                        "baseline": source,
                        "baseline_values": int(base.size),
                        "direction": direction,
                        "intervals": n,
                        "max_kwh": _num(peak),
                        "max_ts": _iso(exp[i_max]),
                        "values_kwh": [_num(x) for x in seg],
                    }
                ),
            }
        )
    return out


def _flatlines(
    mp: str,
    values: np.ndarray,
    present: np.ndarray,
    hist: pd.DataFrame | None,
    exp: pd.DatetimeIndex,
    interval: pd.Timedelta,
    day: dt.date,
    th: AnomalyThresholds,
) -> list[dict[str, Any]]:
    """Flat-line flags of one metering point (see :func:`meter_anomalies`)."""
    day_ts = exp[present].asi8
    day_v = values[present]
    n_day = day_ts.size
    if hist is not None and len(hist):
        ts = np.concatenate([pd.DatetimeIndex(hist["ts"]).asi8, day_ts])
        v = np.concatenate([hist["kwh"].to_numpy(dtype=float), day_v])
    else:
        ts, v = day_ts, day_v
    first_day = ts.size - n_day  # index of the first day value in the joined series
    if ts.size < max(th.flatline_min_intervals, 2):
        return []
    step = interval.value
    same = (
        (np.diff(ts) == step)
        & (np.abs(np.diff(v)) < _EQ_TOL)
        & (np.abs(v[1:]) > _ZERO_TOL)
        & (np.abs(v[:-1]) > _ZERO_TOL)
    )
    out: list[dict[str, Any]] = []
    for a, b in _runs(same):
        start, last = a, b + 1  # run of values [start, last] in the joined series
        n = last - start + 1
        if n < th.flatline_min_intervals or last < first_day:
            continue
        n_in_day = last - max(start, first_day) + 1
        ts_start = pd.Timestamp(int(ts[start]), tz="UTC")
        ts_end = pd.Timestamp(int(ts[last]), tz="UTC") + interval
        value = float(v[start])
        severity = "high" if n >= th.flatline_high_intervals else "medium"
        out.append(
            {
                "day": day,
                "rule": "flatline",
                "severity": severity,
                "subject_id": mp,
                "ts_start": ts_start,
                "ts_end": ts_end,
                "message": (
                    f"Metering point {mp}: the same value {value:.3f} kWh for {n} consecutive "
                    f"intervals from {_hm(ts_start)} to {_hm(ts_end)} ({n_in_day} in the day); "
                    "a stuck meter or substituted values?"
                ),
                "evidence": _evidence(
                    {
                        "value_kwh": _num(value),
                        "intervals": n,
                        "intervals_in_day": n_in_day,
                        "min_intervals": th.flatline_min_intervals,
                        "interval_minutes": interval / pd.Timedelta(minutes=1),
                    }
                ),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# forecast anomalies
# --------------------------------------------------------------------------------------------


def _infer_interval(ts: np.ndarray) -> pd.Timedelta:
    """Smallest positive step between sorted int64 ns timestamps (1 h if there is none)."""
    d = np.diff(np.unique(ts))
    d = d[d > 0]
    return pd.Timedelta(int(d.min()), unit="ns") if d.size else pd.Timedelta(hours=1)


def settlement_anomalies(
    allocations: pd.DataFrame,
    history: pd.DataFrame,
    evaluation: pd.DataFrame,
    day: dt.date,
    owner_id: str,
    jump_k: float = 6.0,
    jump_min_amount: float = 2.0,
    min_history_days: int = 14,
) -> pd.DataFrame:
    """Flag what looks wrong in the day's settlement before it reaches a bill.

    Parameters
    ----------
    allocations : DataFrame
        The day's settled rows (settlement rule, latest version): ``member_id, amount,
        shared_kwh`` [currency, kWh].
    history : DataFrame
        The same rows of earlier days (``day`` too): each member's own history.
    evaluation : DataFrame
        The day's ``evaluation`` rows (``controller, benefit``).
    day : date
        The day checked.
    owner_id : str
        The community fund's id (subject of community-level flags).
    jump_k, jump_min_amount, min_history_days
        A member's amount is a jump above ``median + jump_k * 1.4826 * MAD`` of its own
        history (at least ``min_history_days`` days) and more than ``jump_min_amount``
        [currency] from the median.

    Notes
    -----
    * ``negative_benefit`` (high): the real-time layer's day cost the members more than
      acting alone (``evaluation.benefit < 0`` for ``ecm``).
    * ``negative_amount`` (high): a member is allocated a negative amount.
    * ``settlement_jump`` (medium): a member's amount jumps against its own history.
    """
    start = pd.Timestamp(day).tz_localize("UTC")
    end = start + pd.Timedelta(days=1)
    rec: list[dict[str, Any]] = []
    ecm = evaluation[evaluation["controller"] == "ecm"] if len(evaluation) else evaluation
    for r in ecm.itertuples(index=False):
        if float(r.benefit) < 0:
            rec.append(
                {
                    "day": day,
                    "rule": "negative_benefit",
                    "severity": "high",
                    "subject_id": owner_id,
                    "ts_start": start,
                    "ts_end": end,
                    "message": (
                        f"The metered day under ECM's real-time layer cost the members "
                        f"{-float(r.benefit):.2f} more than acting alone (evaluation.benefit)."
                    ),
                    "evidence": _evidence({"benefit": _num(float(r.benefit))}),
                }
            )
    for r in allocations.itertuples(index=False):
        amount = float(r.amount)
        if amount < 0:
            rec.append(
                {
                    "day": day,
                    "rule": "negative_amount",
                    "severity": "high",
                    "subject_id": str(r.member_id),
                    "ts_start": start,
                    "ts_end": end,
                    "message": f"Member {r.member_id} is allocated a negative amount {amount:.2f}.",
                    "evidence": _evidence({"amount": _num(amount)}),
                }
            )
            continue
        past = history[history["member_id"].astype(str) == str(r.member_id)]
        if past["day"].nunique() < min_history_days:
            continue
        vals = past["amount"].astype(float).to_numpy()
        _, med, mad, scale = robust_threshold(vals, jump_k)
        limit = med + jump_k * scale
        if amount > limit and amount - med > jump_min_amount:
            rec.append(
                {
                    "day": day,
                    "rule": "settlement_jump",
                    "severity": "medium",
                    "subject_id": str(r.member_id),
                    "ts_start": start,
                    "ts_end": end,
                    "message": (
                        f"Member {r.member_id}: {amount:.2f} against a median of {med:.2f} over "
                        f"its last {past['day'].nunique()} settled days (threshold {limit:.2f})."
                    ),
                    "evidence": _evidence(
                        {
                            "amount": _num(amount),
                            "median": _num(med),
                            "mad": _num(mad),
                            "threshold": _num(limit),
                            "history_days": int(past["day"].nunique()),
                            "shared_kwh": _num(float(r.shared_kwh)),
                        }
                    ),
                }
            )
    return _frame(rec) if rec else empty_anomalies()


def drift_anomalies(
    forecasts: pd.DataFrame,
    actuals: pd.DataFrame,
    day: dt.date,
    baseline: str = "seasonal_naive",
    coverage_band: tuple[float, float] = (0.65, 0.92),
    skill_floor: float = -0.05,
    min_days: int = 5,
) -> pd.DataFrame:
    """Flag a target whose champion drifted over the days before ``day``.

    Parameters
    ----------
    forecasts : DataFrame
        Issued forecasts of those days, every model: ``day, target, unique_id, model, ts,
        point, q10, q90, is_champion``.
    actuals : DataFrame
        ``target, unique_id, ts, y``.
    coverage_band : (float, float)
        The champion's q10-q90 coverage over the window must lie inside (its target is 80 %;
        the band is wide for a week's noise) [-].
    skill_floor : float
        The champion's MAE skill against ``baseline`` on the same rows must stay above [-].
    min_days : int
        Fewer scored days than this and nothing is judged.

    Notes
    -----
    ``forecast_drift`` (medium), one flag per target, with the window's coverage, MAE of the
    champion and of the baseline, and the days scored in its evidence.
    """
    if forecasts.empty or actuals.empty:
        return empty_anomalies()
    m = forecasts.merge(actuals, on=["target", "unique_id", "ts"], how="inner")
    m = m[np.isfinite(m["y"].astype(float))]
    start = pd.Timestamp(day).tz_localize("UTC")
    rec: list[dict[str, Any]] = []
    for target, g in m.groupby("target"):
        champ = g[g["is_champion"].astype(bool)]
        base = g[g["model"] == baseline]
        if champ["day"].nunique() < min_days or base.empty:
            continue
        y = champ["y"].astype(float)
        coverage = float(((y >= champ["q10"]) & (y <= champ["q90"])).mean())
        keys = ["unique_id", "ts"]
        both = champ[[*keys, "point", "y"]].merge(
            base[[*keys, "point"]], on=keys, suffixes=("", "_base")
        )
        mae = float((both["point"] - both["y"]).abs().mean())
        mae_base = float((both["point_base"] - both["y"]).abs().mean())
        skill = 1.0 - mae / mae_base if mae_base > 0 else 0.0
        reasons = []
        if not coverage_band[0] <= coverage <= coverage_band[1]:
            reasons.append(
                f"q10-q90 coverage {coverage:.0%} outside {coverage_band[0]:.0%}-"
                f"{coverage_band[1]:.0%}"
            )
        if skill < skill_floor:
            reasons.append(f"MAE {skill:+.0%} against {baseline}")
        if not reasons:
            continue
        rec.append(
            {
                "day": day,
                "rule": "forecast_drift",
                "severity": "medium",
                "subject_id": str(target),
                "ts_start": start - pd.Timedelta(days=int(champ["day"].nunique())),
                "ts_end": start,
                "message": (
                    f"The {target} champion over the last {champ['day'].nunique()} days: "
                    + "; ".join(reasons)
                    + " (retrain or review the models: ecm backtest)."
                ),
                "evidence": _evidence(
                    {
                        "coverage": _num(coverage),
                        "mae": _num(mae),
                        "mae_baseline": _num(mae_base),
                        "skill": _num(skill),
                        "days": int(champ["day"].nunique()),
                        "baseline": baseline,
                    }
                ),
            }
        )
    return _frame(rec) if rec else empty_anomalies()


def forecast_anomalies(
    forecasts: pd.DataFrame,
    actuals: pd.DataFrame,
    day: dt.date,
    thresholds: AnomalyThresholds = AnomalyThresholds(),
    interval: pd.Timedelta | None = None,
) -> pd.DataFrame:
    """Flag forecast series whose actuals fell well outside the q10-q90 band several times.

    Parameters
    ----------
    forecasts : DataFrame
        The forecasts for the day (the previous day's champion): ``target``, ``unique_id``,
        ``ts`` (interval start, UTC), ``q10``, ``q50``, ``q90`` [kWh].
    actuals : DataFrame
        ``target``, ``unique_id``, ``ts``, ``actual`` [kWh]. Intervals are matched on
        (target, unique_id, ts); unmatched or NaN rows are ignored.
    day : date
        The local day checked (the ``day`` column of the flags).
    thresholds : AnomalyThresholds
        ``forecast_miss_k``, ``forecast_miss_min_intervals`` and ``forecast_miss_tol_kwh``.
    interval : Timedelta, optional
        Interval length (for ``ts_end``); inferred per series from its timestamps if omitted.

    Returns
    -------
    DataFrame
        Columns :data:`ANOMALY_COLUMNS`, at most one ``forecast_miss`` row per series, with
        ``subject_id = "<target>:<unique_id>"``; empty when nothing is flagged.

    Notes
    -----
    With ``w = q90 - q10``, an interval is a miss when the actual lies outside
    ``[q10 - k*w, q90 + k*w]`` and more than ``forecast_miss_tol_kwh`` from q50. When
    ``w`` is zero (e.g. PV at night, q10 = q90 = 0) the second condition alone decides, so
    that measurement noise around a certain zero is not a miss. A series is flagged with at
    least ``forecast_miss_min_intervals`` misses; the flag spans the first to the last miss.
    Severity comes from the worst exceedance beyond [q10, q90] in band widths: ``medium`` up
    to 2 widths, ``high`` beyond (and for any miss of a zero-width band). The evidence gives
    the miss count, the worst interval with its actual and quantiles, and the empirical
    coverage of [q10, q90] over the day.
    """
    day = _as_day(day)
    th = thresholds
    if forecasts is None or actuals is None or len(forecasts) == 0 or len(actuals) == 0:
        return empty_anomalies()
    key = ["target", "unique_id", "ts"]
    f = forecasts[[*key, "q10", "q50", "q90"]].copy()
    a = actuals[[*key, "actual"]].copy()
    for df in (f, a):
        df["target"] = df["target"].astype("str")
        df["unique_id"] = df["unique_id"].astype("str")
        df["ts"] = _utc(df["ts"]).to_numpy()
    f = f.drop_duplicates(key, keep="last")
    a = a.drop_duplicates(key, keep="last")
    m = f.merge(a, on=key, how="inner")
    for c in ("q10", "q50", "q90", "actual"):
        m[c] = pd.to_numeric(m[c], errors="coerce").astype(float)
    m = m[np.isfinite(m[["q10", "q50", "q90", "actual"]].to_numpy()).all(axis=1)]
    if m.empty:
        return empty_anomalies()
    m = m.sort_values(key, kind="stable").reset_index(drop=True)

    lo = np.minimum(m["q10"].to_numpy(), m["q90"].to_numpy())
    hi = np.maximum(m["q10"].to_numpy(), m["q90"].to_numpy())
    q50 = m["q50"].to_numpy()
    y = m["actual"].to_numpy()
    w = hi - lo
    zero_w = w <= _EQ_TOL
    beyond = np.maximum(np.maximum(lo - y, y - hi), 0.0)  # distance outside [q10, q90] [kWh]
    off50 = np.abs(y - q50)
    far = off50 > th.forecast_miss_tol_kwh
    miss = np.where(zero_w, far, far & (beyond > th.forecast_miss_k * w))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(zero_w, np.inf, beyond / np.where(zero_w, 1.0, w))
    exceed = np.where(zero_w, off50, beyond)
    covered = (y >= lo) & (y <= hi)
    m = m.assign(_miss=miss, _ratio=ratio, _exceed=exceed, _covered=covered, _w=w, _lo=lo, _hi=hi)

    records: list[dict[str, Any]] = []
    for (target, uid), g in m.groupby(["target", "unique_id"], sort=True):
        n_miss = int(g["_miss"].sum())
        if n_miss < th.forecast_miss_min_intervals:
            continue
        step = interval if interval is not None else _infer_interval(pd.DatetimeIndex(g["ts"]).asi8)
        step = pd.Timedelta(step)
        misses = g[g["_miss"].to_numpy()]
        worst_i = misses.sort_values(["_ratio", "_exceed"], ascending=False, kind="stable").index[0]
        worst = misses.loc[worst_i]
        coverage = float(g["_covered"].mean())
        n = len(g)
        wr = float(worst["_ratio"])
        severity = "medium" if wr <= 2.0 else "high"
        ts_start = pd.Timestamp(misses["ts"].min())
        ts_end = pd.Timestamp(misses["ts"].max()) + step
        above = int((misses["actual"] > misses["_hi"]).sum())
        below = n_miss - above
        subject = f"{target}:{uid}"
        if math.isfinite(wr):
            how_far = f"{float(worst['_exceed']):.3f} kWh ({wr:.1f} band widths) outside"
        else:
            how_far = f"{float(worst['_exceed']):.3f} kWh off a zero-width band at"
        records.append(
            {
                "day": day,
                "rule": "forecast_miss",
                "severity": severity,
                "subject_id": subject,
                "ts_start": ts_start,
                "ts_end": ts_end,
                "message": (
                    f"Forecast {subject}: {n_miss} of {n} intervals well outside the q10-q90 "
                    f"band ({above} above, {below} below); worst at {_hm(worst['ts'])}: "
                    f"actual {float(worst['actual']):.3f} kWh vs q10 {float(worst['q10']):.3f}, "
                    f"q90 {float(worst['q90']):.3f} kWh, {how_far} [q10, q90]. "
                    f"Coverage of [q10, q90] {coverage:.0%}."
                ),
                "evidence": _evidence(
                    {
                        "count": n_miss,
                        "intervals": n,
                        "above": above,
                        "below": below,
                        "worst_ts": _iso(worst["ts"]),
                        "actual": _num(worst["actual"]),
                        "q10": _num(worst["q10"]),
                        "q50": _num(worst["q50"]),
                        "q90": _num(worst["q90"]),
                        "width_kwh": _num(worst["_w"]),
                        "exceedance_kwh": _num(worst["_exceed"]),
                        "exceedance_widths": _num(wr),
                        "coverage": _num(coverage),
                        "k": _num(th.forecast_miss_k),
                        "miss_ts": [_iso(t) for t in misses["ts"]],
                    }
                ),
            }
        )
    if not records:
        return empty_anomalies()
    return _frame(records)


# --------------------------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------------------------


def summarize(anomalies: pd.DataFrame, top: int | None = 20) -> pd.DataFrame:
    """The most important anomalies for a report: high severity first, then by ``ts_start``.

    Parameters
    ----------
    anomalies : DataFrame
        Rows of the ``anomalies`` table (e.g. meter and forecast flags concatenated).
    top : int, optional
        Keep at most this many rows; ``None`` keeps all.

    Returns
    -------
    DataFrame
        Columns :data:`ANOMALY_COLUMNS`, sorted by severity (high, medium, low), ``ts_start``,
        rule and subject; index reset.
    """
    if anomalies is None or len(anomalies) == 0:
        return empty_anomalies()
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    df = anomalies[ANOMALY_COLUMNS].copy()
    df["_sev"] = df["severity"].map(rank).fillna(len(rank))
    df = df.sort_values(["_sev", "ts_start", "rule", "subject_id"], kind="stable")
    df = df.drop(columns="_sev")
    if top is not None:
        df = df.head(top)
    return df.reset_index(drop=True)


def quarantine_anomalies(
    quarantined: pd.DataFrame,
    stored: pd.DataFrame,
    day: dt.date | str,
    interval_minutes: int = 60,
) -> pd.DataFrame:
    """One ``high`` flag per interval held back as a conflicting duplicate and still missing.

    An interval a file delivered twice with different values is not billed (it is in
    ``quarantined_readings``, not in ``meter_readings``); the flag stays until a later file
    delivers the interval once, and then disappears on the day's re-run.

    Parameters
    ----------
    quarantined : DataFrame
        ``quarantined_readings`` rows of the day.
    stored : DataFrame
        ``metering_point_id, ts`` of the day's stored readings.
    day : date
        The local day checked.
    interval_minutes : int
        Interval length [min].

    Returns
    -------
    DataFrame
        Columns :data:`ANOMALY_COLUMNS`; the evidence lists the values, file and file rows.
    """
    day = _as_day(day)
    if quarantined is None or len(quarantined) == 0:
        return empty_anomalies()
    q = quarantined.copy()
    q["ts"] = _utc(q["ts"]).to_numpy()
    have = set(zip(stored["metering_point_id"].astype(str), _utc(stored["ts"]), strict=True))
    step = pd.Timedelta(minutes=interval_minutes)
    records = []
    for (mp, ts), g in q.groupby(["metering_point_id", "ts"], sort=True):
        if (str(mp), pd.Timestamp(ts)) in have:
            continue  # delivered once since: settled on that value
        g = g.sort_values(["quarantined_at", "file_row"])
        values = [float(v) for v in g["kwh"]]
        records.append(
            {
                "day": day,
                "rule": "conflicting_duplicate",
                "severity": "high",
                "subject_id": str(mp),
                "ts_start": pd.Timestamp(ts),
                "ts_end": pd.Timestamp(ts) + step,
                "message": f"{_hm(ts)}: {g['source'].iloc[-1]} delivers this interval "
                f"{len(g)} times with different values ({', '.join(f'{v:g}' for v in values)} "
                "kWh); held back, not billed, until a file delivers it once",
                "evidence": _evidence(
                    {
                        "values_kwh": [_num(v) for v in values],
                        "file": str(g["source"].iloc[-1]),
                        "file_rows": [int(r) for r in g["file_row"]],
                        "source_sha256": str(g["source_sha256"].iloc[-1]),
                    }
                ),
            }
        )
    return _frame(records)
