"""Day-ahead forecasting on a rolling origin: models retrained on a cadence, every day
forecast as of its own issue time, intervals calibrated and champions chosen out of sample.

For the local day ``D`` issued at ``issue_time(D)`` (local midnight):

1. **Training origin.** The models forecasting ``D`` were trained at
   ``training_origin(D)``, the latest day on or before ``D`` on a fixed weekly grid (every
   ``retrain_every_days`` days from a Monday epoch), on the ``training_days`` days before
   that origin. A day's forecast therefore does not depend on the order days are run in, and
   retraining happens once a week instead of every day (fitted models are cached by a
   fingerprint of their training data, so a correction of past readings retrains).
2. **Out-of-sample window.** The ``calibration_days`` days before ``D`` are forecast the same
   way (each by its own origin's models, with features as of its own issue time), so the
   window holds the forecasts ECM would have issued. From it, and nothing later:
   - the weights of the ``ensemble`` (inverse pinball loss of the best three models);
   - each model's split-conformal (CQR) offset of the outer quantiles;
   - the champion, the lowest pinball loss over the window; a challenger replaces the
     baseline only over a window of at least ``champion_min_days`` days.
3. ``ecm backtest`` runs the same function over any period, so the skill it reports is the
   skill of the daily forecasts.

No step uses an actual at or after the issue time of the day it forecasts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from models.features import (
    apply_scale,
    build_features,
    features_for,
    holiday_calendar,
    issue_time,
    weather_covers,
)
from models.forecasters import (
    BASELINE,
    FORECASTERS,
    NAIVE,
    TARGET_MODELS,
    informative,
    qcol,
    score,
)

MIN_TRAINING_DAYS = 14
"""Fewest days a model is trained on [d]."""
MIN_CALIBRATION_DAYS = 7
"""Fewest out-of-sample days before a forecast day [d]."""
EPOCH = dt.date(2000, 1, 3)
"""A Monday: training origins fall on the same weekday in every run."""
ENSEMBLE = "ensemble"
ENSEMBLE_SIZE = 3
TOTAL = "__total__"
"""The community-total series forecast beside the members when ``spec.hierarchy``."""


class InsufficientHistoryError(ValueError):
    """Not enough actuals before the issue time to train and calibrate."""


@dataclass(frozen=True)
class ForecastSpec:
    """How to forecast one target."""

    target: str
    tz: str
    training_days: int = 56
    retrain_every_days: int = 7
    calibration_days: int = 28
    champion_min_days: int = 28
    champion_margin: float = 0.02
    """a challenger must beat the best naive by this share on both pinball loss and MAE"""
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    models: tuple[str, ...] = ("seasonal_naive", "lightgbm")
    lightgbm_trees: int = 150
    latitude: float = 0.0
    longitude: float = 0.0
    interval_minutes: int = 60
    nonnegative: bool = True
    conformal: bool = True
    ensemble: bool = True
    holidays: tuple[dt.date, ...] = ()
    hierarchy: bool = False
    half_life_days: float | None = 7.0
    """weight of window days in the conformal offset halves every this many days (None: equal)"""
    """also forecast the community total and reconcile the members with it (MinT, WLS)"""


def training_origin(day: dt.date, every_days: int) -> dt.date:
    """The training origin of ``day``: the latest grid day on or before it."""
    return day - dt.timedelta(days=(day - EPOCH).days % every_days)


def first_usable_day(first_known: dt.date, spec: ForecastSpec) -> dt.date:
    """The first day that can be forecast with actuals from ``first_known`` on."""
    floor = first_known + dt.timedelta(days=2)
    d = floor + dt.timedelta(days=MIN_TRAINING_DAYS + MIN_CALIBRATION_DAYS)
    while (
        _trainable_days(
            training_origin(d - dt.timedelta(days=MIN_CALIBRATION_DAYS), spec.retrain_every_days),
            floor,
            spec,
        )
        < MIN_TRAINING_DAYS
    ):  # noqa: E501
        d += dt.timedelta(days=1)
    return d


def _trainable_days(origin: dt.date, floor: dt.date, spec: ForecastSpec) -> int:
    return (origin - max(origin - dt.timedelta(days=spec.training_days), floor)).days


class ModelCache:
    """Fitted models on disk, keyed by target, model, origin and training-data fingerprint.

    Parameters
    ----------
    root : Path or None
        Folder of the pickles (``$ECM_HOME/model_cache``); None disables caching.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def _path(self, target: str, name: str, origin: dt.date, fingerprint: str) -> Path:
        assert self.root is not None
        return self.root / target / name / f"{origin.isoformat()}-{fingerprint}.pkl"

    def load(self, target: str, name: str, origin: dt.date, fingerprint: str) -> Any | None:
        """The cached model, or None."""
        if self.root is None:
            return None
        path = self._path(target, name, origin, fingerprint)
        if not path.exists():
            return None
        try:
            with path.open("rb") as fh:
                return pickle.load(fh)  # noqa: S301 - our own files under ECM_HOME
        except Exception:  # noqa: BLE001 - a torn or stale pickle is retrained
            return None

    def save(self, target: str, name: str, origin: dt.date, fingerprint: str, model: Any) -> None:
        """Store a fitted model (written to a temporary file, then renamed: never torn)."""
        if self.root is None:
            return
        path = self._path(target, name, origin, fingerprint)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # one per writer process
        with tmp.open("wb") as fh:
            pickle.dump(model, fh)
        tmp.replace(path)

    def latest(self, target: str, name: str, before: dt.date) -> tuple[dt.date, Any] | None:
        """The most recent cached model of ``name`` trained before ``before`` (fallback)."""
        if self.root is None or not (self.root / target / name).exists():
            return None
        found = sorted(
            (dt.date.fromisoformat(p.name[:10]), p)
            for p in (self.root / target / name).glob("*.pkl")
            if dt.date.fromisoformat(p.name[:10]) < before
        )
        for origin, path in reversed(found):
            try:
                with path.open("rb") as fh:
                    return origin, pickle.load(fh)  # noqa: S301
            except Exception:  # noqa: BLE001
                continue
        return None


