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
        learning_rate: float = 0.05,
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

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> LightGBMQuantile:
        """Fit the point model and one model per quantile on rows with a finite target."""
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(y)
        Xf = X.loc[ok, self.features]
        self.models_ = {"point": self._model(objective="regression").fit(Xf, y[ok])}
        for q in self.quantiles:
            self.models_[qcol(q)] = self._model(objective="quantile", alpha=q).fit(Xf, y[ok])
        return self

    def predict_quantiles(self, X: pd.DataFrame) -> pd.DataFrame:
        """Point and quantile forecasts [normalised units]; quantiles sorted (no crossing)."""
        Xf = X[self.features]
        out = pd.DataFrame({k: m.predict(Xf) for k, m in self.models_.items()}, index=X.index)
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
    "clearsky_persistence": lambda features, quantiles, settings, nonneg: ClearSkyPersistence(
        quantiles, nonnegative=nonneg
    ),
    "lightgbm": lambda features, quantiles, settings, nonneg: LightGBMQuantile(
        features, quantiles, n_estimators=settings.get("lightgbm_trees", 150), nonnegative=nonneg
    ),
}
"""Registered forecasters: name -> factory(features, quantiles, settings, nonnegative)."""

TARGET_MODELS: dict[str, tuple[str, ...]] = {
    "load": ("seasonal_naive", "lightgbm"),
    "pv": ("seasonal_naive", "clearsky_persistence", "lightgbm"),
    "price": ("seasonal_naive", "lightgbm"),
}
"""The models trained and backtested for each target (the baseline first)."""

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


def score(pred: pd.DataFrame, quantiles: Sequence[float]) -> dict[str, float]:
    """Backtest metrics of predictions with columns ``y, point`` and the quantile columns.

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``pinball`` (mean over levels), ``coverage_80`` (q10-q90 when
        present) and ``n``.
    """
    y = pred["y"].to_numpy(dtype=float)
    out = {
        "mae": mae(y, pred["point"]),
        "rmse": rmse(y, pred["point"]),
        "pinball": float(np.mean([pinball(y, pred[qcol(q)], q) for q in quantiles])),
        "n": float(len(pred)),
    }
    lo, hi = qcol(min(quantiles)), qcol(max(quantiles))
    out[f"coverage_{round((max(quantiles) - min(quantiles)) * 100)}"] = coverage(
        y, pred[lo].to_numpy(), pred[hi].to_numpy()
    )
    return out
