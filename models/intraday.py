"""Intraday forecasts for ECM's real-time layer, updated with the newest metered interval.

At the start of interval ``i`` only readings of intervals before ``i`` are known. The
forecast of interval ``i + j`` (``0 <= j < h <= 24 h``) is

* load: the mean of the same interval on the previous ``load_days`` days (``i + j - k*L`` for
  ``k = 1..load_days``, ``L`` intervals a day), plus the newest interval's error against that
  profile decaying by ``load_decay ** (j + 1)``;
* PV: yesterday's value (``i + j - L``), scaled by the newest interval's ratio of actual to
  yesterday's value, the scaling decaying by ``pv_decay ** (j + 1)`` (the clear-sky index of
  the last hour persists a little; overnight there is nothing to scale).

Days are taken as ``L`` intervals in UTC, so on a DST change day the profile is one hour off
for that day's own lags. Pure numpy: no dagster, no mlflow.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IntradayForecaster:
    """Naive intraday forecasts with a newest-interval correction.

    Parameters
    ----------
    load_kwh, pv_kwh : ndarray (P, N)
        Metered load and PV on a regular grid [kWh]; NaN where unknown. Values at or after the
        issue interval are never read.
    intervals_per_day : int
        ``L``: intervals in 24 h.
    load_days : int
        Days averaged for the load profile.
    load_decay, pv_decay : float
        Persistence of the newest interval's correction per interval ahead [-], in [0, 1).
    """

    load_kwh: np.ndarray
    pv_kwh: np.ndarray
    intervals_per_day: int = 24
    load_days: int = 7
    load_decay: float = 0.5
    pv_decay: float = 0.5

    def _profile(self, idx: np.ndarray) -> np.ndarray:
        lags = idx[None, :] - self.intervals_per_day * np.arange(1, self.load_days + 1)[:, None]
        ok = lags >= 0
        vals = self.load_kwh[:, np.where(ok, lags, 0)]  # (P, K, h)
        vals = np.where(ok[None], vals, np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no history yet: 0 below
            out = np.nanmean(vals, axis=1)
        return np.nan_to_num(out, nan=0.0)

    def __call__(self, i: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Forecast intervals ``i .. i+h-1`` issued at the start of ``i``.

        Parameters
        ----------
        i : int
            Issue interval on the grid (data before it is known).
        h : int
            Intervals ahead, at most ``intervals_per_day``.

        Returns
        -------
        load, pv : ndarray (P, h)
            [kWh], >= 0.
        """
        if not 0 < h <= self.intervals_per_day:
            raise ValueError(f"h must be in 1..{self.intervals_per_day}, got {h}")
        idx = np.arange(i, i + h)
        decay = np.arange(1, h + 1)
        load = self._profile(idx)
        if i >= 1:
            last = self.load_kwh[:, i - 1]
            err = np.nan_to_num(last - self._profile(np.array([i - 1]))[:, 0])
            load = load + err[:, None] * self.load_decay ** decay[None, :]
        y = idx - self.intervals_per_day
        pv = np.where(y >= 0, self.pv_kwh[:, np.clip(y, 0, None)], np.nan)
        pv = np.nan_to_num(pv, nan=0.0)
        if i >= 1 + self.intervals_per_day:
            now, before = self.pv_kwh[:, i - 1], self.pv_kwh[:, i - 1 - self.intervals_per_day]
            recent = self.pv_kwh[:, i - 1 - self.intervals_per_day : i]
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                # scale only where yesterday produced something meaningful at that hour
                ok = before > 0.1 * np.nanmax(recent, axis=1)
                ratio = np.where(ok, now / before, 1.0)
            ratio = np.clip(np.nan_to_num(ratio, nan=1.0), 0.0, 2.0)
            pv = pv * (1 + (ratio[:, None] - 1) * self.pv_decay ** decay[None, :])
        return np.clip(load, 0.0, None), np.clip(pv, 0.0, None)
