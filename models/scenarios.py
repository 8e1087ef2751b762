"""Joint scenarios of load, PV and price drawn from quantile forecasts (Gaussian copula).

Each series' forecast distribution in an interval is the piecewise-linear quantile function
through its quantiles (q10, q50, q90), extended linearly in the tails. Dependence comes from a
Gaussian copula:

- across hours, an AR(1) correlation ``rho^|i-j|`` per target, with ``rho`` the lag-1
  autocorrelation of the backtest's probability-integral-transform (PIT) normal scores;
- across series of a target, a common factor with loading ``sqrt(c)``, ``c`` the mean pairwise
  correlation of those scores (all rooftops see the same clouds; homes share the weather).

``n_samples`` joint draws are reduced to ``n_scenarios`` by k-means on the community totals;
each scenario is the draw nearest its centroid, with probability = cluster share.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.cluster import KMeans

LEVELS = (0.1, 0.5, 0.9)
_COLS = ("q10", "q50", "q90")


@dataclass(frozen=True)
class Dependence:
    """Copula parameters of one target: AR(1) across hours and a common-factor share."""

    rho_hours: float = 0.7
    common: float = 0.5


def _quantile_fn(q: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Piecewise-linear quantile function through (0.1, 0.5, 0.9) with linear tails.

    q: (..., 3) quantile values; u: (...,) probabilities in (0, 1).
    """
    lo, mid, hi = q[..., 0], q[..., 1], q[..., 2]
    s_lo = (mid - lo) / 0.4
    s_hi = (hi - mid) / 0.4
    return np.where(u < 0.5, mid - (0.5 - u) * s_lo, mid + (u - 0.5) * s_hi)