@dataclass
class RollingForecasts:
    """Raw (uncalibrated) out-of-sample forecasts of :func:`rolling_forecasts`."""

    raw: pd.DataFrame
    """``unique_id, ts, day, y, scale, origin, model, point`` and the quantile columns"""
    fitted: dict[str, Any]
    """the models of the last origin, by name"""
    failed: dict[str, str]
    """``model@origin`` -> error, for models that failed to train"""
    stale: dict[str, str]
    """``model@origin`` -> origin of the earlier model used instead"""
    weather_basis: str
    training_rows: int
    feature_example: pd.DataFrame | None
    trained: int = 0
    """models fitted in this call (the others came from the cache)"""


def rolling_forecasts(
    history: pd.DataFrame,
    days: list[dt.date],
    spec: ForecastSpec,
    *,
    weather: pd.DataFrame | None = None,
    scale: pd.Series | None = None,
    cache: ModelCache | None = None,
) -> RollingForecasts:
    """Forecast every series of ``history`` for each of ``days`` as of its issue time.

    Parameters
    ----------
    history : DataFrame
        ``unique_id, ts, y`` actuals [kWh or currency/kWh]. Rows after a day's issue time
        serve only as that day's outcome (``y``) and as training targets of later origins.
    days : list of date
        Local days to forecast.
    spec : ForecastSpec
        Target, windows, cadence, quantiles and models.
    weather : DataFrame, optional
        ``weather`` table rows (forecasts with issue times).
    scale : Series, optional
        Fixed per-series scale (PV: kWp). Default: each series' mean over the 28 days before
        each training origin.
    cache : ModelCache, optional
        Fitted models by origin and training-data fingerprint.

    Returns
    -------
    RollingForecasts

    Raises
    ------
    InsufficientHistoryError
        No day of ``days`` has enough history; names the first usable day.
    """
    days = sorted(days)
    every = spec.retrain_every_days
    # a fixed row order: sums and means (levels, scales, the community total) then do not
    # depend on how the rows came from the warehouse, nor do the training fingerprints
    history = history.sort_values(["unique_id", "ts"], kind="stable", ignore_index=True)
    if history.empty:
        raise InsufficientHistoryError(f"{spec.target}: no actuals stored")
    if spec.hierarchy:
        history = with_total(history)
        if scale is not None:
            scale = pd.concat([scale, pd.Series({TOTAL: float(scale.sum())})])
    first_known = pd.Timestamp(history["ts"].min()).tz_convert(spec.tz).date()
    floor = first_known + dt.timedelta(days=2)
    by_origin: dict[dt.date, list[dt.date]] = {}
    for d in days:
        by_origin.setdefault(training_origin(d, every), []).append(d)
    usable = [o for o in sorted(by_origin) if _trainable_days(o, floor, spec) >= MIN_TRAINING_DAYS]
    if not usable:
        raise InsufficientHistoryError(
            f"{spec.target}: forecasting {days[-1]} needs more history; the first known day is "
            f"{first_known} and the first usable day is {first_usable_day(first_known, spec)}. "
            "Backfill earlier days first, or start later."
        )
    feat_start = max(usable[0] - dt.timedelta(days=spec.training_days), floor)
    feat_days = [feat_start + dt.timedelta(days=i) for i in range((days[-1] - feat_start).days + 1)]
    if spec.target == "price":
        basis = "none"
    elif weather_covers(weather, feat_days, spec.tz, spec.interval_minutes):
        basis = "forecast"
    else:
        basis = "clearsky"
    feats = build_features(
        history,
        feat_days,
        target=spec.target,
        tz=spec.tz,
        weather=weather,
        latitude=spec.latitude,
        longitude=spec.longitude,
        interval_minutes=spec.interval_minutes,
        weather_basis="clearsky" if basis == "clearsky" else "forecast",
        holiday_days=spec.holidays,
    )
    cols = features_for(spec.target, basis)
    fday = feats["day"].to_numpy()
    settings = {"lightgbm_trees": spec.lightgbm_trees}
    frames: list[pd.DataFrame] = []
    failed: dict[str, str] = {}
    stale: dict[str, str] = {}
    last_ok: dict[str, tuple[dt.date, Any]] = {}
    trained, training_rows, example = 0, 0, None
    for o in usable:
        tr_from = max(o - dt.timedelta(days=spec.training_days), floor)
        tr_mask = (fday >= tr_from) & (fday < o)
        pr_mask = np.isin(fday, by_origin[o])
        if scale is not None:
            sc = scale
        else:
            s_from, s_to = issue_time(o - dt.timedelta(days=28), spec.tz), issue_time(o, spec.tz)
            recent = history[(history["ts"] >= s_from) & (history["ts"] < s_to)]
            sc = recent.groupby("unique_id")["y"].mean().clip(lower=1e-3)
        sub = apply_scale(feats[tr_mask | pr_mask], sc)
        is_tr = (sub["day"] < o).to_numpy() & sub["y_norm"].notna().to_numpy()
        tr, pr = sub[is_tr], sub[(sub["day"] >= o).to_numpy()]
        fp = _fingerprint(tr, cols, spec)
        training_rows = len(tr)
        # every column some model reads (the naive baselines read lags, not `cols`)
        needed = ("unique_id", "day", "uid_code", "hour", "is_weekend", "lag_1d", "lag_7d")
        needed += ("profile_28d", "level_1d", "clearsky_ghi", "clearsky_ghi_lag_1d")
        keys = [c for c in needed if c in pr.columns and c not in cols]
        example = pr[[*keys, *cols]].head(5).reset_index(drop=True)
        example["day"] = example["day"].astype(str)
        for name in spec.models:
            model = cache.load(spec.target, name, o, fp) if cache is not None else None
            if model is None:
                try:
                    model = FORECASTERS[name](cols, spec.quantiles, settings, spec.nonnegative)
                    # one BLAS thread: the fits are small (statsmodels' quantile regression
                    # gained no time from a second thread and spent 30 % more CPU, which a
                    # parallel backfill's other worker needs), and the result does not depend
                    # on the machine's core count
                    with threadpool_limits(limits=1, user_api="blas"):
                        model.fit(tr, tr["y_norm"].to_numpy())
                    trained += 1
                    if cache is not None:
                        cache.save(spec.target, name, o, fp, model)
                except Exception as exc:  # noqa: BLE001 - reported; the others go on
                    if name == BASELINE:
                        raise
                    failed[f"{name}@{o}"] = f"{type(exc).__name__}: {exc}"
                    prev = last_ok.get(name) or (
                        cache.latest(spec.target, name, o) if cache is not None else None
                    )
                    if prev is None:
                        continue
                    stale[f"{name}@{o}"] = prev[0].isoformat()
                    model = prev[1]
            last_ok[name] = (o, model)
            pred = model.predict_quantiles(pr).mul(pr["scale"].to_numpy(), axis=0)
            frames.append(
                pd.concat(
                    [
                        pr[["unique_id", "ts", "day", "y", "scale"]].reset_index(drop=True),
                        pred.reset_index(drop=True),
                    ],
                    axis=1,
                ).assign(model=name, origin=o)
            )
    for key, error in failed.items():
        warnings.warn(f"{spec.target}: model {key} failed to train ({error})", stacklevel=2)
    return RollingForecasts(
        raw=pd.concat(frames, ignore_index=True),
        fitted={k: v[1] for k, v in last_ok.items()},
        failed=failed,
        stale=stale,
        weather_basis=basis,
        training_rows=training_rows,
        feature_example=example,
        trained=trained,
    )


