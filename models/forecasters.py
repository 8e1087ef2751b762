"""Quantile forecasters with the scikit-learn estimator API, and their metrics.

Every forecaster learns on normalised targets (``y_norm = y / scale``) and predicts the point
forecast and the quantiles as columns ``point, q10, q50, q90`` in normalised units; callers
multiply by the scale. Fitted attributes end in ``_``.

Adding a forecaster: write a class with ``fit(X, y) -> self`` and
``predict_quantiles(X) -> DataFrame`` here, and register it in :data:`FORECASTERS`. It is
then trained, backtested against the seasonal-naive baseline, logged to MLflow and eligible as
champion without touching any other file.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd


def qcol(q: float) -> str:
    """Column name of a quantile: 0.1 -> ``q10``."""
    return f"q{round(q * 100):02d}"


class QuantileForecaster(Protocol):
    """What a forecaster offers."""

    name: str
    quantiles: tuple[float, ...]

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> QuantileForecaster: ...

    def predict_quantiles(self, X: pd.DataFrame) -> pd.DataFrame: ...

    def get_params(self) -> dict[str, Any]: ...


class SeasonalNaive:
    """Seasonal-naive baseline: yesterday's value, with empirical residual quantiles per hour.

    The point forecast is the ``lag_1d`` feature (the same local hour the day before, or two
    days before where the day before was not yet known at issue time). Quantiles add the
    empirical quantiles of the training residuals of the same local hour.

    Parameters
    ----------
    quantiles : tuple of float
        Quantile levels, including 0.5.
    nonnegative : bool
        Clip predictions at zero (energies).
    """

    name = "seasonal_naive"

    def __init__(self, quantiles: Sequence[float] = (0.1, 0.5, 0.9), nonnegative: bool = True):
        self.quantiles = tuple(quantiles)
        self.nonnegative = nonnegative

    def get_params(self) -> dict[str, Any]:
        """Parameters, as scikit-learn estimators expose them."""
        return {"quantiles": self.quantiles, "nonnegative": self.nonnegative}

    def _base(self, X: pd.DataFrame) -> np.ndarray:
        """The point forecast before residuals [normalised units]: yesterday's value."""
        return X["lag_1d"].to_numpy(dtype=float)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> SeasonalNaive:
        """Learn residual quantiles per local hour [normalised units]."""
        y = np.asarray(y, dtype=float)
        lag = self._base(X)
        ok = np.isfinite(lag) & np.isfinite(y)
        if not ok.any():
            raise ValueError("seasonal_naive: no training rows with a known lag")
        res = pd.DataFrame({"hour": X["hour"].to_numpy()[ok], "r": y[ok] - lag[ok]})
        self.residual_quantiles_ = res.groupby("hour")["r"].quantile(list(self.quantiles)).unstack()
        self.residual_quantiles_.columns = [qcol(q) for q in self.quantiles]
        self.fallback_ = np.nanmean(y[ok])
        return self

    def predict_quantiles(self, X: pd.DataFrame) -> pd.DataFrame:
        """Point and quantile forecasts [normalised units]."""
        base = self._base(X)
        base = np.where(np.isfinite(base), base, self.fallback_)
        rq = self.residual_quantiles_.reindex(X["hour"].to_numpy()).fillna(0.0).to_numpy()
        out = pd.DataFrame(
            base[:, None] + rq, columns=[qcol(q) for q in self.quantiles], index=X.index
        )
        out.insert(0, "point", base)
        return _tidy(out, self.nonnegative)


