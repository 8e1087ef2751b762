"""Tests for models.intraday: the intraday forecaster of ECM's real-time layer.

No look-ahead (values at or after the issue interval never change a forecast), the naive
profiles without the newest-interval correction, the correction itself, shapes, signs and
argument checks.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models.intraday import IntradayForecaster


def _series(p: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 5.0, (p, n)), rng.uniform(0.0, 5.0, (p, n))


# --------------------------------------------------------------------------------------------
# No look-ahead
# --------------------------------------------------------------------------------------------


@st.composite
def lookahead_cases(draw: st.DrawFn):
    p = draw(st.integers(1, 3))
    per_day = draw(st.sampled_from([4, 6, 24]))
    n = per_day * draw(st.integers(1, 4)) + draw(st.integers(0, per_day - 1))
    energy = st.floats(0.0, 5.0) | st.just(0.0) | st.just(np.nan)
    load = draw(hnp.arrays(np.float64, (p, n), elements=energy))
    pv = draw(hnp.arrays(np.float64, (p, n), elements=energy))
    i = draw(st.integers(0, n - 1))
    h = draw(st.integers(1, per_day))
    changed_load = draw(hnp.arrays(np.float64, (p, n - i), elements=energy))
    changed_pv = draw(hnp.arrays(np.float64, (p, n - i), elements=energy))
    kwargs = {
        "intervals_per_day": per_day,
        "load_days": draw(st.integers(1, 7)),
        "load_decay": draw(st.sampled_from([0.0, 0.5, 0.9])),
        "pv_decay": draw(st.sampled_from([0.0, 0.5, 0.9])),
    }
    return load, pv, i, h, changed_load, changed_pv, kwargs


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=lookahead_cases())
def test_no_lookahead(case) -> None:
    load, pv, i, h, changed_load, changed_pv, kwargs = case
    base = IntradayForecaster(load, pv, **kwargs)(i, h)
    load2, pv2 = load.copy(), pv.copy()
    load2[:, i:] = changed_load
    pv2[:, i:] = changed_pv
    changed = IntradayForecaster(load2, pv2, **kwargs)(i, h)
    np.testing.assert_array_equal(changed[0], base[0])
    np.testing.assert_array_equal(changed[1], base[1])
    for out in base:
        assert out.shape == (load.shape[0], h)
        assert np.isfinite(out).all()
        assert (out >= 0).all()


@pytest.mark.parametrize("i", [0, 1, 23, 24, 25, 47, 48, 60, 71])
@pytest.mark.parametrize("h", [1, 12, 24])
def test_no_lookahead_each_future_index(i: int, h: int) -> None:
    load, pv = _series(2, 72, seed=i)
    fc = IntradayForecaster(load, pv, load_days=2)
    base_load, base_pv = fc(i, h)
    for k in range(i, 72, 5):
        for arr_name in ("load", "pv"):
            load2, pv2 = load.copy(), pv.copy()
            (load2 if arr_name == "load" else pv2)[:, k] = 1e3
            got_load, got_pv = IntradayForecaster(load2, pv2, load_days=2)(i, h)
            np.testing.assert_array_equal(got_load, base_load, err_msg=f"{arr_name}[{k}]")
            np.testing.assert_array_equal(got_pv, base_pv, err_msg=f"{arr_name}[{k}]")


# --------------------------------------------------------------------------------------------
# Naive profiles
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("i", "h"), [(72, 24), (80, 5), (95, 1), (90, 24)])
def test_zero_decay_load_is_mean_of_previous_days(i: int, h: int) -> None:
    load, pv = _series(3, 120, seed=1)
    fc = IntradayForecaster(load, pv, load_days=3, load_decay=0.0, pv_decay=0.0)
    got, _ = fc(i, h)
    expected = np.stack(
        [np.mean([load[:, i + j - 24 * k] for k in (1, 2, 3)], axis=0) for j in range(h)],
        axis=1,
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_zero_decay_load_uses_only_available_days() -> None:
    load, pv = _series(1, 48, seed=2)
    fc = IntradayForecaster(load, pv, load_days=7, load_decay=0.0)
    got, _ = fc(30, 24)
    # interval 30 + j: lag 1 day always exists, lag 2 days only for 30 + j >= 48
    expected = [
        (load[0, 30 + j - 24] + load[0, 30 + j - 48]) / 2 if 30 + j >= 48 else load[0, 30 + j - 24]
        for j in range(24)
    ]
    np.testing.assert_allclose(got[0], expected, rtol=0, atol=1e-12)


def test_zero_decay_load_skips_missing_readings() -> None:
    load, pv = _series(1, 96, seed=3)
    load[0, 50] = np.nan  # the 2-day lag of interval 98 is missing
    fc = IntradayForecaster(load, pv, load_days=3, load_decay=0.0)
    got, _ = fc(96, 3)
    assert got[0, 2] == pytest.approx((load[0, 74] + load[0, 26]) / 2, abs=1e-12)
    assert got[0, 0] == pytest.approx((load[0, 72] + load[0, 48] + load[0, 24]) / 3, abs=1e-12)


@pytest.mark.parametrize(("i", "h"), [(24, 24), (30, 10), (47, 1), (50, 24)])
def test_zero_decay_pv_is_yesterday(i: int, h: int) -> None:
    load, pv = _series(2, 96, seed=4)
    fc = IntradayForecaster(load, pv, load_decay=0.0, pv_decay=0.0)
    _, got = fc(i, h)
    np.testing.assert_allclose(got, pv[:, i - 24 : i - 24 + h], rtol=0, atol=0)


def test_pv_without_yesterday_is_zero() -> None:
    load, pv = _series(1, 48, seed=5)
    _, got = IntradayForecaster(load, pv, pv_decay=0.0)(10, 24)
    np.testing.assert_array_equal(got[0, :14], 0.0)  # intervals 10..23 have no yesterday
    np.testing.assert_array_equal(got[0, 14:], pv[0, 0:10])


# --------------------------------------------------------------------------------------------
# Newest-interval correction
# --------------------------------------------------------------------------------------------


def test_load_error_decays() -> None:
    per_day = 4
    load = np.ones((1, 12))
    load[0, 8] = 3.0  # newest interval before issue 9: 2 above its profile (1)
    fc = IntradayForecaster(load, np.zeros((1, 12)), per_day, load_days=2, load_decay=0.5)
    got, _ = fc(9, 3)
    np.testing.assert_allclose(got[0], [1 + 2 * 0.5, 1 + 2 * 0.25, 1 + 2 * 0.125])


def test_pv_ratio_scales_yesterday_and_is_capped() -> None:
    per_day = 4
    pv = np.array([[0.0, 2.0, 2.0, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0]])
    load = np.zeros_like(pv)
    _, got = IntradayForecaster(load, pv, per_day, pv_decay=0.5)(6, 3)
    # issue at 6: newest 2 vs yesterday 2 -> ratio 1; forecasts are yesterday's 2, 0, 0
    np.testing.assert_allclose(got[0], [2.0, 0.0, 0.0])
    pv2 = np.array([[0.0, 2.0, 2.0, 2.0, 0.0, 2.0, 10.0, 5.0, 0.0]])
    _, got = IntradayForecaster(load, pv2, per_day, pv_decay=0.5)(7, 2)
    # newest 10 vs yesterday 2: ratio 5, capped at 2; yesterday at 7, 8 is 2, 0
    np.testing.assert_allclose(got[0], [2.0 * (1 + (2 - 1) * 0.5), 0.0])


# --------------------------------------------------------------------------------------------
# Shapes, signs, arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h", [0, -1, 25])
def test_h_outside_range_raises(h: int) -> None:
    load, pv = _series(2, 48)
    with pytest.raises(ValueError, match="h must be"):
        IntradayForecaster(load, pv)(30, h)


def test_h_range_follows_intervals_per_day() -> None:
    load, pv = _series(1, 96 * 2)
    fc = IntradayForecaster(load, pv, intervals_per_day=96)
    load_fc, pv_fc = fc(100, 96)
    assert load_fc.shape == (1, 96) and pv_fc.shape == (1, 96)
    with pytest.raises(ValueError):
        fc(100, 97)


def test_outputs_nonnegative_after_large_negative_error() -> None:
    load = np.full((2, 72), 5.0)
    load[:, 47] = 0.0  # newest interval 5 below its profile (load[23] = 5)
    load[:, 24] = 1.0  # profile of interval 48: 1 - 5 * 0.9 < 0 is clipped
    pv = np.full((2, 72), 1.0)
    load_fc, pv_fc = IntradayForecaster(load, pv, load_decay=0.9, load_days=1)(48, 24)
    assert load_fc.shape == (2, 24) and pv_fc.shape == (2, 24)
    assert (load_fc >= 0).all() and (pv_fc >= 0).all()
    np.testing.assert_allclose(load_fc[:, 0], 0.0)
    np.testing.assert_allclose(load_fc[:, 1], 5.0 - 5.0 * 0.9**2)


def test_first_interval_has_no_history() -> None:
    load, pv = _series(2, 48)
    load_fc, pv_fc = IntradayForecaster(load, pv)(0, 24)
    np.testing.assert_array_equal(load_fc, 0.0)
    np.testing.assert_array_equal(pv_fc, 0.0)