def with_total(history: pd.DataFrame) -> pd.DataFrame:
    """``history`` plus the community total (series :data:`TOTAL`) at every interval where
    every series has a value."""
    h = history[history["unique_id"] != TOTAL]
    n = h["unique_id"].nunique()
    g = h.groupby("ts")["y"].agg(["sum", "count"])
    tot = g.loc[g["count"] == n, "sum"].rename("y").reset_index().assign(unique_id=TOTAL)
    return pd.concat([h, tot[["unique_id", "ts", "y"]]], ignore_index=True)


def reconcile(
    values: np.ndarray,
    uid: np.ndarray,
    ts_code: np.ndarray,
    variance: dict[str, float],
    nonnegative: bool,
) -> np.ndarray:
    """Reconcile member forecasts with the total's (MinT with a diagonal covariance, WLS).

    For the two-level hierarchy total = sum of members, with error variances ``s_i`` of the
    members and ``s_T`` of the total, the MinT solution moves each member by
    ``s_i / (sum_j s_j + s_T)`` of the gap ``total - sum(members)`` of each interval; the
    reconciled total is the sum of the reconciled members. The whole distribution of a member
    (point and quantiles) is shifted, so its spread is kept.

    Parameters
    ----------
    values : array, shape (n, k)
        Point and quantile columns of the rows [kWh].
    uid : array of str, shape (n,)
        Series of each row (:data:`TOTAL` for the total's rows).
    ts_code : array of int, shape (n,)
        Interval index of each row.
    variance : dict
        Error variance of each series' point forecast on the window [kWh^2].
    nonnegative : bool
        Clip at zero after the shift.

    Returns
    -------
    array, shape (n, k)
        The rows, members reconciled (total rows unchanged; callers drop them).
    """
    out = values.copy()
    is_tot = uid == TOTAL
    n_ts = int(ts_code.max()) + 1 if len(ts_code) else 0
    bottom_sum = np.bincount(ts_code[~is_tot], weights=values[~is_tot, 0], minlength=n_ts)
    total = np.full(n_ts, np.nan)
    total[ts_code[is_tot]] = values[is_tot, 0]
    var = np.array([variance.get(u, 0.0) for u in uid])
    var_b = np.bincount(ts_code[~is_tot], weights=var[~is_tot], minlength=n_ts)
    var_t = np.zeros(n_ts)
    var_t[ts_code[is_tot]] = var[is_tot]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = var / (var_b + var_t)[ts_code]
    gap = (total - bottom_sum)[ts_code]
    adj = np.where(~is_tot & np.isfinite(gap) & np.isfinite(share), share * gap, 0.0)
    out[~is_tot] += adj[~is_tot, None]
    if nonnegative:
        out = np.clip(out, 0.0, None)
    return out


