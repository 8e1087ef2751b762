"""The matrix build of the dispatch LP is the Pyomo model's LP (optimisation.dispatch_matrix)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_dispatch import check_plan

from optimisation.dispatch import (
    BatterySpec,
    DispatchError,
    DispatchInputs,
    build_model,
    solve,
)
from optimisation.dispatch_matrix import build_matrix, solve_matrix


@st.composite
def inputs_with_every_term(draw: st.DrawFn) -> DispatchInputs:
    """Random inputs, each optional term of the objective and constraints on or off."""
    n_s, n_p, n_t = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(2, 7))
    players = tuple(f"M{i:02d}" for i in range(n_p - 1)) + ("OWNER",)
    has_battery = draw(st.lists(st.booleans(), min_size=n_p, max_size=n_p))
    batteries = {}
    for p, b in zip(players, has_battery, strict=True):
        if b:
            min_soc = draw(st.sampled_from([0.0, 0.2]))
            batteries[p] = BatterySpec(
                capacity_kwh=draw(st.floats(0.5, 15.0)),
                power_kw=draw(st.floats(0.0, 6.0)),
                round_trip_efficiency=draw(st.floats(0.6, 1.0)),
                initial_soc_fraction=draw(st.floats(min_soc, 1.0)),
                min_soc_fraction=min_soc,
            )
    energy = st.floats(0.0, 6.0) | st.just(0.0)
    weights = draw(
        st.lists(st.integers(0, 3), min_size=n_s, max_size=n_s).filter(lambda w: sum(w) > 0)
    )
    on = st.booleans()
    kw: dict[str, object] = {}
    if draw(on):
        kw["terminal_soc_value_per_kwh"] = draw(st.floats(0.0, 0.4))
    if draw(on):
        kw["ramping_penalty_per_kwh"] = draw(st.floats(0.001, 0.2))
        if draw(on):
            kw["previous_community_net_kwh"] = draw(st.floats(-5.0, 5.0))
    if draw(on):
        kw["peak_charge_per_kwh"] = draw(st.floats(0.01, 0.5))
    if draw(on):
        kw["carbon_price_per_kg"] = draw(st.floats(0.0, 0.2))
        kw["carbon_intensity"] = draw(
            hnp.arrays(np.float64, (n_s, n_t), elements=st.floats(0.0, 0.6))
        )
    if draw(on):
        kw["import_limit_kwh"] = np.array(
            [draw(st.sampled_from([np.inf, 3.0, 8.0])) for _ in players]
        )
    if draw(on):
        kw["feeder_cap_kwh"] = draw(st.floats(2.0, 20.0))
    if draw(on):  # incentive periods: contiguous groups of 1 to 4 intervals
        sizes = draw(st.lists(st.integers(1, 4), min_size=n_t, max_size=n_t))
        kw["share_periods"] = np.repeat(np.arange(n_t), sizes)[:n_t]
    if draw(on):
        kw["standalone_cost"] = draw(hnp.arrays(np.float64, (n_p,), elements=st.floats(-1, 3)))
    return DispatchInputs(
        ts=tuple(pd.Timestamp("2025-03-01", tz="UTC") + pd.Timedelta(hours=i) for i in range(n_t)),
        interval_hours=1.0,
        players=players,
        batteries=batteries,
        load_kwh=draw(hnp.arrays(np.float64, (n_s, n_p, n_t), elements=energy)),
        pv_kwh=draw(hnp.arrays(np.float64, (n_s, n_p, n_t), elements=energy)),
        import_price=draw(hnp.arrays(np.float64, (n_s, n_t), elements=st.floats(0.05, 0.6))),
        export_price=draw(hnp.arrays(np.float64, (n_s, n_t), elements=st.floats(0.0, 0.2))),
        probabilities=np.array(weights, dtype=float) / sum(weights),
        incentive_per_kwh=draw(st.sampled_from([0.0, 0.05, 0.11, 0.5])),
        cycling_penalty_per_kwh=draw(st.sampled_from([0.0, 1e-4])),
        **kw,
    )


def _pyomo_objective(inputs: DispatchInputs, fix: dict[tuple[str, int], tuple[float, float]]):
    model = build_model(inputs)
    for (p, t), (c, d) in fix.items():
        model.charge[p, t].fix(c)
        model.discharge[p, t].fix(d)
    return solve(model, time_limit_s=30.0).objective


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=inputs_with_every_term())
def test_matrix_lp_is_the_pyomo_lp(inputs: DispatchInputs) -> None:
    """Same optimum; the matrix plan's battery moves are optimal in the Pyomo model; the same
    inputs fail in both; and holding the first moves gives the same objective both ways."""
    try:
        want = _pyomo_objective(inputs, {})
    except DispatchError:
        with pytest.raises(DispatchError):
            solve_matrix(build_matrix(inputs))
        return
    lp = solve_matrix(build_matrix(inputs))
    tol = 1e-6 * (1.0 + abs(want))
    if lp.integrality.any():  # netting binaries: a MILP, optimal within HiGHS's relative gap
        tol += 2e-4 * abs(want)
    assert lp.objective == pytest.approx(want, abs=tol)
    ch, dis = lp.battery_flows()
    assert (ch >= 0).all() and (dis >= 0).all()  # solver noise clipped (a -1e-14 was refused)
    pidx = {p: i for i, p in enumerate(inputs.players)}
    everything = {
        (b, t): (float(ch[pidx[b], t]), float(dis[pidx[b], t]))
        for b in inputs.batteries
        for t in range(inputs.n_intervals)
    }
    if everything:
        # clip solver noise into the bounds Pyomo substitutes exactly
        spec = inputs.batteries
        everything = {
            (b, t): tuple(
                float(np.clip(x, 0.0, spec[b].power_kw * inputs.interval_hours)) for x in v
            )
            for (b, t), v in everything.items()
        }
        try:
            got = _pyomo_objective(inputs, everything)
        except DispatchError:
            pytest.fail("the matrix plan's battery moves are infeasible in the Pyomo model")
        assert got == pytest.approx(want, abs=tol + 1e-5 * (1.0 + abs(want)))
    # the rule-like first move: charge nothing, discharge nothing
    zeros = np.zeros(len(inputs.players))
    first = {(b, 0): (0.0, 0.0) for b in inputs.batteries}
    try:
        want_first = _pyomo_objective(inputs, first)
    except DispatchError:
        with pytest.raises(DispatchError):
            lp.first_move_objective(zeros, zeros)
        return
    assert lp.first_move_objective(zeros, zeros) == pytest.approx(want_first, abs=tol)
    fresh = solve_matrix(build_matrix(inputs, first=(zeros, zeros)))
    assert fresh.objective == pytest.approx(want_first, abs=tol)
    # the kept solver is restored after the re-solve
    ch, dis = lp.battery_flows()
    assert lp.first_move_objective(ch[:, 0], dis[:, 0]) == pytest.approx(lp.objective, abs=tol)


def test_matrix_lp_has_the_pyomo_size() -> None:
    """Same number of columns and rows as Pyomo's compiled model on a day with every term."""
    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

    t_n = 6
    inputs = DispatchInputs(
        ts=tuple(pd.Timestamp("2025-03-01", tz="UTC") + pd.Timedelta(hours=i) for i in range(t_n)),
        interval_hours=1.0,
        players=("A", "B", "OWNER"),
        batteries={"A": BatterySpec(10.0, 5.0, 0.9, 0.5), "OWNER": BatterySpec(20.0, 8.0, 0.9)},
        load_kwh=np.full((2, 3, t_n), 1.5),
        pv_kwh=np.linspace(0, 4, 2 * 3 * t_n).reshape(2, 3, t_n),
        import_price=np.full((2, t_n), 0.3),
        export_price=np.full((2, t_n), 0.05),
        probabilities=np.array([0.4, 0.6]),
        incentive_per_kwh=0.11,
        terminal_soc_value_per_kwh=0.2,
        ramping_penalty_per_kwh=0.01,
        previous_community_net_kwh=1.0,
        peak_charge_per_kwh=0.1,
        feeder_cap_kwh=10.0,
    )
    info = LinearStandardFormCompiler().write(build_model(inputs), mixed_form=True)
    lp = build_matrix(inputs)
    assert lp.a.shape == (len(info.rows), len(info.columns))
    assert lp.a.nnz == info.A.nnz


