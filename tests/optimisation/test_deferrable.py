"""Deferrable loads in the dispatch LP (optimisation.deferrable): one uninterrupted cycle
inside its window, placed where it costs least."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ev import home_and_roof

from optimisation.deferrable import DeferrableSpec
from optimisation.dispatch import DispatchInputError, DispatchInputs, build_model, plan_day

DT = 0.25
T_N = 96
SUN = np.clip(np.sin((np.arange(T_N) * DT - 6.0) / 12 * np.pi), 0, None)
WASH = (0.5, 0.5, 0.1, 0.1, 0.3, 0.3)  # a washing machine's cycle, 1.8 kWh in 90 minutes


def _inputs(loads: dict, pv_kw: float = 4.0) -> DispatchInputs:
    return home_and_roof(0.2, pv_kw, import_price=np.full((1, T_N), 0.25), deferrable=loads)


def test_the_model_has_one_binary_per_possible_start_and_runs_once():
    m = build_model(_inputs({"wash": DeferrableSpec("A", WASH, earliest=20, latest_end=80)}))
    assert len(m.start) == 80 - 20 - len(WASH) + 1 and len(m.one_start) == 1


def test_a_washing_machine_runs_its_whole_cycle_once_in_the_sun():
    res = plan_day(_inputs({"wash": DeferrableSpec("A", WASH, earliest=20, latest_end=90)}))
    row = res.deferrable.iloc[0]
    start = int((row["start_ts"] - pd.Timestamp("2025-07-15", tz="UTC")) / pd.Timedelta("15min"))
    assert row["energy_kwh"] == pytest.approx(sum(WASH))
    assert SUN[start : start + len(WASH)].min() > 0.5  # under the roof's production
    exp = res.plan[(res.plan["scenario"] == "expected") & (res.plan["member_id"] == "A")]
    extra = exp.sort_values("ts")["load_kwh"].to_numpy() - 0.2 * DT
    want = np.zeros(T_N)
    want[start : start + len(WASH)] = WASH
    np.testing.assert_allclose(extra, want, atol=1e-9)  # uninterrupted, its shape, once


def test_a_cycle_that_does_not_fit_its_window_is_refused_by_name():
    with pytest.raises(
        DispatchInputError, match=r"member 'A', deferrable load 'wash', field 'latest_end'"
    ):
        _inputs({"wash": DeferrableSpec("A", WASH, earliest=10, latest_end=13)})
    with pytest.raises(DispatchInputError, match="field 'profile_kwh'"):
        _inputs({"wash": DeferrableSpec("A", (), earliest=10, latest_end=20)})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(earliest=st.integers(0, 80), width=st.integers(6, 40), pv=st.floats(0.0, 6.0))
def test_every_cycle_runs_inside_its_window(earliest, width, pv):
    latest = min(earliest + width, T_N)
    if latest - earliest < len(WASH):
        return
    res = plan_day(_inputs({"wash": DeferrableSpec("A", WASH, earliest, latest)}, pv_kw=pv))
    exp = res.plan[(res.plan["scenario"] == "expected") & (res.plan["member_id"] == "A")]
    extra = exp.sort_values("ts")["load_kwh"].to_numpy() - 0.2 * DT
    on = np.flatnonzero(extra > 1e-9)
    assert on.min() >= earliest and on.max() < latest
    assert extra.sum() == pytest.approx(sum(WASH))
    bal = exp["load_kwh"] - exp["pv_kwh"] - exp["import_kwh"] + exp["export_kwh"]
    assert np.abs(bal).max() < 1e-7


def test_the_start_is_integral_not_a_relaxation():
    """The plan is a MILP: the solver's start values are 0 or 1 (a relaxed LP would spread a
    cycle over cheaper intervals; the plan rounds nothing away)."""
    from optimisation.dispatch import solve

    flat = _inputs({"wash": DeferrableSpec("A", WASH, earliest=30, latest_end=70)}, pv_kw=2.0)
    m = build_model(flat)
    solve(m)
    values = np.array([v.value for v in m.start.values()])
    assert np.allclose(values, np.round(values), atol=1e-6) and values.sum() == pytest.approx(1)