MODEL_CODE_VERSION = 2
"""Part of every cached model's fingerprint: raised when the forecasters' training changes
(2: ``LinearQuantile.p_tol``), so that models cached by an earlier version are retrained."""


def _fingerprint(tr: pd.DataFrame, cols: list[str], spec: ForecastSpec) -> str:
    h = hashlib.sha256()
    h.update(
        repr(
            (MODEL_CODE_VERSION, cols, spec.quantiles, spec.lightgbm_trees, spec.training_days)
        ).encode()
    )
    h.update(
        pd.util.hash_pandas_object(tr[["unique_id", *cols, "y_norm"]], index=False)
        .to_numpy()
        .tobytes()
    )
    return h.hexdigest()[:16]


@dataclass
class Calibrated:
    """Result of :func:`calibrate`."""

    forecasts: pd.DataFrame
    """calibrated rows of the days: ``unique_id, ts, day, y, model, point, q..., is_champion``"""
    metrics: dict[dt.date, dict[str, dict[str, float]]]
    """per day, the window metrics of each model (raw quantiles) and its conformal offset"""
    champion: dict[dt.date, str]
    weights: dict[dt.date, dict[str, float]]
    window: pd.DataFrame
    """the raw window rows of the last day, ensemble included (for scenario dependence)"""