class ClearSkyPersistence(SeasonalNaive):
    """Clear-sky-index persistence for PV: yesterday's output scaled by the clear-sky change.

    ``point = lag_1d × GHI_clear(t) / GHI_clear(t − 24 h)`` (pvlib Haurwitz clear-sky
    irradiance; the ratio is capped at 3 and taken as 1 where yesterday's sun was below
    10 W/m^2), so yesterday's clear-sky index carries to the same hour today while the sun's
    seasonal path is followed. Quantiles add the training residuals' quantiles per hour. It is
    the PV baseline the field uses where weather forecasts carry no information about a day.
    """

    name = "clearsky_persistence"

    def _base(self, X: pd.DataFrame) -> np.ndarray:
        lag = X["lag_1d"].to_numpy(dtype=float)
        now = X["clearsky_ghi"].to_numpy(dtype=float)
        before = X["clearsky_ghi_lag_1d"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(before > 10.0, np.clip(now / before, 0.0, 3.0), 1.0)
        return lag * ratio


class WeeklyNaive(SeasonalNaive):
    """Weekly naive baseline: the same local hour seven days before (``lag_7d``), with the
    training residuals' quantiles per hour."""

    name = "naive_168"

    def _base(self, X: pd.DataFrame) -> np.ndarray:
        return X["lag_7d"].to_numpy(dtype=float)


class ProfileLevel(SeasonalNaive):
    """The member's 28-day same-hour profile rescaled to yesterday's daily level.

    ``point = profile_28d × level_1d / mean_day(profile_28d)``: the smooth shape of four
    weeks carries the hours, yesterday's mean carries the level (both known at issue time).
    Quantiles add the training residuals' quantiles per hour. On the demo's 17-home sum it is
    the strongest single predictor known at issue (see ``scripts/forecast_noise_floor.py``).
    """

    name = "profile_level"

    def _base(self, X: pd.DataFrame) -> np.ndarray:
        prof = X["profile_28d"].to_numpy(dtype=float)
        level = X["level_1d"].to_numpy(dtype=float)
        day_mean = (
            pd.Series(prof, index=X.index)
            .groupby([X["unique_id"].to_numpy(), X["day"].to_numpy()])
            .transform("mean")
            .to_numpy(dtype=float)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(day_mean > 1e-9, prof * level / day_mean, prof)
        return np.where(np.isfinite(out), out, X["lag_1d"].to_numpy(dtype=float))


class LinearQuantile:
    """Linear quantile regression (statsmodels ``QuantReg``), one fit per level.

    The design is one dummy per local hour plus the numeric features available among
    ``features`` (lags, profiles, levels, calendar flags); missing values are filled with the
    training medians. It is the transparent, linear challenger of the trees: on the demo data
    it is competitive on the community aggregate, where the noise of single homes averages out.

    Parameters
    ----------
    features : sequence of str
        Candidate feature columns (``hour`` is expanded to dummies; ``uid_code`` is ignored).
    quantiles : tuple of float
        Quantile levels; the point forecast is the median.
    max_rows : int
        Training rows used at most (the most recent ones) [-], bounding the fit time.
    nonnegative : bool
        Clip predictions at zero.
    p_tol : float
        Convergence tolerance of ``QuantReg``'s iteratively reweighted least squares on the
        change of the coefficients [normalised units]. 1e-3 instead of statsmodels' 1e-6
        cuts the iterations 4x (a weekly origin of the demo: 2.5 s instead of 9 s of IRLS,
        measured: 1e-5 took 4.0 s); the pinball loss of the fit changed by 2e-5 relative.
    """

    name = "linear_quantile"

    def __init__(
        self,
        features: Sequence[str],
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        max_rows: int = 12000,
        nonnegative: bool = True,
        p_tol: float = 1e-3,
    ):
        self.features = [f for f in features if f not in ("hour", "uid_code", "dow", "month")]
        self.quantiles = tuple(quantiles)
        self.max_rows = max_rows
        self.nonnegative = nonnegative
        self.p_tol = p_tol

    def get_params(self) -> dict[str, Any]:
        """Parameters, as scikit-learn estimators expose them."""
        return {
            "features": self.features,
            "quantiles": self.quantiles,
            "max_rows": self.max_rows,
            "nonnegative": self.nonnegative,
            "p_tol": self.p_tol,
        }

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        num = X[self.features].astype(float).fillna(self.fill_).to_numpy()
        hours = np.asarray(X["hour"], dtype=int)
        dummies = (hours[:, None] == np.arange(24)[None, :]).astype(float)
        return np.column_stack([dummies, num])

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LinearQuantile:
        """Fit one ``QuantReg`` per level on the most recent rows with a finite target."""
        import statsmodels.api as sm

        y = np.asarray(y, dtype=float)
        ok = np.flatnonzero(np.isfinite(y))[-self.max_rows :]
        Xt = X.iloc[ok]
        self.fill_ = Xt[self.features].astype(float).median().fillna(0.0)
        design = self._design(Xt)
        self.params_ = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for q in self.quantiles:
                res = sm.QuantReg(y[ok], design).fit(q=q, max_iter=2000, p_tol=self.p_tol)
                self.params_[qcol(q)] = np.asarray(res.params, dtype=float)
        return self

    def predict_quantiles(self, X: pd.DataFrame) -> pd.DataFrame:
        """Median as point and the quantiles [normalised units], sorted."""
        design = self._design(X)
        out = pd.DataFrame({k: design @ b for k, b in self.params_.items()}, index=X.index)
        out.insert(0, "point", out[qcol(0.5)] if qcol(0.5) in out else out.iloc[:, 0])
        return _tidy(out, self.nonnegative)


class LightGBMQuantile:
    """Gradient-boosted trees (LightGBM), one quantile objective per level plus an L2 point.

    Parameters
    ----------
    features : sequence of str
        Feature columns.
    quantiles : tuple of float
        Quantile levels.
    n_estimators, learning_rate, num_leaves, min_child_samples : model size
    nonnegative : bool
        Clip predictions at zero.
    seed : int
        Random seed (deterministic training).
    """

    name = "lightgbm"

    def __init__(
        self,
        features: Sequence[str],
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        n_estimators: int = 150,
        learning_rate: float = 0.1,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        nonnegative: bool = True,
        seed: int = 0,
    ):
        self.features = list(features)
        self.quantiles = tuple(quantiles)
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.nonnegative = nonnegative
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        """Parameters, as scikit-learn estimators expose them."""
        return {
            k: getattr(self, k)
            for k in (
                "features",
                "quantiles",
                "n_estimators",
                "learning_rate",
                "num_leaves",
                "min_child_samples",
                "nonnegative",
                "seed",
            )
        }

    def _model(self, **kw: Any) -> lgb.LGBMRegressor:
        return lgb.LGBMRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.seed,
            n_jobs=1,
            verbose=-1,
            deterministic=True,
            **kw,
        )

    def _encoded(self, X: pd.DataFrame) -> pd.DataFrame:
        Xf = X[self.features].copy()
        if self.encoding_ is not None:
            key = pd.MultiIndex.from_arrays([X["uid_code"], X["hour"], X["is_weekend"]])
            Xf["te_uid_hour_daytype"] = self.encoding_.reindex(key).to_numpy(dtype=float)
        return Xf

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LightGBMQuantile:
        """Fit one model per quantile on rows with a finite target; the median is the point.

        Where the rows carry ``uid_code``, ``hour`` and ``is_weekend``, a target encoding (the
        training mean of the normalised target per series, hour and day type) is added as a
        feature, learnt from the training rows only.
        """
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(y)
        self.encoding_ = None
        if {"uid_code", "hour", "is_weekend"} <= set(X.columns):
            self.encoding_ = (
                pd.DataFrame(
                    {
                        "u": X["uid_code"].to_numpy()[ok],
                        "h": X["hour"].to_numpy()[ok],
                        "w": X["is_weekend"].to_numpy()[ok],
                        "y": y[ok],
                    }
                )
                .groupby(["u", "h", "w"])["y"]
                .mean()
            )
        Xf = self._encoded(X.loc[ok])
        self.models_ = {
            qcol(q): self._model(objective="quantile", alpha=q).fit(Xf, y[ok])
            for q in self.quantiles
        }
        return self

    def predict_quantiles(self, X: pd.DataFrame) -> pd.DataFrame:
        """Median as point and the quantiles [normalised units]; sorted (no crossing)."""
        Xf = self._encoded(X)
        out = pd.DataFrame({k: m.predict(Xf) for k, m in self.models_.items()}, index=X.index)
        mid = qcol(0.5) if qcol(0.5) in out else out.columns[len(out.columns) // 2]
        out.insert(0, "point", out[mid])
        return _tidy(out, self.nonnegative)


def _tidy(out: pd.DataFrame, nonnegative: bool) -> pd.DataFrame:
    qs = [c for c in out.columns if c.startswith("q")]
    out[qs] = np.sort(out[qs].to_numpy(), axis=1)
    if nonnegative:
        out = out.clip(lower=0.0)
    return out


FORECASTERS: dict[str, Any] = {
    "seasonal_naive": lambda features, quantiles, settings, nonneg: SeasonalNaive(
        quantiles, nonnegative=nonneg
    ),
    "naive_168": lambda features, quantiles, settings, nonneg: WeeklyNaive(
        quantiles, nonnegative=nonneg
    ),
    "clearsky_persistence": lambda features, quantiles, settings, nonneg: ClearSkyPersistence(
        quantiles, nonnegative=nonneg
    ),
    "profile_level": lambda features, quantiles, settings, nonneg: ProfileLevel(
        quantiles, nonnegative=nonneg
    ),
    "linear_quantile": lambda features, quantiles, settings, nonneg: LinearQuantile(
        features, quantiles, nonnegative=nonneg
    ),
    "lightgbm": lambda features, quantiles, settings, nonneg: LightGBMQuantile(
        features, quantiles, n_estimators=settings.get("lightgbm_trees", 150), nonnegative=nonneg
    ),
}
"""Registered forecasters: name -> factory(features, quantiles, settings, nonnegative)."""

NAIVE: dict[str, tuple[str, ...]] = {
    "load": ("seasonal_naive", "naive_168"),
    "pv": ("seasonal_naive", "naive_168", "clearsky_persistence"),
    "price": ("seasonal_naive", "naive_168"),
}
"""The naive baselines of each target: skill is measured against the best of them."""

TARGET_MODELS: dict[str, tuple[str, ...]] = {
    "load": ("seasonal_naive", "naive_168", "profile_level", "linear_quantile", "lightgbm"),
    "pv": ("seasonal_naive", "naive_168", "clearsky_persistence", "lightgbm"),
    "price": ("seasonal_naive", "naive_168", "lightgbm"),
}
"""The models trained and backtested for each target (the baseline first); the weighted
``ensemble`` of them is added by :func:`models.forecasting.rolling_forecasts`."""

BASELINE = "seasonal_naive"


# --- metrics -------------------------------------------------------------------------------


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean absolute error [unit of y]."""
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(yhat))))


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    """Root mean squared error [unit of y]."""
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(yhat)) ** 2)))


def pinball(y: np.ndarray, qhat: np.ndarray, q: float) -> float:
    """Mean pinball (quantile) loss of level ``q`` [unit of y]."""
    d = np.asarray(y) - np.asarray(qhat)
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of actuals inside [lo, hi] [-]."""
    y = np.asarray(y)
    return float(np.mean((y >= lo) & (y <= hi)))


def crps_quantiles(y: np.ndarray, qhat: np.ndarray, levels: Sequence[float]) -> float:
    """CRPS approximated from quantile forecasts [unit of y]: twice the mean pinball loss over
    the levels (exact in the limit of many evenly spread levels; with q10, q50, q90 it is a
    coarse but consistent proxy, comparable between models scored on the same levels).

    Parameters
    ----------
    y : array, shape (n,)
    qhat : array, shape (n, len(levels))
    levels : sequence of float
    """
    y = np.asarray(y, dtype=float)[:, None]
    d = y - np.asarray(qhat, dtype=float)
    lv = np.asarray(levels, dtype=float)[None, :]
    return float(2.0 * np.mean(np.maximum(lv * d, (lv - 1) * d)))


def informative(pred: pd.DataFrame, lo: str, hi: str) -> np.ndarray:
    """Rows that say something about an interval: not PV at night (zero bounds, zero actual)."""
    y = pred["y"].to_numpy(dtype=float)
    return ~(
        (np.abs(pred[lo].to_numpy(float)) < 1e-9)
        & (np.abs(pred[hi].to_numpy(float)) < 1e-9)
        & (np.abs(y) < 1e-9)
    )


def score(pred: pd.DataFrame, quantiles: Sequence[float]) -> dict[str, float]:
    """Metrics of predictions with columns ``y, point`` and the quantile columns.

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``pinball`` (mean over levels), ``crps`` (see
        :func:`crps_quantiles`), ``coverage_80`` (share of actuals in [q10, q90] over the
        informative rows, so PV nights do not flatter it) and ``n``.
    """
    y = pred["y"].to_numpy(dtype=float)
    qs = [qcol(q) for q in quantiles]
    out = {
        "mae": mae(y, pred["point"]),
        "rmse": rmse(y, pred["point"]),
        "pinball": float(np.mean([pinball(y, pred[qcol(q)], q) for q in quantiles])),
        "crps": crps_quantiles(y, pred[qs].to_numpy(dtype=float), quantiles),
        "n": float(len(pred)),
    }
    lo, hi = qcol(min(quantiles)), qcol(max(quantiles))
    keep = informative(pred, lo, hi)
    out[f"coverage_{round((max(quantiles) - min(quantiles)) * 100)}"] = (
        coverage(y[keep], pred[lo].to_numpy()[keep], pred[hi].to_numpy()[keep])
        if keep.any()
        else float("nan")
    )
    return out