def test_hipo_is_installed() -> None:
    """The lock installs highspy-extras of highspy's version: large plans get HiPO (a
    highspy upgrade without its extras would silently fall back to IPX, 15 minutes at 1,000
    members instead of 6)."""
    from optimisation.dispatch_matrix import hipo_available, large_options

    assert hipo_available()
    assert large_options()["solver"] == "hipo"


DEGENERATE = DispatchInputs(  # HiPO and IPX without crossover both stopped "imprecise" here
    ts=(pd.Timestamp("2025-03-01", tz="UTC"), pd.Timestamp("2025-03-01 01:00", tz="UTC")),
    interval_hours=1.0,
    players=("OWNER",),
    batteries={"OWNER": BatterySpec(2.0, 1.0, 1.0, 0.0)},
    load_kwh=np.ones((1, 1, 2)),
    pv_kwh=np.zeros((1, 1, 2)),
    import_price=np.full((1, 2), 0.5),
    export_price=np.zeros((1, 2)),
    probabilities=np.ones(1),
    incentive_per_kwh=0.0,
    cycling_penalty_per_kwh=0.0,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=inputs_with_every_term())
@example(inputs=DEGENERATE)
def test_the_large_plan_path_gives_the_pyomo_plans_optimum_and_a_valid_plan(
    inputs: DispatchInputs,
) -> None:
    """``plan_day`` on the matrix path with HiPO (the threshold lowered to every plan) reaches
    the Pyomo path's optimum and its plan keeps every invariant ``check_plan`` checks."""
    from hypothesis import assume

    import optimisation.dispatch as dispatch

    assume(inputs.simultaneous_flows_unprofitable)  # the netting MILP stays on Pyomo
    try:
        want = dispatch.plan_day(inputs, time_limit_s=30.0)
    except DispatchError:
        return
    old = dispatch.LARGE_PLAN_COLUMNS
    dispatch.LARGE_PLAN_COLUMNS = -1
    try:
        assert dispatch.is_large(inputs)
        got = dispatch.plan_day(inputs, time_limit_s=30.0)
    finally:
        dispatch.LARGE_PLAN_COLUMNS = old
    tol = 1e-5 * (1.0 + abs(want.report.objective))
    assert got.report.objective == pytest.approx(want.report.objective, abs=tol)
    assert list(got.plan.columns) == list(want.plan.columns) and len(got.plan) == len(want.plan)
    check_plan(got.plan, inputs, lp=inputs.terminal_soc_value_per_kwh is None)