def calibrate(raw: pd.DataFrame, days: list[dt.date], spec: ForecastSpec) -> Calibrated:
    """Ensemble, conformal offsets and champion of each day, from its window only.

    Parameters
    ----------
    raw : DataFrame
        :attr:`RollingForecasts.raw` covering the days and their windows.
    days : list of date
        The days to calibrate (each must have at least ``MIN_CALIBRATION_DAYS`` window days).
    spec : ForecastSpec

    Returns
    -------
    Calibrated
    """
    qs = [qcol(q) for q in spec.quantiles]
    vcols = ["point", *qs]
    lo, hi = qcol(min(spec.quantiles)), qcol(max(spec.quantiles))
    level = max(spec.quantiles) - min(spec.quantiles)
    base = (
        raw[["unique_id", "ts", "day", "y", "scale"]]
        .drop_duplicates(["unique_id", "ts"])
        .sort_values(["day", "unique_id", "ts"])
        .reset_index(drop=True)
    )
    key = pd.MultiIndex.from_frame(base[["unique_id", "ts"]])
    present = set(raw["model"].unique())
    models = [m for m in spec.models if m in present]
    P = {
        m: raw[raw["model"] == m].set_index(["unique_id", "ts"])[vcols].reindex(key).to_numpy()
        for m in models
    }
    y = base["y"].to_numpy(dtype=float)
    sc = base["scale"].to_numpy(dtype=float)
    bday = base["day"].to_numpy()
    buid = base["unique_id"].to_numpy()
    is_tot = buid == TOTAL
    ts_code = pd.factorize(base["ts"])[0]
    raw_P = P
    out, metrics, champions, weights = [], {}, {}, {}
    window_rows = pd.DataFrame()
    for D in sorted(days):
        win_all = (bday >= D - dt.timedelta(days=spec.calibration_days)) & (bday < D)
        win_all &= np.isfinite(y)
        n_days = len(set(bday[win_all]))
        if n_days < MIN_CALIBRATION_DAYS:
            raise InsufficientHistoryError(
                f"{spec.target}: {D} has {n_days} out-of-sample day(s) before it, "
                f"{MIN_CALIBRATION_DAYS} needed"
            )
        if is_tot.any():
            # the total is forecast by the model that forecasts it best on the window (MAE),
            # and every model's members are reconciled with that total
            tw = win_all & is_tot
            tot_mae = {
                m: float(np.mean(np.abs(y[tw] - arr[tw, 0])))
                for m, arr in raw_P.items()
                if np.isfinite(arr[tw | ((bday == D) & is_tot), 0]).all()
            }
            best_tot = min(tot_mae, key=tot_mae.get) if tot_mae else None
            P = {}
            for m, arr in raw_P.items():
                if m in NAIVE.get(spec.target, ()):
                    P[m] = arr  # the baselines stay plain: skill is measured against them
                    continue
                arr = arr.copy()
                if best_tot is not None:
                    arr[is_tot] = raw_P[best_tot][is_tot]
                err = y[win_all] - arr[win_all, 0]
                var = pd.Series(err**2).groupby(buid[win_all]).mean().to_dict()
                P[m] = reconcile(arr, buid, ts_code, var, spec.nonnegative)
        win = win_all & ~is_tot
        today = (bday == D) & ~is_tot
        age_w = (
            0.5 ** (np.array([(D - d).days for d in bday[win]], dtype=float) / spec.half_life_days)
            if spec.half_life_days
            else None
        )
        loss = {
            m: _pinball(y[win], P[m][win][:, 1:], spec.quantiles)
            for m in models
            if np.isfinite(P[m][win]).all() and np.isfinite(P[m][today]).all()
        }
        cand = dict(P)
        w: dict[str, float] = {}
        if spec.ensemble and len(loss) > 1:
            best = sorted(loss, key=loss.get)[:ENSEMBLE_SIZE]
            inv = {m: 1.0 / max(loss[m], 1e-12) for m in best}
            w = {m: v / sum(inv.values()) for m, v in inv.items()}
            ens = sum(w[m] * P[m] for m in best)
            cand[ENSEMBLE] = ens
            loss[ENSEMBLE] = _pinball(y[win], ens[win][:, 1:], spec.quantiles)
        weights[D] = w
        day_metrics: dict[str, dict[str, float]] = {}
        for m, arr in cand.items():
            if m not in loss:
                continue
            wframe = pd.DataFrame(arr[win], columns=vcols).assign(y=y[win])
            met = score(wframe, spec.quantiles)
            offset = (
                conformal_offsets(wframe, lo, hi, sc[win], level, age_w, spec.nonnegative)
                if spec.conformal and len(spec.quantiles) > 1
                else (0.0, 0.0)
            )
            met["conformal_offset_lower"], met["conformal_offset_upper"] = offset
            met["window_days"] = float(n_days)
            day_metrics[m] = met
            pred = pd.DataFrame(arr[today], columns=vcols)
            if any(offset):
                pred = widen(pred, offset, sc[today], lo, hi, spec.nonnegative)
            out.append(
                pd.concat(
                    [base.loc[today, ["unique_id", "ts", "day", "y"]].reset_index(drop=True), pred],
                    axis=1,
                ).assign(model=m)
            )
            if D == max(days):
                window_rows = pd.concat(
                    [
                        window_rows,
                        pd.concat(
                            [
                                base.loc[win, ["unique_id", "ts", "day", "y"]].reset_index(
                                    drop=True
                                ),
                                pd.DataFrame(arr[win], columns=vcols),
                            ],
                            axis=1,
                        ).assign(model=m),
                    ],
                    ignore_index=True,
                )
        champions[D] = _champion(day_metrics, n_days, spec)
        base_met = day_metrics.get(BASELINE)
        for met in day_metrics.values():
            if base_met and base_met["pinball"] > 0:
                met["pinball_skill"] = 1.0 - met["pinball"] / base_met["pinball"]
                met["mae_skill"] = (
                    1.0 - met["mae"] / base_met["mae"] if base_met["mae"] > 0 else 0.0
                )
        metrics[D] = day_metrics
    fc = pd.concat(out, ignore_index=True)
    fc["is_champion"] = [champions[d] == m for d, m in zip(fc["day"], fc["model"], strict=True)]
    return Calibrated(fc, metrics, champions, weights, window_rows)


def _champion(met: dict[str, dict[str, float]], n_days: int, spec: ForecastSpec) -> str:
    """The naive baseline with the lowest window pinball loss, unless a challenger beats it by
    ``champion_margin`` on both pinball loss and MAE over a window of at least
    ``champion_min_days`` days (the margin keeps day-to-day noise from switching models)."""
    naive = [m for m in NAIVE.get(spec.target, (BASELINE,)) if m in met] or [BASELINE]
    best = (
        min(naive, key=lambda m: (met[m]["pinball"], m != BASELINE))
        if naive[0] in met
        else BASELINE
    )
    if n_days < min(spec.champion_min_days, spec.calibration_days) or best not in met:
        return best
    wins = [
        m
        for m, v in met.items()
        if m not in naive
        and v["pinball"] < (1 - spec.champion_margin) * met[best]["pinball"]
        and v["mae"] < (1 - spec.champion_margin) * met[best]["mae"]
    ]
    return min(wins, key=lambda m: met[m]["pinball"]) if wins else best


def _pinball(y: np.ndarray, qhat: np.ndarray, levels: tuple[float, ...]) -> float:
    d = y[:, None] - qhat
    lv = np.asarray(levels)[None, :]
    return float(np.mean(np.maximum(lv * d, (lv - 1) * d)))


