"""Scenarios: probabilities, bounds, determinism and hour-to-hour correlation."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from models.scenarios import Dependence, _latent, _quantile_fn, generate_scenarios, pit_scores

DAY = dt.date(2017, 6, 14)


def forecasts(n_t=24):
    ts = pd.date_range("2017-06-14 07:00", periods=n_t, freq="h", tz="UTC")
    rows = []
    for target, ids in (("load", ["M01", "M02"]), ("pv", ["M01", "CPV"]), ("price", ["import"])):
        for uid in ids:
            mid = np.linspace(0.5, 2.0, n_t)
            rows.append(
                pd.DataFrame(
                    {
                        "target": target,
                        "unique_id": uid,
                        "ts": ts,
                        "q10": mid * 0.5,
                        "q50": mid,
                        "q90": mid * 1.6,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def test_scenarios_probabilities_bounds_and_determinism():
    fc = forecasts()
    a = generate_scenarios(fc, {}, DAY, n_samples=100, n_scenarios=5, seed=1)
    b = generate_scenarios(fc, {}, DAY, n_samples=100, n_scenarios=5, seed=1)
    pd.testing.assert_frame_equal(a, b)
    probs = a.groupby("scenario").probability.first()
    assert abs(probs.sum() - 1) < 1e-12 and len(probs) == 5
    assert (a.value >= 0).all()
    assert a.groupby("scenario").size().eq(5 * 24).all()


def test_latent_draws_keep_hour_correlation():
    z = _latent(np.random.default_rng(0), 4000, 1, 24, Dependence(rho_hours=0.8, common=0.5))
    r = np.corrcoef(z[:, 0, 5], z[:, 0, 6])[0, 1]
    assert 0.74 < r < 0.86
    assert abs(np.corrcoef(z[:, 0, 0], z[:, 0, 20])[0, 1]) < 0.1


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 5), st.floats(0, 5), st.floats(0, 5), st.floats(0.01, 0.99))
def test_quantile_function_is_monotone_and_inverts_pit(a, b, c, u):
    q = np.sort(np.array([[a, b, c]]), axis=1)
    y = _quantile_fn(q, np.array([u]))
    y2 = _quantile_fn(q, np.array([min(u + 0.005, 0.995)]))
    assert y2[0] >= y[0] - 1e-12
    if q[0, 2] - q[0, 0] > 1e-6 and q[0, 1] - q[0, 0] > 1e-6 and q[0, 2] - q[0, 1] > 1e-6:
        from scipy.stats import norm

        assert abs(norm.cdf(pit_scores(y, q)[0]) - np.clip(u, 0.005, 0.995)) < 1e-6
