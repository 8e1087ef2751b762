"""Real-time plan following keeps batteries within limits; realised flows balance."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optimisation.settlement import follow_plan, grid_cost, realised_flows

E = st.floats(0, 5, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    arrays(float, (3, 6), elements=E),
    arrays(float, (3, 6), elements=E),
    arrays(float, (3, 6), elements=st.floats(-3, 3)),
    arrays(float, (3, 6), elements=E),
)
def test_follow_plan_respects_power_and_soc_and_balances(load, pv, plan, fc):
    cap = np.array([6.4, 0.0, 20.0])
    power = np.array([5.0, 0.0, 4.0])
    eta = np.array([0.95, 1.0, 0.9])
    soc0 = cap * 0.5
    ch, dis = follow_plan(load, pv, plan, fc, cap, power, eta, soc0)
    assert (ch >= 0).all() and (dis >= 0).all()
    assert (ch <= power[:, None] + 1e-9).all() and (dis <= power[:, None] + 1e-9).all()
    soc = soc0[:, None] + np.cumsum(eta[:, None] * ch - dis / eta[:, None], axis=1)
    assert (soc >= -1e-9).all() and (soc <= cap[:, None] + 1e-9).all()
    imp, exp = realised_flows(load, pv, ch, dis)
    np.testing.assert_allclose(load - pv + ch - dis, imp - exp, atol=1e-9)
    assert ((imp == 0) | (exp == 0)).all()


def test_grid_cost_prices_imports_and_exports():
    imp = np.array([[1.0, 0.0]])
    exp = np.array([[0.0, 2.0]])
    assert grid_cost(imp, exp, np.array([0.3, 0.3]), np.array([0.05, 0.05]))[0] == 0.3 - 0.1