class EnsembleForecaster:
    """The weighted ensemble as one estimator (for the registry): the weighted mean of its
    members' point and quantile columns [normalised units]; the conformal offset is applied
    by the caller, as for every model."""

    name = ENSEMBLE

    def __init__(self, members: dict[str, Any], weights: dict[str, float]) -> None:
        self.members = members
        self.weights = weights

    def get_params(self) -> dict[str, Any]:
        """Parameters, as scikit-learn estimators expose them."""
        return {"weights": self.weights}

    def predict_quantiles(self, X: pd.DataFrame) -> pd.DataFrame:
        """Weighted mean of the members' predictions."""
        parts = [w * self.members[m].predict_quantiles(X) for m, w in self.weights.items()]
        return sum(parts[1:], parts[0])


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
    """models that failed to train (``model@origin``), with their error (the others went on)"""
    stale_models: dict[str, str] = field(default_factory=dict)
    """``model@origin`` -> origin of the earlier model used because training failed"""
    weights: dict[str, float] = field(default_factory=dict)
    origin: dt.date | None = None
    trained: int = 0


def forecast_target(
    history: pd.DataFrame,
    day: dt.date,
    spec: ForecastSpec,
    *,
    weather: pd.DataFrame | None = None,
    scale: pd.Series | None = None,
    cache: ModelCache | None = None,
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
        Target, windows, cadence, quantiles and models.
    weather : DataFrame, optional
        ``weather`` table rows (forecasts with issue times), for load and PV.
    scale : Series, optional
        Fixed per-series scale (e.g. kWp for PV); see :func:`rolling_forecasts`.
    cache : ModelCache, optional
        Fitted models reused across days.

    Returns
    -------
    TargetForecast

    Raises
    ------
    InsufficientHistoryError
        Too little history before ``day``; the message names the first usable day.
    """
    issue = issue_time(day, spec.tz)
    hist = history[history["ts"] < issue]
    days = [day - dt.timedelta(days=k) for k in range(spec.calibration_days, -1, -1)]
    rf = rolling_forecasts(hist, days, spec, weather=weather, scale=scale, cache=cache)
    first_known = pd.Timestamp(hist["ts"].min()).tz_convert(spec.tz).date()
    if day not in set(rf.raw["day"]):
        raise InsufficientHistoryError(
            f"{spec.target}: forecasting {day} needs more history; the first known day is "
            f"{first_known} and the first usable day is {first_usable_day(first_known, spec)}."
        )
    try:
        cal = calibrate(rf.raw, [day], spec)
    except InsufficientHistoryError as err:
        raise InsufficientHistoryError(
            f"{err}; the first usable day is {first_usable_day(first_known, spec)}"
        ) from err
    fc = cal.forecasts.drop(columns=["day", "y"])
    fc["target"] = spec.target
    return TargetForecast(
        target=spec.target,
        day=day,
        issue_time=issue,
        forecasts=fc,
        metrics=cal.metrics[day],
        champion=cal.champion[day],
        backtest=cal.window,
        fitted={
            **rf.fitted,
            **(
                {ENSEMBLE: EnsembleForecaster(rf.fitted, cal.weights[day])}
                if cal.weights[day] and all(m in rf.fitted for m in cal.weights[day])
                else {}
            ),
        },
        training_rows=rf.training_rows,
        feature_example=rf.feature_example,
        weather_basis=rf.weather_basis,
        failed_models=rf.failed,
        stale_models=rf.stale,
        weights=cal.weights[day],
        origin=training_origin(day, spec.retrain_every_days),
        trained=rf.trained,
    )


def conformal_offset(
    backtest: pd.DataFrame,
    lo: str,
    hi: str,
    scale: np.ndarray,
    level: float,
    weights: np.ndarray | None = None,
) -> float:
    """Split-conformal (CQR) offset of the outer quantiles from backtest rows.

    The nonconformity of a row is ``max(lo - y, y - hi) / scale`` (rows with a zero forecast
    and a zero actual, PV at night, are left out); the offset is its
    ``ceil((n + 1) level) / n`` empirical quantile [normalised units], so that widening (or,
    when negative, narrowing) both bounds by it covers ``level`` of the backtest. With
    ``weights`` (e.g. decaying with the age of the row: weighted conformal prediction), the
    quantile is the weighted one, with ``n`` the effective sample size, so that a change of
    regime (the sunny season after a cloudy one) reaches the intervals within days. Only
    rows before the issue time are used: the calibration cannot look ahead.
    """
    y = backtest["y"].to_numpy(dtype=float)
    lo_v, hi_v = backtest[lo].to_numpy(float), backtest[hi].to_numpy(float)
    e = np.maximum(lo_v - y, y - hi_v) / np.where(scale > 0, scale, 1.0)
    # rows that are trivially right (PV at night: zero forecast, zero output) say nothing
    keep = np.isfinite(e) & informative(backtest, lo, hi)
    w = None if weights is None else np.asarray(weights, dtype=float)[keep]
    return _conformal_quantile(e[keep], level, w)


def widen(
    pred: pd.DataFrame,
    offset: float | tuple[float, float],
    scale: np.ndarray,
    lo: str,
    hi: str,
    nonnegative: bool,
) -> pd.DataFrame:
    """Move the outer quantiles out by ``offset × scale`` (one offset for both bounds, or
    ``(lower, upper)``), keeping lo <= q50 <= hi."""
    off_lo, off_hi = offset if isinstance(offset, tuple) else (offset, offset)
    out = pred.copy()
    mid = out[qcol(0.5)].to_numpy(float) if qcol(0.5) in out else out["point"].to_numpy(float)
    lo_v, hi_v = out[lo].to_numpy(float), out[hi].to_numpy(float)
    new_lo = np.minimum(lo_v - off_lo * scale, mid)
    new_hi = np.maximum(hi_v + off_hi * scale, mid)
    if nonnegative:
        new_lo = np.clip(new_lo, 0.0, None)
        # a certain zero (PV at night: every quantile 0) stays zero
        zero = structural_zero(lo_v, hi_v)
        new_lo, new_hi = np.where(zero, lo_v, new_lo), np.where(zero, hi_v, new_hi)
    out[lo], out[hi] = new_lo, new_hi
    return out


def structural_zero(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows a non-negative forecast is certain are zero (both outer quantiles 0)."""
    return (np.abs(lo) < 1e-9) & (np.abs(hi) < 1e-9)


def conformal_offsets(
    backtest: pd.DataFrame,
    lo: str,
    hi: str,
    scale: np.ndarray,
    level: float,
    weights: np.ndarray | None = None,
    nonnegative: bool = False,
) -> tuple[float, float]:
    """Asymmetric split-conformal offsets ``(lower, upper)`` [normalised units].

    Each bound is calibrated on its own tail (Romano et al.'s asymmetric CQR): the lower
    offset is the ``1 - (1 - level) / 2`` quantile of the lower conformity score, the upper
    one of the upper score. A bound that is too wide on one side only (PV's upper band on a
    sunny spell, whose lower band sits at zero) is narrowed without uncovering the other
    side. The two misses are disjoint, so each tail missing ``(1 - level) / 2`` of the rows
    gives ``level`` coverage.

    The scores describe the band :func:`widen` issues, not the raw one: a bound is never
    moved past the median, and with ``nonnegative`` the lower bound never below zero. So an
    actual on the median's side of a bound is covered by that bound whatever the offset
    (score ``-inf``), and a certain zero (both bounds 0, see :func:`structural_zero`) is
    never moved. PV's dawn and dusk hours that produce exactly zero under a zero lower
    band are counted as the covered rows they will be, and the offsets tighten the other rows
    until the issued band covers ``level`` of all informative rows (without this, PV's band
    covered 85 % on the demo quarter). Rows that are trivially right (zero bands, zero actual:
    PV at night) are left out, as :func:`~models.forecasters.score` leaves them out.

    Parameters
    ----------
    backtest : DataFrame
        Out-of-sample predictions with ``y``, ``lo``, ``hi`` and ``q0.5`` (or ``point``).
    lo, hi : str
        Columns of the outer quantiles.
    scale : ndarray
        Per-row scale the offsets are in units of [target units].
    level : float
        Target coverage of ``[lo, hi]`` [fraction].
    weights : ndarray, optional
        Row weights (recency).
    nonnegative : bool
        Whether issued lower bounds are clipped at zero.
    """
    tail = 1.0 - (1.0 - level) / 2.0
    y = backtest["y"].to_numpy(dtype=float)
    lo_v, hi_v = backtest[lo].to_numpy(float), backtest[hi].to_numpy(float)
    mid_col = qcol(0.5) if qcol(0.5) in backtest else "point"
    mid = backtest[mid_col].to_numpy(float) if mid_col in backtest else (lo_v + hi_v) / 2
    s = np.where(scale > 0, scale, 1.0)
    keep = np.isfinite(y) & np.isfinite(lo_v) & np.isfinite(hi_v) & np.isfinite(mid)
    keep &= informative(backtest, lo, hi)
    y, lo_v, hi_v, mid, s = y[keep], lo_v[keep], hi_v[keep], mid[keep], s[keep]
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)[keep]
    if len(y) < 10 or w.sum() <= 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore"):
        e_lo = np.where(y >= mid, -np.inf, (lo_v - y) / s)
        e_hi = np.where(y <= mid, -np.inf, (y - hi_v) / s)
    gone = np.full(len(y), -np.inf)  # a row leaves score()'s rows when offset <= gone
    if nonnegative:
        e_lo = np.where(y < 0, np.inf, e_lo)  # a zero-clipped band never covers it
        # widen() leaves a certain zero as it is: right if the actual is 0, else missed
        zero = structural_zero(lo_v, hi_v)
        e_lo = np.where(zero, -np.inf, e_lo)
        e_hi = np.where(zero, np.where(y > 1e-9, np.inf, -np.inf), e_hi)
        # a zero actual under a zero median and lower bound: once the upper bound is moved
        # down to zero the row is all zero, which score() leaves out
        collapsible = ~zero & (np.abs(y) < 1e-9) & (np.abs(mid) < 1e-9) & (lo_v < 1e-9)
        gone = np.where(collapsible, (1e-9 - hi_v) / s, -np.inf)
    n_eff = w.sum() ** 2 / (w**2).sum()
    allowed = max(0.0, 1.0 - tail * (n_eff + 1) / n_eff)  # missed share per tail
    off_hi = _tail_offset(e_hi, w, allowed, gone)
    off_lo = _tail_offset(e_lo, w, allowed * w[gone < off_hi].sum() / w.sum())
    return off_lo, off_hi


