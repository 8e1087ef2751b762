"""Rolling-origin backtests over any period: the daily forecasting, replayed and scored.

:func:`run_backtest` calls the same :func:`models.forecasting.rolling_forecasts` and
:func:`models.forecasting.calibrate` as the daily ``forecasts`` asset, so each backtest day is
forecast exactly as it would have been on the day: models trained at its weekly origin on data
known then, intervals calibrated and the champion chosen on the out-of-sample days before it.
The scores compare every model, the ensemble and the daily champion with the naive baselines
(24 h, 168 h and, for PV, clear-sky persistence) on the same rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.features import issue_time
from models.forecasters import NAIVE, TARGET_MODELS, mae, rmse, score
from models.forecasting import (
    ModelCache,
    calibrate,
    rolling_forecasts,
    spec_for,
    target_scale,
)

CHAMPION = "champion"
"""Pseudo-model: each day's champion, i.e. what the dispatch was given."""

METRIC_COLUMNS = ("mae", "rmse", "pinball", "crps", "coverage_80", "n")


@dataclass
class BacktestResult:
    """Scores of one backtest."""

    start: dt.date
    end: dt.date
    metrics: pd.DataFrame
    """``target, model, scope, key`` and the metric columns plus ``skill_mae``"""
    forecasts: dict[str, pd.DataFrame] = field(default_factory=dict)
    """calibrated forecasts per target (all models, ensemble, champion)"""
    seconds: dict[str, float] = field(default_factory=dict)
    trained: dict[str, int] = field(default_factory=dict)
    failed: dict[str, dict[str, str]] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per target and series level: the champion's and the best naive's MAE,
        the skill, and the champion's q10-q90 coverage."""
        m = self.metrics
        rows = []
        for (target, scope), g in m[m["scope"].isin(["all", "community"])].groupby(
            ["target", "scope"], sort=False
        ):
            g = g.set_index("model")
            naive = [n for n in NAIVE[target] if n in g.index]
            if CHAMPION not in g.index or not naive:
                continue
            best = min(naive, key=lambda n: g.loc[n, "mae"])
            rows.append(
                {
                    "target": target,
                    "level": "per series" if scope == "all" else "community sum",
                    "champion_mae": g.loc[CHAMPION, "mae"],
                    "best_naive": best,
                    "naive_mae": g.loc[best, "mae"],
                    "skill_mae": 1.0 - g.loc[CHAMPION, "mae"] / g.loc[best, "mae"],
                    "coverage_80": g.loc[CHAMPION, "coverage_80"],
                }
            )
        return pd.DataFrame(rows)


def run_backtest(
    actuals: pd.DataFrame,
    weather: pd.DataFrame | None,
    config: Any,
    start: dt.date,
    end: dt.date,
    *,
    targets: tuple[str, ...] = ("load", "pv", "price"),
    models: tuple[str, ...] | None = None,
    cache: ModelCache | None = None,
) -> BacktestResult:
    """Forecast every day of [start, end] on a rolling origin and score it.

    Parameters
    ----------
    actuals : DataFrame
        ``target, unique_id, ts, y`` covering the training history before ``start`` and the
        period itself (its actuals are only scored against).
    weather : DataFrame, optional
        ``weather`` table rows.
    config : CommunityConfig
    start, end : date
        First and last local day scored (inclusive).
    targets : tuple of str
        Targets to backtest.
    models : tuple of str, optional
        Models to run (the target's naive baselines are always added).
    cache : ModelCache, optional
        Fitted models shared with the daily runs (same origins, same fingerprints).

    Returns
    -------
    BacktestResult

    Raises
    ------
    InsufficientHistoryError
        The period starts before enough history; the message names the first usable day.
    """
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    out = BacktestResult(start=start, end=end, metrics=pd.DataFrame())
    frames = []
    for target in targets:
        t0 = time.perf_counter()
        spec = spec_for(target, config)
        chosen = tuple(dict.fromkeys([*NAIVE[target], *(models or TARGET_MODELS[target])]))
        spec = dataclasses.replace(spec, models=chosen)
        lead = [start - dt.timedelta(days=k) for k in range(spec.calibration_days, 0, -1)]
        hist = actuals.loc[actuals["target"] == target, ["unique_id", "ts", "y"]]
        rf = rolling_forecasts(
            hist,
            lead + days,
            spec,
            weather=weather,
            scale=target_scale(target, config),
            cache=cache,
        )
        cal = calibrate(rf.raw, days, spec)
        fc = cal.forecasts
        champ = fc[fc["is_champion"]].assign(model=CHAMPION)
        fc = pd.concat([fc, champ], ignore_index=True)
        issues = {d: issue_time(d, spec.tz) for d in days}
        fc["horizon_hour"] = ((fc["ts"] - fc["day"].map(issues)).dt.total_seconds() // 3600).astype(
            int
        )
        out.forecasts[target] = fc
        frames.append(score_forecasts(fc, target, spec.quantiles))
        out.seconds[target] = time.perf_counter() - t0
        out.trained[target] = rf.trained
        out.failed[target] = rf.failed
    out.metrics = pd.concat(frames, ignore_index=True)
    return out


def score_forecasts(fc: pd.DataFrame, target: str, quantiles: tuple[float, ...]) -> pd.DataFrame:
    """Metrics per model: overall, per series, per horizon hour, per day, and of the
    community sum (load and PV); ``skill_mae`` against the best naive of the same scope.

    Parameters
    ----------
    fc : DataFrame
        Calibrated forecasts with ``y``, ``model``, ``unique_id``, ``day``, ``horizon_hour``.
    target : str
    quantiles : tuple of float

    Returns
    -------
    DataFrame
        ``target, model, scope, key`` and :data:`METRIC_COLUMNS` plus ``skill_mae``.
    """
    fc = fc[fc["y"].notna()]
    rows: list[dict[str, Any]] = []
    for model, g in fc.groupby("model", sort=False):
        rows.append({"model": model, "scope": "all", "key": "", **score(g, quantiles)})
        for scope, col in (("series", "unique_id"), ("horizon", "horizon_hour"), ("day", "day")):
            for k, gg in g.groupby(col, sort=True):
                rows.append({"model": model, "scope": scope, "key": str(k), **score(gg, quantiles)})
        if target in ("load", "pv"):
            agg = g.groupby("ts")[["y", "point"]].sum()
            rows.append(
                {
                    "model": model,
                    "scope": "community",
                    "key": "",
                    "mae": mae(agg["y"], agg["point"]),
                    "rmse": rmse(agg["y"], agg["point"]),
                    "pinball": np.nan,
                    "crps": np.nan,
                    "coverage_80": np.nan,
                    "n": float(len(agg)),
                }
            )
    m = pd.DataFrame(rows)
    m.insert(0, "target", target)
    naive = m[m["model"].isin(NAIVE[target])]
    best = naive.groupby(["scope", "key"])["mae"].min().rename("best_naive_mae")
    m = m.join(best, on=["scope", "key"])
    with np.errstate(divide="ignore", invalid="ignore"):
        m["skill_mae"] = 1.0 - m["mae"] / m["best_naive_mae"]
    return m.drop(columns="best_naive_mae")
