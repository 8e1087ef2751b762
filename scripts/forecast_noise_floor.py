"""Noise floor and oracles for the demo's day-ahead load and PV forecasts.

Usage::

    .venv/bin/python scripts/forecast_noise_floor.py --start 2017-05-01 --end 2017-07-31

Why this exists. The day-ahead forecasts are issued at local midnight (America/Los_Angeles)
for the 24 hours of the coming day. On the CityLearn 2022 demo data the models beat the
seasonal naive (same hour yesterday) for the per-home load, but not for the 17-home load
sum, and only barely for PV. This script measures how much of the naive's error any
forecaster working from the information available at issue time could remove, and shows
where the error comes from. It reads only ``data/demo`` and prints Markdown.

Series levels. Load per home (kWh per hour, 17 series), the 17-home load sum, PV per home
(``pv_w_per_kw / 1000 × pv_kwp`` of the member whose ``source_building`` it is, from
``community.yaml``) and the PV sum. Data are arranged as local day × local hour (24 hours;
a 25-hour DST day sums its repeated hour, a 23-hour day has one missing hour, which is
left out of the scores). MAE is the mean absolute error over every series-hour of the
period (for the per-home levels this pools the homes), as in ``ecm backtest``. ``ecm
backtest`` also pools the community's 40 kWp shared PV plant (metered as the homes' mean
W/kW × kWp) with the homes' PV; ``--with-plant`` adds it as an 18th PV series to reproduce
those figures (the skills barely change, the MAEs do).

Predictors available at issue (no look-ahead: each uses only days before the forecast day,
or quantities known for any date in advance):

* ``seasonal naive``: the same local hour yesterday;
* ``naive 168 h``: the same local hour seven days before;
* ``clear-sky persistence`` (PV): yesterday × GHI_cs(t) / GHI_cs(t − 24 h), Haurwitz
  clear-sky GHI (``pvlib.clearsky.haurwitz``) on the apparent zenith at mid-interval
  (``pvlib.solarposition``), the ratio capped at 3 and 1 where yesterday's clear-sky GHI
  was below 10 W/m2 (the same rule as the project's ``ClearSkyPersistence``);
* ``28-day profile``: the mean of the same hour over the previous 28 days, and the same
  rescaled to yesterday's daily total (a smoother shape at the naive's level);
* ``naive rescaled to OLS total``: yesterday's profile rescaled to yesterday's total plus
  the day-total change predicted by the regression below (fitted on earlier days only).

Oracles (use the truth of the forecast day, so no forecaster can have them; they bound
what knowing one part of the day would be worth):

* ``level oracle``: yesterday's hourly profile rescaled so that its daily total equals the
  TRUE daily total of the day (perfect level, naive shape);
* ``shape oracle``: the TRUE hourly shape of the day (hour / day total) times yesterday's
  daily total (perfect shape, naive level);
* ``28-day profile × true total``: the 28-day profile rescaled to the TRUE daily total;
* for PV also ``clear-sky persistence × true total``.

Error decomposition. The naive's error e(d, h) = y(d, h) − y(d − 1, h) splits exactly into
a day-level part, its mean over the day's hours ΔT(d)/24 (ΔT = today's total − yesterday's),
and a shape part, the rest; the two are orthogonal within each day, so the naive's sum of
squared errors is the sum of the two parts' sums of squares. The table gives the level
part's share, and the shares of squared error the level and shape oracles remove.

Predictability of the day level. ΔT(d) is regressed by ordinary least squares on inputs
known at the issue time of day d: yesterday's change ΔT(d − 1); the change in the weather
file's daily mean temperature and daily mean global irradiance (diffuse + direct normal ×
cos zenith) from yesterday to today, where today's values are the file's 24-hour-ahead
predictions stored on yesterday's rows (honest issue times; the file's predictions are
perfect, so this is an upper bound of weather-forecast skill); and the change of the
weekend and US-CA public-holiday flags (``holidays`` package, if installed). The fit is
on an expanding origin: for each day of the period the model is fitted on all days before
it (from the start of the data, at least 28 days) and predicts that day; per-home levels
pool the homes in one regression. Reported: the out-of-sample R² against "no change"
(the naive's implicit level forecast) and against the training mean of ΔT, the in-sample
R² of a fit on the period itself (look-ahead, an optimistic reference), and the Pearson
correlation of each predictor with ΔT over the period and over the whole year. The weather
file is a typical-meteorological-year file: it does not describe the days the homes were
metered, which the near-zero correlations show.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"
PROFILE_DAYS = 28
MIN_TRAIN_DAYS = 28
EPS = 1e-6
# Targets of the forecasting issue (MAE skill against the best naive, 2017-05-01..07-31).
TARGETS = {"load_sum": 0.12, "pv_home": 0.10}
LEVELS = {
    "load_home": "Load per home (kWh/h, 17 homes pooled)",
    "load_sum": "Load, 17-home sum (kWh/h)",
    "pv_home": "PV per home (kWh/h, 17 homes pooled)",
    "pv_sum": "PV, 17-home sum (kWh/h)",
}
LEVELS_WITH_PLANT = {
    **LEVELS,
    "pv_home": "PV per series (kWh/h, 17 homes + community plant pooled)",
    "pv_sum": "PV, 17 homes + community plant sum (kWh/h)",
}
NAIVE = "seasonal naive (yesterday)"
LEVEL_ORACLE = "ORACLE level: naive × true daily total"
SHAPE_ORACLE = "ORACLE shape: true shape × yesterday's total"
PROFILE_ORACLE = "ORACLE 28-day profile × true daily total"
OLS_LEVEL = "naive rescaled to OLS-predicted total"
PREDICTORS = {
    "dT_lag": "yesterday's change ΔT(d−1)",
    "d_temp": "Δ daily mean temperature (weather file)",
    "d_irr": "Δ daily mean irradiance (weather file)",
    "d_weekend": "Δ weekend flag",
    "d_holiday": "Δ holiday flag (US-CA)",
}


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
def _day_hour(ts: pd.Series | pd.DatetimeIndex, tz: str) -> tuple[np.ndarray, np.ndarray]:
    local = pd.DatetimeIndex(ts).tz_convert(tz)
    return np.asarray(local.date), np.asarray(local.hour)


def _grid(
    df: pd.DataFrame, value: str, keys: list[str], days: list[dt.date], how: str = "sum"
) -> np.ndarray:
    """``df`` (``keys``, ``day``, ``hour``, ``value``) as an array [key, day, hour]."""
    p = df.pivot_table(index=[*keys, "day"], columns="hour", values=value, aggfunc=how)
    p = p.reindex(columns=range(24))
    if keys:
        full = pd.MultiIndex.from_product([sorted(df[keys[0]].unique()), days])
        p = p.reindex(full)
        return p.to_numpy(dtype=float).reshape(-1, len(days), 24)
    return p.reindex(days).to_numpy(dtype=float)[None]


def load_data(with_plant: bool = False) -> dict:
    cfg = yaml.safe_load((DEMO / "community.yaml").read_text())
    com = cfg["community"]
    tz, lat, lon = com["timezone"], float(com["latitude"]), float(com["longitude"])
    kwp = {m["source_building"]: float(m["pv_kwp"]) for m in cfg["members"]}

    b = pd.read_parquet(DEMO / "citylearn_2022_buildings.parquet")
    b["day"], b["hour"] = _day_hour(b["ts"], tz)
    b["pv_kwh"] = b["pv_w_per_kw"] / 1000.0 * b["building"].map(kwp)
    days = sorted(set(b["day"]))
    # drop partial edge days (the data covers whole local days, but be safe)
    counts = b.groupby("day")["ts"].nunique()
    days = [d for d in days if counts[d] >= 23]
    b = b[b["day"].isin(set(days))]
    load = _grid(b, "load_kwh", ["building"], days)
    pv = _grid(b, "pv_kwh", ["building"], days)
    plant_kwp = float(((cfg.get("shared_assets") or {}).get("pv") or {}).get("kwp") or 0.0)
    if with_plant and plant_kwp > 0:
        # the community plant as ECM meters it: mean W/kW of the 17 homes × kWp / 1000
        plant = _grid(b, "pv_w_per_kw", [], days, how="sum") / len(kwp) * plant_kwp / 1000.0
        pv = np.concatenate([pv, plant])

    # clear-sky GHI at mid-interval on the same day × hour grid
    ts = pd.DatetimeIndex(sorted(b["ts"].unique()))
    mid = ts + pd.Timedelta(minutes=30)
    zen = pvlib.solarposition.get_solarposition(mid, lat, lon)["apparent_zenith"]
    cs = pvlib.clearsky.haurwitz(pd.Series(zen.to_numpy(), index=ts))["ghi"].to_numpy()
    d, h = _day_hour(ts, tz)
    csf = pd.DataFrame({"day": d, "hour": h, "ghi": cs})
    cs_grid = _grid(csf, "ghi", [], days, how="mean")[0]

    # weather file: daily means observed (by day) and predicted 24 h ahead (on the day before)
    w = pd.read_parquet(DEMO / "citylearn_2022_weather.parquet").set_index("ts").sort_index()
    wmid = w.index + pd.Timedelta(minutes=30)
    wz = pvlib.solarposition.get_solarposition(wmid, lat, lon)["apparent_zenith"].to_numpy()
    cosz = np.clip(np.cos(np.radians(wz)), 0.0, None)
    wd, _ = _day_hour(w.index, tz)
    wx = pd.DataFrame(
        {
            "day": wd,
            "temp": w["temperature_2m"].to_numpy(),
            "irr": (w["diffuse_radiation"] + w["direct_normal_irradiance"] * cosz).to_numpy(),
            "temp_fc": w["temperature_2m_pred_24h"].to_numpy(),
            "irr_fc": (
                w["diffuse_radiation_pred_24h"]
                + w["direct_normal_irradiance_pred_24h"] * np.roll(cosz, -24)
            ).to_numpy(),
        }
    )
    wdaily = wx.groupby("day").mean().reindex(days)
    # ΔX(d) = X(d) as predicted on day d−1's rows − X(d−1) as observed: known at issue
    d_temp = wdaily["temp_fc"].shift(1) - wdaily["temp"].shift(1)
    d_irr = wdaily["irr_fc"].shift(1) - wdaily["irr"].shift(1)

    weekend = np.array([d.weekday() >= 5 for d in days], dtype=float)
    try:
        import holidays

        hol_set = set(
            holidays.country_holidays("US", subdiv="CA", years=sorted({d.year for d in days}))
        )
        have_holidays = True
    except ImportError:  # pragma: no cover - optional
        hol_set, have_holidays = set(), False
    holiday = np.array([d in hol_set for d in days], dtype=float)

    series = {
        "load_home": load,
        "load_sum": np.nansum(load, axis=0, keepdims=True),
        "pv_home": pv,
        "pv_sum": np.nansum(pv, axis=0, keepdims=True),
    }
    common = pd.DataFrame(
        {
            "d_temp": d_temp.to_numpy(),
            "d_irr": d_irr.to_numpy(),
            "d_weekend": np.r_[np.nan, np.diff(weekend)],
            "d_holiday": np.r_[np.nan, np.diff(holiday)],
        },
        index=pd.Index(days, name="day"),
    )
    return {
        "days": days,
        "series": series,
        "cs": cs_grid,
        "common": common,
        "have_holidays": have_holidays,
        "n_homes": load.shape[0],
    }


# ---------------------------------------------------------------------------------------
# predictors and oracles
# ---------------------------------------------------------------------------------------
def _shift(a: np.ndarray, k: int) -> np.ndarray:
    """Value k days before (axis 1), NaN where unavailable."""
    out = np.full_like(a, np.nan)
    out[:, k:] = a[:, :-k]
    return out


def _rescale(profile: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``profile`` [s, d, h] rescaled so its daily total is ``total`` [s, d] (flat if ~0)."""
    ptot = np.nansum(profile, axis=2, keepdims=True)
    t = total[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(ptot > EPS, profile * t / ptot, np.broadcast_to(t / 24.0, profile.shape))
    return np.where(np.isnan(profile) & (ptot > EPS), np.nan, out)


def forecasts(y: np.ndarray, cs: np.ndarray, is_pv: bool, dT_hat: np.ndarray) -> dict:
    """Every predictor and oracle for the array y [series, day, hour]."""
    total = np.nansum(y, axis=2)
    total[np.isnan(y).all(axis=2)] = np.nan
    naive = _shift(y, 1)
    naive_tot = _shift(total[..., None], 1)[..., 0]
    prof = np.full_like(y, np.nan)
    for i in range(PROFILE_DAYS, y.shape[1]):
        prof[:, i] = np.nanmean(y[:, i - PROFILE_DAYS : i], axis=1)

    fc: dict[str, tuple[np.ndarray, bool]] = {}  # name -> (forecast, available at issue)
    fc[NAIVE] = (naive, True)
    fc["naive 168 h"] = (_shift(y, 7), True)
    if is_pv:
        before = np.r_[np.full((1, 24), np.nan), cs[:-1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(before >= 10.0, np.clip(cs / before, 0.0, 3.0), 1.0)
        fc["clear-sky persistence"] = (naive * ratio[None], True)
    fc["28-day profile"] = (prof, True)
    fc["28-day profile × yesterday's total"] = (_rescale(prof, naive_tot), True)
    fc[OLS_LEVEL] = (
        _rescale(naive, np.clip(naive_tot + dT_hat, 0.0, None)),
        True,
    )
    fc[LEVEL_ORACLE] = (_rescale(naive, total), False)
    fc[SHAPE_ORACLE] = (_rescale(y, naive_tot), False)
    fc[PROFILE_ORACLE] = (_rescale(prof, total), False)
    if is_pv:
        fc["ORACLE clear-sky persistence × true daily total"] = (
            _rescale(fc["clear-sky persistence"][0], total),
            False,
        )
    return fc


def mae(f: np.ndarray, y: np.ndarray) -> float:
    e = np.abs(f - y)
    return float(np.nanmean(e))


# ---------------------------------------------------------------------------------------
# day-level regression
# ---------------------------------------------------------------------------------------
def level_design(y: np.ndarray, common: pd.DataFrame) -> pd.DataFrame:
    """Rows (series, day): ΔT and the predictors known at issue."""
    total = np.nansum(y, axis=2)
    dT = np.full_like(total, np.nan)
    dT[:, 1:] = total[:, 1:] - total[:, :-1]
    dT_lag = np.full_like(dT, np.nan)
    dT_lag[:, 1:] = dT[:, :-1]
    frames = []
    for s in range(y.shape[0]):
        f = common.copy()
        f["dT_lag"] = dT_lag[s]
        f["dT"] = dT[s]
        f["series"] = s
        f["day_i"] = np.arange(len(common))
        frames.append(f)
    return pd.concat(frames)


def expanding_ols(
    X: pd.DataFrame, cols: list[str], eval_idx: np.ndarray, n_series: int, n_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted ΔT [series, day] (NaN outside eval days) and the training mean of ΔT."""
    X = X.dropna(subset=[*cols, "dT"])
    A = np.c_[np.ones(len(X)), X[cols].to_numpy(dtype=float)]
    b = X["dT"].to_numpy(dtype=float)
    di = X["day_i"].to_numpy()
    si = X["series"].to_numpy()
    pred = np.full((n_series, n_days), np.nan)
    mean = np.full((n_series, n_days), np.nan)
    for d in eval_idx:
        train = di < d
        if len(np.unique(di[train])) < MIN_TRAIN_DAYS:
            continue
        coef, *_ = np.linalg.lstsq(A[train], b[train], rcond=None)
        test = di == d
        pred[si[test], d] = A[test] @ coef
        mean[si[test], d] = b[train].mean()
    return pred, mean


def r2(y: np.ndarray, f: np.ndarray, ref: np.ndarray) -> float:
    ok = ~(np.isnan(y) | np.isnan(f) | np.isnan(ref))
    return float(1.0 - np.sum((y[ok] - f[ok]) ** 2) / np.sum((y[ok] - ref[ok]) ** 2))


def in_sample_r2(X: pd.DataFrame, cols: list[str]) -> float:
    X = X.dropna(subset=[*cols, "dT"])
    A = np.c_[np.ones(len(X)), X[cols].to_numpy(dtype=float)]
    b = X["dT"].to_numpy(dtype=float)
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    return float(1.0 - np.sum((b - A @ coef) ** 2) / np.sum((b - b.mean()) ** 2))


def corr(a: pd.Series, b: pd.Series) -> float:
    ok = a.notna() & b.notna()
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------
def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:+.1f} %"


def share(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f} %"


def num(x: float, nd: int = 3) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.{nd}f}"


def analyse_level(
    y: np.ndarray,
    data: dict,
    cols: list[str],
    eval_mask: np.ndarray,
    is_pv: bool,
) -> dict:
    """Scores, error decomposition and level regression of one series level."""
    days: list[dt.date] = data["days"]
    eval_idx = np.flatnonzero(eval_mask)
    X = level_design(y, data["common"])
    dT_hat, dT_mean = expanding_ols(X, cols, eval_idx, y.shape[0], len(days))
    fc = forecasts(y, data["cs"], is_pv, dT_hat)
    ye = y[:, eval_mask]
    maes = {name: mae(f[:, eval_mask], ye) for name, (f, _) in fc.items()}
    naive_names = [NAIVE, "naive 168 h"] + (["clear-sky persistence"] if is_pv else [])
    best_naive = min(naive_names, key=lambda n: maes[n])
    feasible = [n for n, (_, avail) in fc.items() if avail]
    best_feasible = min(feasible, key=lambda n: maes[n])

    # per month: naive MAE and oracle skills
    months = np.array([(d.year, d.month) for d in days])
    monthly = []
    for ym in sorted({tuple(m) for m in months[eval_mask]}):
        mm = eval_mask & (months[:, 0] == ym[0]) & (months[:, 1] == ym[1])
        m_maes = {n: mae(f[:, mm], y[:, mm]) for n, (f, _) in fc.items()}
        m_bn = min(m_maes[n] for n in naive_names)
        m_bf = min(feasible, key=lambda n: m_maes[n])
        monthly.append(
            {
                "month": f"{ym[0]}-{ym[1]:02d}",
                "bn": m_bn,
                "level": 1 - m_maes[LEVEL_ORACLE] / m_bn,
                "shape": 1 - m_maes[SHAPE_ORACLE] / m_bn,
                "profile": 1 - m_maes[PROFILE_ORACLE] / m_bn,
                "feasible": (m_bf, 1 - m_maes[m_bf] / m_bn),
            }
        )

    # decomposition of the seasonal naive's squared error over whole days
    e = ye - fc[NAIVE][0][:, eval_mask]
    ok_day = ~np.isnan(e).any(axis=2)
    e = np.where(ok_day[..., None], e, np.nan)
    lvl = np.broadcast_to(np.nanmean(e, axis=2, keepdims=True), e.shape)
    sse = float(np.nansum(e**2))
    sse_lvl = float(np.nansum(np.where(np.isnan(e), np.nan, lvl) ** 2))
    sse_shape = float(np.nansum((e - lvl) ** 2))

    def sse_of(name: str) -> float:
        f = fc[name][0][:, eval_mask]
        return float(np.nansum(np.where(ok_day[..., None], (ye - f) ** 2, np.nan)))

    # day-level regression
    dT = X.pivot(index="series", columns="day_i", values="dT").to_numpy()
    dT_e, hat_e, mean_e = dT[:, eval_mask], dT_hat[:, eval_mask], dT_mean[:, eval_mask]
    ok = ~(np.isnan(dT_e) | np.isnan(hat_e))
    Xe = X[X["day_i"].isin(eval_idx)]
    corrs_e = {c: corr(Xe[c], Xe["dT"]) for c in cols}
    return {
        "maes": maes,
        "avail": {n: avail for n, (_, avail) in fc.items()},
        "best_naive": best_naive,
        "bn": maes[best_naive],
        "best_feasible": best_feasible,
        "monthly": monthly,
        "mse": sse / np.sum(~np.isnan(e)),
        "lvl_share": sse_lvl / sse,
        "shape_share": sse_shape / sse,
        "removed_level": 1 - sse_of(LEVEL_ORACLE) / sse,
        "removed_shape": 1 - sse_of(SHAPE_ORACLE) / sse,
        "daily_total": float(np.nanmean(np.nansum(ye, axis=2))),
        "mad_dT": float(np.mean(np.abs(dT_e[ok]))),
        "mae_dT_ratio": float(np.mean(np.abs(dT_e[ok] - hat_e[ok])) / np.mean(np.abs(dT_e[ok]))),
        "r2_zero": r2(dT_e, hat_e, np.zeros_like(dT_e)),
        "r2_mean": r2(dT_e, hat_e, mean_e),
        "r2_in": in_sample_r2(Xe, cols),
        "corrs_e": corrs_e,
        "corrs_all": {c: corr(X[c], X["dT"]) for c in cols},
        "corr_max": max(corrs_e.items(), key=lambda kv: abs(np.nan_to_num(kv[1]))),
    }


def print_level(title: str, r: dict, cols: list[str]) -> None:
    m, sn, bn = r["maes"], r["maes"][NAIVE], r["bn"]
    print(f"## {title}")
    print()
    print(
        table(
            [
                "predictor",
                "known at issue",
                "MAE",
                "skill vs seasonal naive",
                f"skill vs best naive ({r['best_naive']})",
            ],
            [
                [n, "yes" if r["avail"][n] else "no", num(v), pct(1 - v / sn), pct(1 - v / bn)]
                for n, v in m.items()
            ],
        )
    )
    print()
    print(
        table(
            ["seasonal naive's squared error", "value"],
            [
                ["mean squared error", num(r["mse"])],
                ["share that is day-level (ΔT/24 in every hour)", share(r["lvl_share"])],
                ["share that is shape (within-day deviation)", share(r["shape_share"])],
                ["share removed by the level oracle", share(r["removed_level"])],
                ["share removed by the shape oracle", share(r["removed_shape"])],
                ["mean daily total (kWh)", num(r["daily_total"], 2)],
                ["mean absolute day-to-day change of the total (kWh)", num(r["mad_dT"], 2)],
            ],
        )
    )
    print()
    print(
        table(
            ["predictor of ΔT (today's − yesterday's total)", "corr, period", "corr, whole year"],
            [[PREDICTORS[c], num(r["corrs_e"][c], 2), num(r["corrs_all"][c], 2)] for c in cols],
        )
    )
    print()
    print(
        table(
            ["OLS of ΔT on the predictors above", "value"],
            [
                [
                    "R² out of sample (expanding origin) vs no change (the naive's level)",
                    num(r["r2_zero"]),
                ],
                ["R² out of sample (expanding origin) vs training mean", num(r["r2_mean"])],
                ["R² in sample on the period itself (look-ahead, optimistic)", num(r["r2_in"])],
                [
                    "mean |ΔT − OLS| / mean |ΔT| (below 1: better than no change)",
                    num(r["mae_dT_ratio"]),
                ],
            ],
        )
    )
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="2017-05-01", type=dt.date.fromisoformat)
    ap.add_argument("--end", default="2017-07-31", type=dt.date.fromisoformat)
    ap.add_argument(
        "--with-plant",
        action="store_true",
        help="add the 40 kWp community PV plant as an 18th PV series (as ecm backtest pools it)",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()

    data = load_data(args.with_plant)
    days: list[dt.date] = data["days"]
    eval_mask = np.array([args.start <= d <= args.end for d in days])
    eval_idx = np.flatnonzero(eval_mask)
    if len(eval_idx) == 0:
        raise SystemExit(f"no data between {args.start} and {args.end}")
    if eval_idx[0] < PROFILE_DAYS + 1:
        raise SystemExit(
            f"--start must leave {PROFILE_DAYS + 1} days of history (first day {days[0]})"
        )
    cols = ["dT_lag", "d_temp", "d_irr", "d_weekend"] + (
        ["d_holiday"] if data["have_holidays"] else []
    )
    n_hol = int((data["common"]["d_holiday"].iloc[eval_idx] != 0).sum())
    levels = LEVELS_WITH_PLANT if args.with_plant else LEVELS

    print(f"# Forecast noise floor: {days[eval_idx[0]]} .. {days[eval_idx[-1]]}")
    print()
    print(
        f"{len(eval_idx)} days, {data['n_homes']} homes"
        f"{' + the community PV plant' if args.with_plant else ''}, day-ahead issue at local "
        f"midnight (America/Los_Angeles). MAE over every series-hour of the period; skill = "
        f"1 − MAE / MAE of the best naive (seasonal naive, naive 168 h, and clear-sky "
        f"persistence for PV). Rows marked ORACLE use the forecast day's truth: they bound "
        f"what knowing part of the day is worth and are not forecasters. ΔT = today's daily "
        f"total − yesterday's."
    )
    print()

    results: dict[str, dict] = {}
    for key, title in levels.items():
        r = analyse_level(data["series"][key], data, cols, eval_mask, key.startswith("pv"))
        r["title"] = title
        print_level(title, r, cols)
        results[key] = r

    print("## Summary")
    print()
    rows = []
    for key, r in results.items():
        m, bn = r["maes"], r["bn"]
        bf = r["best_feasible"]
        rows.append(
            [
                r["title"],
                num(bn),
                share(r["lvl_share"]),
                num(r["r2_zero"]),
                f"{pct(1 - m[bf] / bn)} ({bf})",
                pct(1 - m[LEVEL_ORACLE] / bn),
                pct(1 - m[SHAPE_ORACLE] / bn),
                pct(1 - m[PROFILE_ORACLE] / bn),
                pct(TARGETS[key]) if key in TARGETS else "—",
            ]
        )
    print(
        table(
            [
                "level",
                "best naive MAE",
                "naive SSE that is day-level",
                "OOS R² of ΔT",
                "best skill known at issue",
                "level oracle",
                "shape oracle",
                "28-day profile × true total",
                "target",
            ],
            rows,
        )
    )
    print()
    rows = []
    for r in results.values():
        for mo in r["monthly"]:
            rows.append(
                [
                    r["title"].split(" (")[0],
                    mo["month"],
                    num(mo["bn"]),
                    f"{pct(mo['feasible'][1])} ({mo['feasible'][0]})",
                    pct(mo["level"]),
                    pct(mo["shape"]),
                    pct(mo["profile"]),
                ]
            )
    print(
        table(
            [
                "level",
                "month",
                "best naive MAE",
                "best skill known at issue",
                "level oracle",
                "shape oracle",
                "28-day profile × true total",
            ],
            rows,
        )
    )
    print()
    print("## Conclusion")
    print()
    print(conclusion(results, n_hol, data["have_holidays"]))
    print()
    print(f"_Computed in {time.perf_counter() - t0:.1f} s._")


def _predictability(r2_zero: float) -> str:
    if r2_zero <= 0.05:
        return "unpredictable from the inputs known at issue"
    if r2_zero <= 0.2:
        return "barely predictable from the inputs known at issue"
    return "partly predictable from the inputs known at issue"


def conclusion(results: dict, n_hol: int, have_holidays: bool) -> str:
    parts = []
    for key, r in results.items():
        m, bn = r["maes"], r["bn"]
        lo = 1 - m[LEVEL_ORACLE] / bn
        so = 1 - m[SHAPE_ORACLE] / bn
        po = 1 - m[PROFILE_ORACLE] / bn
        ols = 1 - m[OLS_LEVEL] / bn
        bf = r["best_feasible"]
        feas = 1 - m[bf] / bn
        c_name, c_val = r["corr_max"]
        s = (
            f"{r['title'].split(' (')[0]}: {100 * r['lvl_share']:.0f} % of the seasonal "
            f"naive's squared error is day-level (knowing the true daily total removes "
            f"{100 * r['removed_level']:.0f} %); the level change is "
            f"{_predictability(r['r2_zero'])} (out-of-sample R² = {r['r2_zero']:.2f} against "
            f"'no change', {r['r2_in']:.2f} even in sample; strongest predictor "
            f"{PREDICTORS[c_name]}, r = {c_val:+.2f}), and rescaling yesterday's profile to "
            f"the predicted total gives {100 * ols:+.1f} % skill; a forecaster matching the "
            f"level oracle would reach {100 * lo:+.1f} % skill (shape oracle {100 * so:+.1f} %, "
            f"28-day profile × true total {100 * po:+.1f} %), while the best predictor known "
            f"at issue here, {bf}, reaches {100 * feas:+.1f} %"
        )
        if key in TARGETS:
            t = TARGETS[key]
            if feas >= t:
                s += (
                    f"; the +{100 * t:.0f} % target is reached over this period by that simple "
                    f"issue-time predictor, so it is not impossible on this data"
                )
            elif t > lo:
                s += (
                    f"; the +{100 * t:.0f} % target is above the level oracle, so a perfect "
                    f"daily total on yesterday's profile would not reach it: the gain has to "
                    f"come from a smoother within-day shape, where the best issue-time "
                    f"predictor falls {100 * (t - feas):.1f} points short; the data show the "
                    f"target out of reach of the daily level (which the known inputs do not "
                    f"predict), not impossible (28-day profile × true total: "
                    f"{100 * po:+.1f} %)"
                )
            elif r["r2_zero"] <= 0.2:
                s += (
                    f"; the +{100 * t:.0f} % target needs {100 * t / lo:.0f} % of the level "
                    f"oracle's gain, i.e. much of the day's true total, which the inputs "
                    f"known at issue do not predict, and no issue-time predictor of the shape "
                    f"beats the naive either"
                    if feas <= 0.005
                    else f"; the +{100 * t:.0f} % target needs {100 * t / lo:.0f} % of the "
                    f"level oracle's gain, i.e. much of the day's true total, which the "
                    f"inputs known at issue do not predict"
                )
            else:
                s += f"; the +{100 * t:.0f} % target is within reach of a level forecast"
        parts.append(s + ".")
    r_weather = max(
        abs(np.nan_to_num(r["corrs_all"][c])) for r in results.values() for c in ("d_temp", "d_irr")
    )
    tail = (
        f" The weather file is a typical-year file, so its day-to-day changes do not track "
        f"the metered days (|r| ≤ {r_weather:.2f} with ΔT at every level over the whole "
        f"year); with real day-ahead weather forecasts the PV level would be partly "
        f"predictable, which this data cannot show."
    )
    if have_holidays:
        tail += f" The period holds {n_hol} day(s) whose holiday flag changes."
    return "In plain terms: " + " ".join(parts) + tail


if __name__ == "__main__":
    main()