def _tail_offset(
    e: np.ndarray, w: np.ndarray, allowed: float, gone: np.ndarray | None = None
) -> float:
    """Smallest offset ``o`` (a finite score) with ``w[e > o] <= allowed x w[gone < o]``
    (the weight of misses within the weight of the rows still scored), as a share of all.

    Misses fall and scored rows grow with ``o``, so the first candidate that passes is the
    answer (bisection). If missing every finite row passes, no move (0) or, when the rows say
    to narrow, just below the smallest score; none passes: the largest finite score; none is
    finite: 0.
    """
    cand = np.unique(e[np.isfinite(e)])
    if cand.size == 0:
        return 0.0
    total = w.sum()
    order = np.argsort(e, kind="stable")
    e_sorted, cum = e[order], np.cumsum(w[order])
    if gone is not None:
        g_order = np.argsort(gone, kind="stable")
        g_sorted, g_cum = gone[g_order], np.cumsum(w[g_order])

    def passes(o: float) -> bool:
        covered = np.searchsorted(e_sorted, o, side="right")
        missed = total - (cum[covered - 1] if covered else 0.0)
        scored = total
        if gone is not None:
            k = np.searchsorted(g_sorted, o, side="left")  # rows with gone >= o leave
            scored = g_cum[k - 1] if k else 0.0
        return missed <= allowed * total * (scored / total) + 1e-12

    # every finite row may miss within the budget: no evidence to widen (a deterministic
    # tariff's band stays on its median)
    below = min(0.0, float(cand[0]) - 1e-9)
    if passes(below):
        return below
    lo_i, hi_i = 0, cand.size - 1
    if not passes(float(cand[hi_i])):
        return float(cand[hi_i])
    while lo_i < hi_i:
        mid_i = (lo_i + hi_i) // 2
        if passes(float(cand[mid_i])):
            hi_i = mid_i
        else:
            lo_i = mid_i + 1
    return float(cand[lo_i])


