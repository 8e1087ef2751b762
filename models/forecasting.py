"""Day-ahead forecasting of one target (load, PV or price) with a backtest against the baseline.

For the day ``D`` issued at ``issue_time(D)``:

1. only actuals with ``ts < issue_time(D)`` are used (enforced here, not trusted to callers);
2. every registered model is fitted on ``training_days`` days before the backtest window and
   scored on the ``backtest_days`` days before ``D`` (each backtest day built as of its own
   issue time), on the same rows as the seasonal-naive baseline;
3. every model is refitted on the latest ``training_days`` days and forecasts ``D``;
4. the champion is the model with the lowest backtest pinball loss (the baseline wins ties).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.features import build_features, features_for, issue_time, weather_covers
from models.forecasters import BASELINE, FORECASTERS, TARGET_MODELS, qcol, score

MIN_TRAINING_DAYS = 14


class InsufficientHistoryError(ValueError):
    """Not enough actuals before the issue time to train and backtest."""


@dataclass(frozen=True)
class ForecastSpec:
    """How to forecast one target."""

    target: str
    tz: str
    training_days: int = 56
    backtest_days: int = 7
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    models: tuple[str, ...] = ("seasonal_naive", "lightgbm")
    lightgbm_trees: int = 150
    latitude: float = 0.0
    longitude: float = 0.0
    interval_minutes: int = 60
    nonnegative: bool = True
    conformal: bool = True


@dataclass
class TargetForecast:
    """Result of :func:`forecast_target`."""

    target: str
    day: dt.date
    issue_time: pd.Timestamp
    forecasts: pd.DataFrame
    metrics: dict[str, dict[str, float]]
    champion: str
    backtest: pd.DataFrame
    fitted: dict[str, Any] = field(default_factory=dict)
    training_rows: int = 0
    feature_example: pd.DataFrame | None = None
    weather_basis: str = "forecast"
    """forecast | clearsky (no weather forecast stored) | none (price)"""
    failed_models: dict[str, str] = field(default_factory=dict)
    """models that failed to train, with their error (the others went on)"""


def forecast_target(
    history: pd.DataFrame,
    day: dt.date,
    spec: ForecastSpec,
    *,
    weather: pd.DataFrame | None = None,
    scale: pd.Series | None = None,
) -> TargetForecast:
    """Forecast ``spec.target`` for local ``day`` for every series in ``history``.

    Parameters
    ----------
    history : DataFrame
        ``unique_id, ts, y`` actuals [kWh or currency/kWh]. Rows at or after the issue time
        are dropped here.
    day : date
        The local day to forecast.
    spec : ForecastSpec
        Target, windows, quantiles and models.
    weather : DataFrame, optional
        ``weather`` table rows (forecasts with issue times), for load and PV.
    scale : Series, optional
        Fixed per-series scale (e.g. kWp for PV). Default: mean of each series over the 28 days
        before the backtest window (known at every issue time used).

    Returns
    -------
    TargetForecast

    Raises
    ------
    InsufficientHistoryError
        Fewer than ``MIN_TRAINING_DAYS`` + ``backtest_days`` days of actuals before ``day``.
    """
    issue = issue_time(day, spec.tz)
    hist = history[history["ts"] < issue]
    bt_start = day - dt.timedelta(days=spec.backtest_days)
    first_known = pd.Timestamp(hist["ts"].min()).tz_convert(spec.tz).date() if len(hist) else day
    train_start = max(
        bt_start - dt.timedelta(days=spec.training_days), first_known + dt.timedelta(days=2)
    )
    if (bt_start - train_start).days < MIN_TRAINING_DAYS:
        raise InsufficientHistoryError(
            f"{spec.target}: forecasting {day} needs actuals from "
            f"{bt_start - dt.timedelta(days=MIN_TRAINING_DAYS + 2)} on; the first known day is "
            f"{first_known}. Backfill earlier days first."
        )
    if scale is None:
        s_from, _ = _bounds(bt_start - dt.timedelta(days=28), spec.tz)
        s_to, _ = _bounds(bt_start, spec.tz)
        recent = hist[(hist["ts"] >= s_from) & (hist["ts"] < s_to)]
        scale = recent.groupby("unique_id")["y"].mean().clip(lower=1e-3)
    days = [train_start + dt.timedelta(days=i) for i in range((day - train_start).days + 1)]
    if spec.target == "price":
        basis = "none"
    elif weather_covers(weather, days, spec.tz, spec.interval_minutes):
        basis = "forecast"
    else:
        basis = "clearsky"
    feats = build_features(
        hist,
        days,
        target=spec.target,
        tz=spec.tz,
        weather=weather,
        scale=scale,
        latitude=spec.latitude,
        longitude=spec.longitude,
        interval_minutes=spec.interval_minutes,
        weather_basis="clearsky" if basis == "clearsky" else "forecast",
    )
    cols = features_for(spec.target, basis)
    is_train = feats["day"] < bt_start
    is_bt = (feats["day"] >= bt_start) & (feats["day"] < day)
    is_fc = feats["day"] == day
    final_from = day - dt.timedelta(days=spec.training_days)
    is_final = (feats["day"] < day) & (feats["day"] >= final_from)

    metrics: dict[str, dict[str, float]] = {}
    backtests, forecasts, fitted = [], [], {}
    failed: dict[str, str] = {}
    lo_col, hi_col = qcol(min(spec.quantiles)), qcol(max(spec.quantiles))
    level = max(spec.quantiles) - min(spec.quantiles)
    for name in spec.models:
        factory = FORECASTERS[name]
        settings = {"lightgbm_trees": spec.lightgbm_trees}
        m_bt = factory(cols, spec.quantiles, settings, spec.nonnegative)
        tr = feats[is_train]
        try:
            m_bt.fit(tr, tr["y_norm"].to_numpy())
        except Exception as exc:  # noqa: BLE001 - a failing model is reported, others go on
            if name == BASELINE:
                raise
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        bt = feats[is_bt & feats["y"].notna()]
        pb = _denorm(m_bt.predict_quantiles(bt), bt["scale"].to_numpy())
        pb = pd.concat(
            [bt[["unique_id", "ts", "day", "y"]].reset_index(drop=True), pb.reset_index(drop=True)],
            axis=1,
        )
        pb["model"] = name
        metrics[name] = score(pb, spec.quantiles)
        offset = (
            conformal_offset(pb, lo_col, hi_col, bt["scale"].to_numpy(), level)
            if spec.conformal and len(spec.quantiles) > 1
            else 0.0
        )
        metrics[name]["conformal_offset"] = offset
        backtests.append(pb)
        model = factory(cols, spec.quantiles, settings, spec.nonnegative)
        fin = feats[is_final]
        model.fit(fin, fin["y_norm"].to_numpy())
        fitted[name] = model
        fx = feats[is_fc]
        pf = _denorm(model.predict_quantiles(fx), fx["scale"].to_numpy())
        if offset:
            pf = widen(pf, offset, fx["scale"].to_numpy(), lo_col, hi_col, spec.nonnegative)
        pf = pd.concat(
            [fx[["unique_id", "ts"]].reset_index(drop=True), pf.reset_index(drop=True)], axis=1
        )
        pf["model"] = name
        forecasts.append(pf)
    for name, error in failed.items():
        warnings.warn(
            f"{spec.target}: model {name} failed to train ({error}); skipped", stacklevel=2
        )
    base = metrics[BASELINE]["pinball"] if BASELINE in metrics else np.inf
    champion = min(metrics, key=lambda k: (metrics[k]["pinball"], k != BASELINE))
    for m in metrics.values():
        if np.isfinite(base) and base > 0:
            m["pinball_skill"] = 1.0 - m["pinball"] / base
            m["mae_skill"] = (
                1.0 - m["mae"] / metrics[BASELINE]["mae"] if metrics[BASELINE]["mae"] > 0 else 0.0
            )
    fc = pd.concat(forecasts, ignore_index=True)
    fc["is_champion"] = fc["model"] == champion
    fc["target"] = spec.target
    return TargetForecast(
        target=spec.target,
        day=day,
        issue_time=issue,
        forecasts=fc,
        metrics=metrics,
        champion=champion,
        backtest=pd.concat(backtests, ignore_index=True),
        fitted=fitted,
        training_rows=int(is_final.sum()),
        feature_example=feats.loc[is_fc, cols].head(5).reset_index(drop=True),
        weather_basis=basis,
        failed_models=failed,
    )


def conformal_offset(
    backtest: pd.DataFrame, lo: str, hi: str, scale: np.ndarray, level: float
) -> float:
    """Split-conformal (CQR) offset of the outer quantiles from backtest rows.

    The nonconformity of a row is ``max(lo - y, y - hi) / scale`` (rows with a zero forecast
    and a zero actual, PV at night, are left out); the offset is its
    ``ceil((n + 1) level) / n`` empirical quantile [normalised units], so that widening (or,
    when negative, narrowing) both bounds by it covers ``level`` of the backtest. Only rows
    before the issue time are used: the calibration cannot look ahead.
    """
    y = backtest["y"].to_numpy(dtype=float)
    lo_v, hi_v = backtest[lo].to_numpy(float), backtest[hi].to_numpy(float)
    e = np.maximum(lo_v - y, y - hi_v) / np.where(scale > 0, scale, 1.0)
    # rows that are trivially right (PV at night: zero forecast, zero output) say nothing
    trivial = (np.abs(lo_v) < 1e-9) & (np.abs(hi_v) < 1e-9) & (np.abs(y) < 1e-9)
    e = e[np.isfinite(e) & ~trivial]
    if len(e) < 10:
        return 0.0
    k = min(1.0, np.ceil((len(e) + 1) * level) / len(e))
    return float(np.quantile(e, k, method="higher"))


def widen(
    pred: pd.DataFrame, offset: float, scale: np.ndarray, lo: str, hi: str, nonnegative: bool
) -> pd.DataFrame:
    """Move the outer quantiles out by ``offset × scale``, keeping lo <= q50 <= hi."""
    out = pred.copy()
    mid = out[qcol(0.5)].to_numpy(float) if qcol(0.5) in out else out["point"].to_numpy(float)
    out[lo] = np.minimum(out[lo].to_numpy(float) - offset * scale, mid)
    out[hi] = np.maximum(out[hi].to_numpy(float) + offset * scale, mid)
    if nonnegative:
        out[lo] = out[lo].clip(lower=0.0)
    return out


def _bounds(d: dt.date, tz: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    from models.timeutil import day_bounds_utc

    return day_bounds_utc(d, tz)


def _denorm(pred: pd.DataFrame, scale: np.ndarray) -> pd.DataFrame:
    return pred.mul(scale, axis=0)


def quantile_columns(quantiles: tuple[float, ...]) -> list[str]:
    """Column names of the quantile levels."""
    return [qcol(q) for q in quantiles]


TARGETS = ("load", "pv", "price")


def forecast_community(
    actuals: pd.DataFrame, weather: pd.DataFrame | None, day: dt.date, config: Any
) -> dict[str, TargetForecast]:
    """Forecast every target of a community for ``day``.

    Parameters
    ----------
    actuals : DataFrame
        ``target, unique_id, ts, y`` (see ``assets.queries.actuals``).
    weather : DataFrame
        ``weather`` table rows.
    day : date
        Local day forecast.
    config : CommunityConfig
        Settings, site and PV sizes (the scale of PV series is their kWp).
    """
    c, f = config.community, config.forecast
    kwp = {m.id: m.pv_kwp for m in config.members if m.pv_kwp > 0}
    if config.shared_assets.pv is not None:
        kwp[config.shared_assets.pv.id] = config.shared_assets.pv.kwp
    out = {}
    for target in TARGETS:
        spec = ForecastSpec(
            target=target,
            tz=c.timezone,
            training_days=f.training_days,
            backtest_days=f.backtest_days,
            quantiles=f.quantiles,
            lightgbm_trees=f.lightgbm_trees,
            latitude=c.latitude,
            longitude=c.longitude,
            interval_minutes=c.interval_minutes,
            nonnegative=True,
        )
        hist = actuals.loc[actuals["target"] == target, ["unique_id", "ts", "y"]]
        scale = (
            pd.Series(kwp)
            if target == "pv"
            else (pd.Series({"import": 1.0}) if target == "price" else None)
        )
        spec = dataclasses.replace(spec, models=TARGET_MODELS[target])
        out[target] = forecast_target(hist, day, spec, weather=weather, scale=scale)
    return out