def pit_scores(y: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Normal scores of actuals under their forecast quantiles (0 where the band is empty).

    Parameters
    ----------
    y : ndarray (n,)
        Actuals.
    q : ndarray (n, 3)
        q10, q50, q90.
    """
    lo, mid, hi = q[:, 0], q[:, 1], q[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(
            y < mid, 0.5 - 0.4 * (mid - y) / (mid - lo), 0.5 + 0.4 * (y - mid) / (hi - mid)
        )
    u = np.where(np.isfinite(u), u, 0.5)
    return norm.ppf(np.clip(u, 0.005, 0.995))


def estimate_dependence(backtest: pd.DataFrame) -> Dependence:
    """Estimate the copula from backtest predictions.

    Parameters
    ----------
    backtest : DataFrame
        ``unique_id, ts, day, y, q10, q50, q90`` of one model (the champion).
    """
    if backtest.empty:
        return Dependence()
    b = backtest.sort_values(["unique_id", "ts"]).copy()
    b["z"] = pit_scores(b["y"].to_numpy(float), b[list(_COLS)].to_numpy(float))
    width = (b["q90"] - b["q10"]).to_numpy()
    b.loc[width <= 1e-9, "z"] = np.nan
    z1 = b.groupby(["unique_id", "day"])["z"].shift(1)
    ok = b["z"].notna() & z1.notna()
    za, zb = b.loc[ok, "z"].to_numpy(float), z1[ok].to_numpy(float)
    varied = ok.sum() > 10 and za.std() > 0 and zb.std() > 0  # a known price has no spread
    rho = float(np.corrcoef(za, zb)[0, 1]) if varied else 0.7
    wide = b.pivot_table(index="ts", columns="unique_id", values="z")
    if wide.shape[1] > 1 and wide.dropna(how="any").shape[0] > 10:
        c = wide.corr().to_numpy()
        common = float(np.nanmean(c[~np.eye(len(c), dtype=bool)]))
    else:
        common = 1.0
    return Dependence(
        rho_hours=float(np.clip(np.nan_to_num(rho, nan=0.7), 0.0, 0.99)),
        common=float(np.clip(np.nan_to_num(common, nan=0.5), 0.0, 1.0)),
    )


def _latent(
    rng: np.random.Generator, n: int, n_series: int, n_t: int, dep: Dependence
) -> np.ndarray:
    """Correlated standard normals (n, n_series, n_t)."""
    idx = np.arange(n_t)
    cov = dep.rho_hours ** np.abs(idx[:, None] - idx[None, :])
    chol = np.linalg.cholesky(cov + 1e-12 * np.eye(n_t))
    common = rng.standard_normal((n, 1, n_t)) @ chol.T
    own = rng.standard_normal((n, n_series, n_t)) @ chol.T
    return np.sqrt(dep.common) * common + np.sqrt(1 - dep.common) * own


def generate_scenarios(
    forecasts: pd.DataFrame,
    dependence: dict[str, Dependence],
    day: dt.date,
    *,
    n_samples: int = 200,
    n_scenarios: int = 8,
    seed: int = 0,
    nonnegative_targets: tuple[str, ...] = ("load", "pv"),
) -> pd.DataFrame:
    """Draw joint scenarios and reduce them to a few with probabilities.

    Parameters
    ----------
    forecasts : DataFrame
        Champion forecasts: ``target, unique_id, ts, q10, q50, q90``.
    dependence : dict
        Copula per target (missing targets use :class:`Dependence` defaults).
    day : date
        The local day.
    n_samples, n_scenarios : int
        Draws and scenarios kept.
    seed : int
        Random seed (the same inputs give the same scenarios).

    Returns
    -------
    DataFrame
        ``day, scenario, probability, target, unique_id, ts, value``; probabilities sum to 1.
    """
    rng = np.random.default_rng(seed)
    ts = np.sort(forecasts["ts"].unique())
    n_t = len(ts)
    draws = {}
    for target, g in forecasts.groupby("target", sort=True):
        g = g.sort_values(["unique_id", "ts"])
        ids = list(dict.fromkeys(g["unique_id"]))
        q = g[list(_COLS)].to_numpy(float).reshape(len(ids), n_t, 3)
        z = _latent(rng, n_samples, len(ids), n_t, dependence.get(target, Dependence()))
        u = norm.cdf(z)
        vals = _quantile_fn(q[None, :, :, :], u)
        if target in nonnegative_targets:
            vals = np.clip(vals, 0.0, None)
        draws[target] = (ids, vals)
    # Reduce on community totals per target and hour.
    feats = np.concatenate([v.sum(axis=1) for _, v in draws.values()], axis=1)
    sd = feats.std(axis=0)
    feats = feats / np.where(sd > 0, sd, 1.0)
    k = min(n_scenarios, n_samples)
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(feats)
    rows = []
    for s in range(k):
        members = np.flatnonzero(km.labels_ == s)
        if len(members) == 0:
            continue
        d2 = ((feats[members] - km.cluster_centers_[s]) ** 2).sum(axis=1)
        pick = members[int(np.argmin(d2))]
        prob = len(members) / n_samples
        for target, (ids, vals) in draws.items():
            for i, uid in enumerate(ids):
                rows.append(
                    pd.DataFrame(
                        {
                            "scenario": s,
                            "probability": prob,
                            "target": target,
                            "unique_id": uid,
                            "ts": ts,
                            "value": vals[pick, i],
                        }
                    )
                )
    out = pd.concat(rows, ignore_index=True)
    # Renumber scenarios 0..k-1 in order of probability (largest first), deterministic.
    order = (
        out.groupby("scenario")["probability"]
        .first()
        .sort_values(ascending=False, kind="stable")
        .index.tolist()
    )
    out["scenario"] = out["scenario"].map({s: i for i, s in enumerate(order)}).astype(int)
    out["probability"] = out["probability"] / out.groupby("scenario")["probability"].first().sum()
    out["ts"] = (
        pd.DatetimeIndex(out["ts"]).tz_convert("UTC")
        if pd.DatetimeIndex(out["ts"]).tz is not None
        else pd.DatetimeIndex(out["ts"]).tz_localize("UTC")
    )
    out.insert(0, "day", day)
    return out.sort_values(["scenario", "target", "unique_id", "ts"]).reset_index(drop=True)