def _conformal_quantile(e: np.ndarray, level: float, w: np.ndarray | None) -> float:
    if len(e) < 10:
        return 0.0
    if w is None:
        k = min(1.0, np.ceil((len(e) + 1) * level) / len(e))
        return float(np.quantile(e, k, method="higher"))
    n_eff = w.sum() ** 2 / (w**2).sum()
    k = min(1.0, level * (n_eff + 1) / n_eff)
    order = np.argsort(e)
    cum = np.cumsum(w[order]) / w.sum()
    return float(e[order][min(np.searchsorted(cum, k - 1e-12), len(e) - 1)])


TARGETS = ("load", "pv", "price")


def spec_for(target: str, config: Any) -> ForecastSpec:
    """The :class:`ForecastSpec` of a target from the community configuration."""
    c, f = config.community, config.forecast
    first = config.community.first_day.year if config.community.first_day else 2000
    last = config.community.last_day.year if config.community.last_day else dt.date.today().year
    years = range(first - 1, last + 2)
    hol = holiday_calendar(
        f.holiday_country, f.holiday_subdivision, list(years), config.tariffs.holidays
    )
    return ForecastSpec(
        target=target,
        tz=c.timezone,
        training_days=f.training_days,
        retrain_every_days=f.retrain_every_days,
        calibration_days=f.calibration_days,
        champion_min_days=f.champion_min_days,
        champion_margin=f.champion_margin,
        quantiles=f.quantiles,
        lightgbm_trees=f.lightgbm_trees,
        latitude=c.latitude,
        longitude=c.longitude,
        interval_minutes=c.interval_minutes,
        nonnegative=True,
        models=TARGET_MODELS[target],
        holidays=tuple(hol),
        hierarchy=target == "load",
    )


def target_scale(target: str, config: Any) -> pd.Series | None:
    """Fixed per-series scale of a target: kWp for PV, 1 for the price, None (recent mean)
    for load."""
    if target == "pv":
        kwp = {m.id: m.pv_kwp for m in config.members if m.pv_kwp > 0}
        if config.shared_assets.pv is not None:
            kwp[config.shared_assets.pv.id] = config.shared_assets.pv.kwp
        return pd.Series(kwp, dtype=float)
    if target == "price":
        return pd.Series({"import": 1.0})
    return None


def forecast_community(
    actuals: pd.DataFrame,
    weather: pd.DataFrame | None,
    day: dt.date,
    config: Any,
    cache: ModelCache | None = None,
    targets: tuple[str, ...] = TARGETS,
) -> dict[str, TargetForecast]:
    """Forecast the targets of a community for ``day`` (default: every one).

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
    cache : ModelCache, optional
        Fitted models reused across days.
    targets : tuple of str, optional
        A subset of :data:`TARGETS`.
    """
    out = {}
    for target in targets:
        hist = actuals.loc[actuals["target"] == target, ["unique_id", "ts", "y"]]
        out[target] = forecast_target(
            hist,
            day,
            spec_for(target, config),
            weather=weather,
            scale=target_scale(target, config),
            cache=cache,
        )
    return out
