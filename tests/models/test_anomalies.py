"""Tests for models.anomalies: rule-based flags on meter readings and forecasts."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.anomalies import (
    ANOMALY_COLUMNS,
    AnomalyThresholds,
    empty_anomalies,
    forecast_anomalies,
    meter_anomalies,
    robust_threshold,
    summarize,
)
from models.contracts import conform
from models.timeutil import day_intervals_utc

TZ = "Europe/Vienna"
DAY = dt.date(2024, 6, 12)
HOUR = pd.Timedelta(hours=1)
MPS = {"home-load": "consumption", "home-pv": "production", "empty-flat": "consumption"}


def _load_profile(ts: pd.DatetimeIndex, seed: int) -> np.ndarray:
    """A noisy, never-repeating household load [kWh]."""
    rng = np.random.default_rng(seed)
    hour = ts.tz_convert(TZ).hour.to_numpy()
    base = 0.3 + 0.4 * np.exp(-((hour - 19) ** 2) / 8) + 0.2 * np.exp(-((hour - 7) ** 2) / 4)
    return np.round(base + rng.uniform(0.0, 0.1, len(ts)), 6)


def _pv_profile(ts: pd.DatetimeIndex, seed: int) -> np.ndarray:
    """PV production: exact zeros at night, a noisy bell by day [kWh]."""
    rng = np.random.default_rng(seed)
    hour = ts.tz_convert(TZ).hour.to_numpy()
    bell = np.clip(np.sin((hour - 5) / 16 * np.pi), 0.0, None) * 3.0
    pv = np.where(bell > 0, bell + rng.uniform(0.0, 0.2, len(ts)), 0.0)
    return np.round(pv, 6)


def _frame(profiles: dict[str, np.ndarray], ts: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.concat(
        [pd.DataFrame({"metering_point_id": mp, "ts": ts, "kwh": v}) for mp, v in profiles.items()],
        ignore_index=True,
    )


def _community(day: dt.date = DAY, history_days: int = 5):
    """A clean day plus five days of history: a load, a PV plant and an all-zero home (not yet
    vacant: that takes seven zero days)."""
    ts = day_intervals_utc(day, TZ)
    hist_ts = pd.date_range(
        ts[0] - pd.Timedelta(days=history_days), ts[0], freq="h", inclusive="left"
    )
    readings = _frame(
        {
            "home-load": _load_profile(ts, 1),
            "home-pv": _pv_profile(ts, 2),
            "empty-flat": np.zeros(len(ts)),
        },
        ts,
    )
    history = _frame(
        {
            "home-load": _load_profile(hist_ts, 3),
            "home-pv": _pv_profile(hist_ts, 4),
            "empty-flat": np.zeros(len(hist_ts)),
        },
        hist_ts,
    )
    return readings, history, ts


def _set(readings: pd.DataFrame, mp: str, ts: pd.Timestamp, kwh: float) -> pd.DataFrame:
    out = readings.copy()
    out.loc[(out["metering_point_id"] == mp) & (out["ts"] == ts), "kwh"] = kwh
    return out


def _run(readings, history, ts, mps=MPS, **kw) -> pd.DataFrame:
    return meter_anomalies(readings, history, ts, mps, DAY, **kw)


def _assert_contract(df: pd.DataFrame) -> None:
    assert list(df.columns) == ANOMALY_COLUMNS
    assert str(df["ts_start"].dtype) == "datetime64[ns, UTC]"
    assert str(df["ts_end"].dtype) == "datetime64[ns, UTC]"
    assert not df.duplicated(["day", "rule", "subject_id", "ts_start"]).any()
    conform("anomalies", df)
    for ev in df["evidence"]:
        assert isinstance(json.loads(ev), dict)
    assert (df["ts_end"] > df["ts_start"]).all()


# ---------------------------------------------------------------------------- meter: clean


def test_clean_day_has_no_flags():
    readings, history, ts = _community()
    out = _run(readings, history, ts)
    assert out.empty
    _assert_contract(out)


def test_empty_frame_has_contract_dtypes():
    out = empty_anomalies()
    _assert_contract(out)
    assert len(out) == 0


def test_legitimate_zeros_are_not_flagged():
    """PV zero all night and a home with zero load all day, also with no history at all."""
    readings, history, ts = _community()
    pv = readings[readings["metering_point_id"] == "home-pv"]
    assert (pv["kwh"] == 0).sum() >= 8  # the night really is zeros
    for hist in (history, history.iloc[0:0]):
        out = _run(readings, hist, ts)
        assert out.empty, out[["rule", "subject_id", "message"]]


def test_a_week_of_zeros_is_one_low_vacancy_flag_a_day():
    """Seven complete days of zero consumption: one low `vacancy` flag (the triage queue keeps
    one case while it lasts); six days, a missing interval, or PV zeros: none."""
    readings, history, ts = _community(history_days=7)
    out = _run(readings, history, ts)
    assert out[["rule", "subject_id", "severity"]].values.tolist() == [
        ["vacancy", "empty-flat", "low"]
    ]
    _assert_contract(out)
    short = history[history["ts"] >= ts[0] - pd.Timedelta(days=5)]
    assert _run(readings, short, ts).empty
    holed = history.drop(history[history["metering_point_id"] == "empty-flat"].index[-30:])
    assert _run(readings, holed, ts).empty


def test_pv_daylight_is_not_a_spike_of_night_zeros():
    """Production statistics ignore night zeros: a normal sunny hour must not be a spike.

    With 11 zeros in 24 hours the median and MAD over all values sit near zero, so the
    same numbers read as consumption would be flagged; as production they must not be.
    """
    ts = day_intervals_utc(DAY, TZ)
    hist_ts = pd.date_range(ts[0] - pd.Timedelta(days=7), ts[0], freq="h", inclusive="left")

    def pv(index: pd.DatetimeIndex, seed: int) -> np.ndarray:
        hour = index.tz_convert(TZ).hour.to_numpy()
        sun = (hour >= 6) & (hour <= 18)
        bell = np.where(sun, np.sin((hour - 5.5) / 14 * np.pi) ** 2 * 4.0, 0.0)
        return np.round(bell * np.random.default_rng(seed).uniform(0.9, 1.0, len(index)), 6)

    readings = _frame({"roof": pv(ts, 8)}, ts)
    history = _frame({"roof": pv(hist_ts, 9)}, hist_ts)
    assert (history["kwh"] == 0).mean() > 0.4
    out = meter_anomalies(readings, history, ts, {"roof": "production"}, DAY)
    assert out.empty, out[["rule", "message"]]
    whole = AnomalyThresholds(spike_hour_window_h=0, spike_max_factor=0)
    as_load = meter_anomalies(readings, history, ts, {"roof": "consumption"}, DAY, thresholds=whole)
    assert set(as_load["rule"]) == {"spike"}
    # judged against the same hours of earlier days, a sunny noon is no spike even as a load
    hourly = meter_anomalies(readings, history, ts, {"roof": "consumption"}, DAY)
    assert hourly.empty


# ---------------------------------------------------------------------------- meter: gaps


def test_removed_interval_is_one_gap_flag_with_its_bounds():
    readings, history, ts = _community()
    gone = ts[10]
    load = readings["metering_point_id"] == "home-load"
    readings = readings[~(load & (readings["ts"] == gone))]
    out = _run(readings, history, ts)
    assert len(out) == 1
    row = out.iloc[0]
    assert (row["rule"], row["subject_id"], row["severity"]) == ("gap", "home-load", "low")
    assert row["ts_start"] == gone
    assert row["ts_end"] == gone + HOUR
    assert row["day"] == DAY
    assert json.loads(row["evidence"])["missing_intervals"] == 1
    _assert_contract(out)


def test_contiguous_gaps_merge_and_severity_grows():
    readings, history, ts = _community()
    load = readings["metering_point_id"] == "home-load"
    drop = ts[[2, 3, 10, 11, 12, 13, 20]]
    readings = readings[~(load & readings["ts"].isin(drop))]
    out = _run(readings, history, ts)
    got = [(r.ts_start, r.ts_end, r.severity) for r in out.itertuples()]
    assert got == [
        (ts[2], ts[4], "medium"),
        (ts[10], ts[14], "high"),
        (ts[20], ts[21], "low"),
    ]
    assert set(out["rule"]) == {"gap"}
    _assert_contract(out)


def test_metering_point_without_readings_is_one_high_gap():
    readings, history, ts = _community()
    mps = {**MPS, "new-meter": "consumption"}
    out = _run(readings, history, ts, mps=mps)
    assert len(out) == 1
    row = out.iloc[0]
    assert (row["rule"], row["subject_id"], row["severity"]) == ("gap", "new-meter", "high")
    assert row["ts_start"] == ts[0] and row["ts_end"] == ts[-1] + HOUR
    assert "no readings" in row["message"]


def test_nan_kwh_counts_as_missing():
    readings, history, ts = _community()
    readings = _set(readings, "home-load", ts[5], np.nan)
    out = _run(readings, history, ts)
    assert list(out["rule"]) == ["gap"] and out.iloc[0]["ts_start"] == ts[5]


@pytest.mark.parametrize(
    ("day", "n", "minutes"),
    [
        (dt.date(2024, 3, 31), 23, 60),
        (dt.date(2024, 10, 27), 25, 60),
        (dt.date(2024, 3, 31), 92, 15),
        (dt.date(2024, 10, 27), 100, 15),
    ],
)
def test_dst_days_with_complete_data_have_no_gap(day, n, minutes):
    ts = day_intervals_utc(day, TZ, minutes)
    assert len(ts) == n
    readings = _frame({"home-load": _load_profile(ts, 5), "home-pv": _pv_profile(ts, 6)}, ts)
    mps = {"home-load": "consumption", "home-pv": "production"}
    out = meter_anomalies(
        readings, readings.iloc[0:0], ts, mps, day, interval=pd.Timedelta(minutes=minutes)
    )
    assert out.empty, out[["rule", "subject_id", "message"]]
    # and one missing interval on the long day is still found
    short = readings.drop(index=readings.index[n - 1])
    out = meter_anomalies(
        short, short.iloc[0:0], ts, mps, day, interval=pd.Timedelta(minutes=minutes)
    )
    assert list(out["rule"]) == ["gap"]
    assert out.iloc[0]["ts_end"] == ts[-1] + pd.Timedelta(minutes=minutes)


# ---------------------------------------------------------------------------- meter: negative


def test_negative_value_is_high():
    readings, history, ts = _community()
    readings = _set(readings, "home-load", ts[8], -0.4)
    out = _run(readings, history, ts)
    assert list(out["rule"]) == ["negative"]
    row = out.iloc[0]
    assert row["severity"] == "high"
    assert row["ts_start"] == ts[8] and row["ts_end"] == ts[9]
    assert json.loads(row["evidence"])["min_kwh"] == pytest.approx(-0.4)
    assert "-0.400" in row["message"]


def test_negative_runs_are_one_flag_each():
    readings, history, ts = _community()
    for i in (3, 4, 5, 9):
        readings = _set(readings, "home-load", ts[i], -0.1 - i / 100)
    out = _run(readings, history, ts)
    neg = out[out["rule"] == "negative"]
    assert [(r.ts_start, r.ts_end) for r in neg.itertuples()] == [(ts[3], ts[6]), (ts[9], ts[10])]
    assert json.loads(neg.iloc[0]["evidence"])["intervals"] == 3


# ---------------------------------------------------------------------------- meter: spike


WHOLE = AnomalyThresholds(spike_hour_window_h=0, spike_max_factor=0)
"""Spikes judged against the whole history (the thresholds the tests below compute)."""


def test_spike_is_flagged_with_threshold_in_evidence():
    readings, history, ts = _community()
    readings = _set(readings, "home-load", ts[14], 6.0)
    out = _run(readings, history, ts, thresholds=WHOLE)
    assert list(out["rule"]) == ["spike"]
    row = out.iloc[0]
    assert row["subject_id"] == "home-load"
    assert row["ts_start"] == ts[14] and row["ts_end"] == ts[15]
    ev = json.loads(row["evidence"])
    hist_load = history.loc[history["metering_point_id"] == "home-load", "kwh"].to_numpy()
    expected, med, _, _ = robust_threshold(hist_load, 8.0)
    assert ev["threshold_kwh"] == pytest.approx(max(expected, 0.5), abs=1e-6)
    assert ev["median_kwh"] == pytest.approx(med, abs=1e-6)
    assert ev["baseline"] == "history" and ev["max_kwh"] == pytest.approx(6.0)
    assert 6.0 > 2 * ev["threshold_kwh"] and row["severity"] == "high"


def test_moderate_spike_is_medium_and_small_one_is_ignored():
    readings, history, ts = _community()
    hist_load = history.loc[history["metering_point_id"] == "home-load", "kwh"].to_numpy()
    thr = max(robust_threshold(hist_load, 8.0)[0], 0.5)
    readings = _set(readings, "home-load", ts[14], 1.5 * thr)
    out = _run(readings, history, ts, thresholds=WHOLE)
    assert list(out["severity"]) == ["medium"]
    readings = _set(readings, "home-load", ts[14], 0.95 * thr)
    assert _run(readings, history, ts, thresholds=WHOLE).empty


def test_an_evening_peak_is_judged_against_earlier_evenings():
    """A home whose every evening peaks at 3 kWh (nights 0.2): the evening is no spike
    against its own evenings, although it is against the whole day's level; a 9 kWh evening,
    or a 3 kWh night, still is."""
    ts = day_intervals_utc(DAY, TZ)
    hist_ts = pd.date_range(ts[0] - pd.Timedelta(days=14), ts[0], freq="h", inclusive="left")

    def load(index: pd.DatetimeIndex, seed: int) -> np.ndarray:
        hour = index.tz_convert(TZ).hour.to_numpy()
        base = np.where((hour >= 18) & (hour <= 21), 3.0, 0.2)
        return np.round(base * np.random.default_rng(seed).uniform(0.9, 1.1, len(index)), 4)

    readings = _frame({"home": load(ts, 1)}, ts)
    history = _frame({"home": load(hist_ts, 2)}, hist_ts)
    mps = {"home": "consumption"}
    assert meter_anomalies(readings, history, ts, mps, DAY).empty
    assert set(meter_anomalies(readings, history, ts, mps, DAY, thresholds=WHOLE)["rule"]) == {
        "spike"
    }
    evening = ts[ts.tz_convert(TZ).hour == 19][0]
    night = ts[ts.tz_convert(TZ).hour == 3][0]
    out = meter_anomalies(_set(readings, "home", evening, 9.0), history, ts, mps, DAY)
    assert out["ts_start"].tolist() == [evening]
    out = meter_anomalies(_set(readings, "home", night, 3.0), history, ts, mps, DAY)
    assert out["ts_start"].tolist() == [night]


def test_spike_falls_back_to_the_day_without_history():
    readings, _, ts = _community()
    readings = _set(readings, "home-load", ts[3], 9.0)
    out = _run(readings, readings.iloc[0:0], ts)
    assert list(out["rule"]) == ["spike"]
    assert json.loads(out.iloc[0]["evidence"])["baseline"] == "day"


def test_spike_needs_the_absolute_minimum():
    """A vacant home waking up with 0.3 kWh is far above its zero level but not a spike."""
    readings, history, ts = _community()
    readings = _set(readings, "empty-flat", ts[12], 0.3)
    assert _run(readings, history, ts).empty
    readings = _set(readings, "empty-flat", ts[12], 0.8)
    out = _run(readings, history, ts)
    assert list(out["rule"]) == ["spike"]
    assert json.loads(out.iloc[0]["evidence"])["threshold_kwh"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------- meter: flatline


@pytest.mark.parametrize(("run", "flagged"), [(3, False), (4, True), (5, True)])
def test_frozen_non_zero_run(run, flagged):
    readings, history, ts = _community()
    for i in range(6, 6 + run):
        readings = _set(readings, "home-load", ts[i], 0.437)
    out = _run(readings, history, ts)
    if not flagged:
        assert out.empty
        return
    assert list(out["rule"]) == ["flatline"]
    row = out.iloc[0]
    assert row["severity"] == "medium"
    assert row["ts_start"] == ts[6] and row["ts_end"] == ts[6 + run]
    assert json.loads(row["evidence"])["intervals"] == run


def test_long_flatline_is_high():
    readings, history, ts = _community()
    for i in range(12):
        readings = _set(readings, "home-load", ts[i], 0.25)
    out = _run(readings, history, ts)
    assert list(out["rule"]) == ["flatline"] and out.iloc[0]["severity"] == "high"


def test_flatline_spanning_midnight_uses_history_tail():
    """2 frozen values before midnight + 3 after: a run of 5, reported from its real start."""
    readings, history, ts = _community()
    hist = history.copy()
    load = hist["metering_point_id"] == "home-load"
    hist.loc[load & hist["ts"].isin([ts[0] - 2 * HOUR, ts[0] - HOUR]), "kwh"] = 0.5
    for i in range(3):
        readings = _set(readings, "home-load", ts[i], 0.5)
    out = _run(readings, hist, ts)
    assert list(out["rule"]) == ["flatline"]
    row = out.iloc[0]
    assert row["ts_start"] == ts[0] - 2 * HOUR and row["ts_end"] == ts[3]
    ev = json.loads(row["evidence"])
    assert (ev["intervals"], ev["intervals_in_day"]) == (5, 3)
    # a run that ended before the day is not the day's business
    hist.loc[load & hist["ts"].isin(ts[0] - HOUR * np.arange(3, 9)), "kwh"] = 0.9
    assert list(_run(readings, hist, ts)["rule"]) == ["flatline"]


def test_flatline_broken_by_a_gap_is_not_one_run():
    readings, history, ts = _community()
    for i in (6, 7, 9, 10):
        readings = _set(readings, "home-load", ts[i], 0.437)
    readings = readings[
        ~((readings["metering_point_id"] == "home-load") & (readings["ts"] == ts[8]))
    ]
    out = _run(readings, history, ts)
    assert list(out["rule"]) == ["gap"]


# ---------------------------------------------------------------------------- key uniqueness


def test_key_is_unique_with_many_faults():
    readings, history, ts = _community()
    load = readings["metering_point_id"] == "home-load"
    readings = readings[~(load & readings["ts"].isin(ts[[0, 1, 22]]))]
    for i, v in [(4, -1.0), (5, -1.0), (6, -1.0), (7, -1.0), (12, 7.0), (13, 8.0)]:
        readings = _set(readings, "home-load", ts[i], v)
    for i in range(8, 20):
        readings = _set(readings, "home-pv", ts[i], 1.234)
    readings = _set(readings, "home-pv", ts[20], 40.0)
    readings = readings[readings["metering_point_id"] != "empty-flat"]
    out = _run(readings, history, ts)
    assert set(out["rule"]) == {"gap", "negative", "spike", "flatline"}
    # the negative run is also flat, at the same ts_start, under another rule: key still unique
    assert {"negative", "flatline"} <= set(out.loc[out["ts_start"] == ts[4], "rule"])
    _assert_contract(out)
    fc, ac = _forecast_case(above=[10, 11, 12])
    both = pd.concat([out, forecast_anomalies(fc, ac, DAY)], ignore_index=True)
    _assert_contract(both)
    top = summarize(both, top=None)
    sev = top["severity"].map({"high": 0, "medium": 1, "low": 2}).to_numpy()
    assert (np.diff(sev) >= 0).all()
    for _, grp in top.groupby("severity"):
        assert grp["ts_start"].is_monotonic_increasing
    assert len(summarize(both, top=3)) == 3
    assert summarize(empty_anomalies()).empty


# ---------------------------------------------------------------------------- forecasts


def _forecast_case(above=(), below=(), n: int = 24, night_noise: float = 0.0):
    """Load forecast with a band around 1 kWh and a PV forecast with zero-width nights."""
    ts = day_intervals_utc(DAY, TZ)[:n]
    rng = np.random.default_rng(7)
    q50 = 1.0 + 0.2 * np.sin(np.arange(n) / 3)
    load_f = pd.DataFrame(
        {
            "target": "load",
            "unique_id": "home-load",
            "ts": ts,
            "q10": q50 - 0.3,
            "q50": q50,
            "q90": q50 + 0.3,
        }
    )
    actual = q50 + rng.uniform(-0.25, 0.25, n)
    for i in above:
        actual[i] = q50[i] + 0.3 + 2.0  # far above q90 (width 0.6): 3.3 widths
    for i in below:
        actual[i] = q50[i] - 0.3 - 0.45  # 0.75 widths below q10
    load_a = pd.DataFrame({"target": "load", "unique_id": "home-load", "ts": ts, "actual": actual})
    hour = ts.tz_convert(TZ).hour.to_numpy()
    day_pv = (hour >= 6) & (hour <= 19)
    pv50 = np.where(day_pv, 2.0, 0.0)
    pv_f = pd.DataFrame(
        {
            "target": "pv",
            "unique_id": "home-pv",
            "ts": ts,
            "q10": np.where(day_pv, 1.5, 0.0),
            "q50": pv50,
            "q90": np.where(day_pv, 2.5, 0.0),
        }
    )
    pv_act = pv50 + np.where(day_pv, rng.uniform(-0.4, 0.4, n), night_noise)
    pv_a = pd.DataFrame({"target": "pv", "unique_id": "home-pv", "ts": ts, "actual": pv_act})
    return pd.concat([load_f, pv_f], ignore_index=True), pd.concat(
        [load_a, pv_a], ignore_index=True
    )


def test_actuals_inside_the_band_give_no_flag():
    fc, ac = _forecast_case()
    out = forecast_anomalies(fc, ac, DAY)
    assert out.empty
    _assert_contract(out)


def test_three_hours_far_above_q90_is_one_flag():
    fc, ac = _forecast_case(above=[10, 11, 14])
    out = forecast_anomalies(fc, ac, DAY)
    assert len(out) == 1
    row = out.iloc[0]
    ts = day_intervals_utc(DAY, TZ)
    assert (row["rule"], row["subject_id"], row["severity"]) == (
        "forecast_miss",
        "load:home-load",
        "high",
    )
    assert row["ts_start"] == ts[10] and row["ts_end"] == ts[15]
    ev = json.loads(row["evidence"])
    assert ev["count"] == 3 and ev["above"] == 3 and ev["intervals"] == 24
    assert ev["coverage"] == pytest.approx(21 / 24)
    worst = ac[(ac["target"] == "load") & (ac["ts"] == pd.Timestamp(ev["worst_ts"]))]
    assert ev["actual"] == pytest.approx(float(worst["actual"].iloc[0]))
    assert ev["q90"] - ev["q10"] == pytest.approx(0.6)
    assert ev["exceedance_widths"] > 2
    _assert_contract(out)


def test_two_misses_are_not_enough_and_mild_misses_are_medium():
    fc, ac = _forecast_case(above=[10, 11])
    assert forecast_anomalies(fc, ac, DAY).empty
    fc, ac = _forecast_case(below=[3, 4, 5])
    out = forecast_anomalies(fc, ac, DAY)
    assert list(out["severity"]) == ["medium"]
    assert json.loads(out.iloc[0]["evidence"])["below"] == 3
    strict = AnomalyThresholds(forecast_miss_k=1.0)
    assert forecast_anomalies(fc, ac, DAY, thresholds=strict).empty


def test_zero_width_night_band_tolerates_noise_only():
    fc, ac = _forecast_case(night_noise=0.02)
    assert forecast_anomalies(fc, ac, DAY).empty
    fc, ac = _forecast_case(night_noise=0.3)
    out = forecast_anomalies(fc, ac, DAY)
    assert list(out["subject_id"]) == ["pv:home-pv"]
    assert out.iloc[0]["severity"] == "high"
    assert json.loads(out.iloc[0]["evidence"])["exceedance_widths"] is None


# ---------------------------------------------------------------------------- property


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    day=st.sampled_from([dt.date(2024, 3, 31), dt.date(2024, 6, 12), dt.date(2024, 10, 27)]),
    minutes=st.sampled_from([15, 60]),
    n_mps=st.integers(1, 3),
    history_hours=st.integers(0, 72),
)
def test_clean_random_data_never_has_gap_negative_or_flatline(
    data, day, minutes, n_mps, history_hours
):
    ts = day_intervals_utc(day, TZ, minutes)
    step = pd.Timedelta(minutes=minutes)
    hist_ts = pd.date_range(end=ts[0] - step, periods=history_hours, freq=step)
    n = len(ts) + len(hist_ts)
    mps = {
        f"mp{i}": data.draw(st.sampled_from(["consumption", "production"])) for i in range(n_mps)
    }
    frames_day, frames_hist = [], []
    for mp in mps:
        # distinct integers in milli-kWh: non-negative and no two values equal
        milli = data.draw(st.lists(st.integers(0, 20_000), min_size=n, max_size=n, unique=True))
        kwh = np.asarray(milli, dtype=float) / 1000.0
        frames_hist.append(
            pd.DataFrame({"metering_point_id": mp, "ts": hist_ts, "kwh": kwh[: len(hist_ts)]})
        )
        frames_day.append(
            pd.DataFrame({"metering_point_id": mp, "ts": ts, "kwh": kwh[len(hist_ts) :]})
        )
    readings = pd.concat(frames_day, ignore_index=True).sample(frac=1.0, random_state=0)
    history = pd.concat(frames_hist, ignore_index=True)
    out = meter_anomalies(readings, history, ts, mps, day, interval=step)
    assert not ({"gap", "negative", "flatline"} & set(out["rule"]))
    assert set(out["rule"]) <= {"spike"}
    _assert_contract(out)


# ---------------------------------------------------------------------------- settlement


def _alloc(amounts: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {"member_id": list(amounts), "amount": list(amounts.values()), "shared_kwh": 1.0}
    )


def _alloc_history(days: int, amounts: dict[str, float]) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"day": DAY - dt.timedelta(days=d + 1), "member_id": m, "amount": a * rng.uniform(0.8, 1.2)}
        for d in range(days)
        for m, a in amounts.items()
    ]
    return pd.DataFrame(rows)


def test_settlement_flags_negative_benefit_negative_amounts_and_jumps():
    from models.anomalies import settlement_anomalies

    hist = _alloc_history(20, {"M01": 2.0, "M02": 3.0, "M03": 1.0})
    ev = pd.DataFrame({"controller": ["ecm", "self_consumption"], "benefit": [-1.5, -4.0]})
    out = settlement_anomalies(
        _alloc({"M01": 2.1, "M02": 12.0, "M03": -0.4}), hist, ev, DAY, "COMMUNITY"
    )
    _assert_contract(out)
    got = sorted(zip(out["rule"], out["subject_id"], out["severity"], strict=True))
    assert got == [
        ("negative_amount", "M03", "high"),
        ("negative_benefit", "COMMUNITY", "high"),  # only ECM's own day counts
        ("settlement_jump", "M02", "medium"),
    ]
    assert (
        json.loads(out.loc[out["rule"] == "settlement_jump", "evidence"].iloc[0])["history_days"]
        == 20
    )


def test_settlement_is_quiet_on_an_ordinary_day_or_without_history():
    from models.anomalies import settlement_anomalies

    ev = pd.DataFrame({"controller": ["ecm"], "benefit": [3.2]})
    hist = _alloc_history(20, {"M01": 2.0, "M02": 3.0})
    assert settlement_anomalies(_alloc({"M01": 2.2, "M02": 2.7}), hist, ev, DAY, "C").empty
    short = _alloc_history(5, {"M01": 2.0})
    assert settlement_anomalies(_alloc({"M01": 30.0}), short, ev, DAY, "C").empty


def test_drift_flags_a_champion_worse_than_the_naive_or_miscalibrated():
    from models.anomalies import drift_anomalies

    ts = pd.date_range("2024-06-05", periods=7 * 24, freq="h", tz="UTC")
    rng = np.random.default_rng(3)
    y = 1.0 + rng.normal(0, 0.2, len(ts))
    act = pd.DataFrame({"target": "load", "unique_id": "M01", "ts": ts, "y": y})
    day = pd.Series(ts.date, index=ts)

    def fc(model, point, half, champion):
        return pd.DataFrame(
            {
                "day": day.to_numpy(),
                "target": "load",
                "unique_id": "M01",
                "model": model,
                "ts": ts,
                "point": point,
                "q10": point - half,
                "q90": point + half,
                "is_champion": champion,
            }
        )

    naive = fc("seasonal_naive", y + rng.normal(0, 0.1, len(ts)), 0.3, False)
    good = fc("lightgbm", y + rng.normal(0, 0.05, len(ts)), 0.064, True)  # ~80 % covered
    assert drift_anomalies(pd.concat([good, naive]), act, DAY).empty
    bad = fc("lightgbm", y + 0.5, 0.1, True)  # biased: worse than the naive, never covers
    out = drift_anomalies(pd.concat([bad, naive]), act, DAY)
    _assert_contract(out)
    assert out["rule"].tolist() == ["forecast_drift"] and out["subject_id"].tolist() == ["load"]
    ev = json.loads(out["evidence"].iloc[0])
    assert ev["coverage"] == 0.0 and ev["skill"] < -0.05 and ev["days"] == 7
    few = pd.concat([bad, naive])
    assert drift_anomalies(few[few["ts"] < ts[3 * 24]], act, DAY).empty  # 3 days: no verdict
