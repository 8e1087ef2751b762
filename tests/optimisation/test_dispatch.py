"""Tests for optimisation.dispatch: the two-stage day-ahead battery dispatch LP.

Hand-checkable cases pin exact schedules and objectives; a Hypothesis property test checks the
physical invariants of every row of LP and rule-based plans on random feasible inputs; the
structure test counts variables and constraints without solving (as linopy's
``assert_model_equal`` does).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pyomo.contrib.solver.common.factory import SolverFactory as ContribSolverFactory

import optimisation.dispatch as dispatch
from optimisation.dispatch import (
    EXPECTED_SCENARIO,
    HIGHS_OPTIONS,
    PLAN_COLUMNS,
    BatterySpec,
    DispatchError,
    DispatchInputError,
    DispatchInputs,
    build_model,
    extract_results,
    no_battery_baseline,
    plan_day,
    rule_based_plan,
    solve,
)

TOL = 1e-6


def _ts(n: int, interval_hours: float = 1.0) -> tuple[pd.Timestamp, ...]:
    start = pd.Timestamp("2025-06-01 00:00", tz="UTC")
    return tuple(start + i * pd.Timedelta(hours=interval_hours) for i in range(n))


def _inputs(
    load: object,
    pv: object,
    import_price: object,
    export_price: object,
    *,
    players: tuple[str, ...],
    batteries: dict[str, BatterySpec] | None = None,
    probabilities: object = (1.0,),
    incentive: float = 0.0,
    interval_hours: float = 1.0,
    cycling_penalty: float = 1e-4,
) -> DispatchInputs:
    load = np.asarray(load, dtype=float)
    return DispatchInputs(
        ts=_ts(load.shape[-1], interval_hours),
        interval_hours=interval_hours,
        players=players,
        batteries=batteries or {},
        load_kwh=load,
        pv_kwh=np.asarray(pv, dtype=float),
        import_price=np.asarray(import_price, dtype=float),
        export_price=np.asarray(export_price, dtype=float),
        probabilities=np.asarray(probabilities, dtype=float),
        incentive_per_kwh=incentive,
        cycling_penalty_per_kwh=cycling_penalty,
    )


def _rows(plan: pd.DataFrame, scenario: str, member: str) -> pd.DataFrame:
    return plan[(plan["scenario"] == scenario) & (plan["member_id"] == member)].sort_values("ts")


def _cube(plan: pd.DataFrame, column: str, inputs: DispatchInputs) -> np.ndarray:
    """Column as an (S+1, P, T) array; the last block is the expected case."""
    labels = [*inputs.scenario_labels, EXPECTED_SCENARIO]
    frame = plan.assign(
        _s=plan["scenario"].map({s: i for i, s in enumerate(labels)}),
        _p=plan["member_id"].map({p: i for i, p in enumerate(inputs.players)}),
        _t=plan["ts"].map({t: i for i, t in enumerate(inputs.ts)}),
    )
    assert frame[["_s", "_p", "_t"]].notna().all().all()
    out = np.full((len(labels), len(inputs.players), len(inputs.ts)), np.nan)
    out[frame["_s"], frame["_p"], frame["_t"]] = frame[column].to_numpy()
    assert not np.isnan(out).any(), f"{column}: missing rows"
    return out


def check_plan(plan: pd.DataFrame, inputs: DispatchInputs, *, lp: bool) -> None:
    """Assert the physical and bookkeeping invariants of every row of a plan.

    ``lp`` adds the LP-only guarantees: minimum SoC and end-of-day SoC equal to the start.
    """
    s_n, p_n, t_n = inputs.load_kwh.shape
    assert list(plan.columns) == list(PLAN_COLUMNS)
    assert len(plan) == (s_n + 1) * p_n * t_n
    assert not plan[list(PLAN_COLUMNS)].isna().any().any()
    assert not plan.duplicated(["member_id", "ts", "scenario"]).any()

    c = {col: _cube(plan, col, inputs) for col in PLAN_COLUMNS[3:]}
    ch, dis, soc = c["charge_kwh"], c["discharge_kwh"], c["soc_kwh"]
    imp, exp = c["import_kwh"], c["export_kwh"]
    # balance on every row, including the expected case; cleaned flows are exact to rounding
    balance = c["load_kwh"] - c["pv_kwh"] + ch - dis - (imp - exp)
    assert np.abs(balance).max() <= 1e-9
    for name in ("charge_kwh", "discharge_kwh", "soc_kwh", "import_kwh", "export_kwh"):
        assert (c[name] >= 0).all(), name
    assert (c["community_shared_kwh"] >= 0).all()
    # physical caps
    assert (imp <= c["load_kwh"] + ch + TOL).all()
    assert (exp <= c["pv_kwh"] + dis + TOL).all()
    # first stage is scenario-independent
    for x in (ch, dis, soc):
        assert np.array_equal(x, np.broadcast_to(x[0], x.shape))
    # inputs are reproduced, expected rows are probability-weighted means
    prob = inputs.probabilities
    np.testing.assert_allclose(c["load_kwh"][:-1], inputs.load_kwh)
    np.testing.assert_allclose(c["pv_kwh"][:-1], inputs.pv_kwh)
    np.testing.assert_allclose(c["import_price"][:-1, 0], inputs.import_price)
    np.testing.assert_allclose(c["export_price"][:-1, 0], inputs.export_price)
    assert (c["probability"][:-1] == prob[:, None, None]).all()
    assert (c["probability"][-1] == 1.0).all()
    for name in (
        "load_kwh",
        "pv_kwh",
        "import_kwh",
        "export_kwh",
        "import_price",
        "export_price",
        "community_shared_kwh",
    ):
        np.testing.assert_allclose(
            c[name][-1],
            np.tensordot(prob, c[name][:-1], axes=1),
            rtol=0,
            atol=1e-9,
            err_msg=name,
        )
    # shared energy is min(community import, community export) per scenario and incentive
    # period (an interval unless share_periods groups them), spread equally over the period
    per = inputs.periods
    n_h = int(per[-1]) + 1
    ci, ce = np.zeros((len(prob), n_h)), np.zeros((len(prob), n_h))
    np.add.at(ci.T, per, imp[:-1].sum(axis=1).T)
    np.add.at(ce.T, per, exp[:-1].sum(axis=1).T)
    shared = (np.minimum(ci, ce) / np.bincount(per))[:, per]
    np.testing.assert_allclose(c["community_shared_kwh"][:-1, 0], shared, rtol=0, atol=1e-9)
    assert (c["community_shared_kwh"] == c["community_shared_kwh"][:, :1]).all()

    # batteries: limits, continuity, end of day
    dt = inputs.interval_hours
    for i, p in enumerate(inputs.players):
        spec = inputs.batteries.get(p)
        if spec is None:
            assert (ch[:, i] == 0).all() and (dis[:, i] == 0).all() and (soc[:, i] == 0).all()
            continue
        assert (ch[0, i] <= spec.power_kw * dt + TOL).all()
        assert (dis[0, i] <= spec.power_kw * dt + TOL).all()
        assert (soc[0, i] <= spec.capacity_kwh + TOL).all()
        eta = math.sqrt(spec.round_trip_efficiency)
        start = spec.initial_soc_kwh
        if lp:
            assert (soc[0, i] >= spec.min_soc_kwh - TOL).all()
        else:
            start = min(max(start, 0.0), spec.capacity_kwh)
        prev = np.concatenate([[start], soc[0, i, :-1]])
        np.testing.assert_allclose(
            soc[0, i], prev + eta * ch[0, i] - dis[0, i] / eta, rtol=0, atol=TOL
        )
        if lp:
            assert abs(soc[0, i, -1] - spec.initial_soc_kwh) <= TOL


# --------------------------------------------------------------------------------------------
# Hand-checkable cases
# --------------------------------------------------------------------------------------------


def test_single_battery_charges_cheap_and_discharges_expensive() -> None:
    # eta = sqrt(0.81) = 0.9. Charging 1 kWh at 0.10 returns 0.81 kWh, worth 0.405 at t1 and
    # 0.243 at t2, so the battery charges at full power (5 kWh, SoC 5 -> 9.5) and must return
    # the 4.5 kWh stored as 4.05 kWh delivered: 3 kWh covers t1's load, the rest 1.05 at t2.
    inputs = _inputs(
        [[[1.0, 3.0, 3.0]]],
        np.zeros((1, 1, 3)),
        [[0.10, 0.50, 0.30]],
        [[0.05, 0.05, 0.05]],
        players=("M01",),
        batteries={"M01": BatterySpec(10.0, 5.0, 0.81, initial_soc_fraction=0.5)},
    )
    result = plan_day(inputs)
    rows = _rows(result.plan, "s0", "M01")
    np.testing.assert_allclose(rows["charge_kwh"], [5.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(rows["discharge_kwh"], [0.0, 3.0, 1.05], atol=1e-7)
    np.testing.assert_allclose(rows["soc_kwh"], [9.5, 9.5 - 3.0 / 0.9, 5.0], atol=1e-7)
    np.testing.assert_allclose(rows["import_kwh"], [6.0, 0.0, 1.95], atol=1e-7)
    np.testing.assert_allclose(rows["export_kwh"], [0.0, 0.0, 0.0], atol=1e-7)
    bill = 0.10 * 6.0 + 0.30 * 1.95
    assert result.report.termination_condition == "convergenceCriteriaSatisfied"
    assert result.report.objective == pytest.approx(bill + 1e-4 * (5.0 + 3.0 + 1.05), abs=1e-9)
    assert result.summary["expected_cost"] == pytest.approx(bill, abs=1e-9)
    assert result.summary["no_battery_cost"] == pytest.approx(0.1 + 1.5 + 0.9, abs=1e-12)
    assert result.summary["expected_savings"] == pytest.approx(2.5 - bill, abs=1e-9)
    assert set(result.summary) == {
        "expected_cost",
        "expected_incentive",
        "expected_net_cost",
        "no_battery_cost",
        "no_battery_incentive",
        "no_battery_net_cost",
        "expected_savings",
        "expected_shared_kwh",
        "objective",
    }
    check_plan(result.plan, inputs, lp=True)


def test_incentive_shares_min_of_injection_and_withdrawal() -> None:
    # A (producer) and B (consumer), no batteries, two scenarios.
    load = [[[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]], [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]]
    pv = [[[5.0, 2.0, 0.0], [0.0, 0.0, 0.0]], [[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]]
    price_in, price_out, incentive = 0.30, 0.05, 0.10
    inputs = _inputs(
        load,
        pv,
        np.full((2, 3), price_in),
        np.full((2, 3), price_out),
        players=("A", "B"),
        probabilities=[0.25, 0.75],
        incentive=incentive,
    )
    result = plan_day(inputs)
    plan = result.plan
    # s0: injection (4, 1, 0), withdrawal (3, 3, 3); s1: injection (2, 3, 0), withdrawal 2
    expected_shared = {"s0": [3.0, 1.0, 0.0], "s1": [2.0, 2.0, 0.0]}
    for s, shared in expected_shared.items():
        for member in ("A", "B"):
            np.testing.assert_allclose(
                _rows(plan, s, member)["community_shared_kwh"], shared, atol=1e-7
            )
    np.testing.assert_allclose(
        _rows(plan, EXPECTED_SCENARIO, "A")["community_shared_kwh"],
        0.25 * np.array(expected_shared["s0"]) + 0.75 * np.array(expected_shared["s1"]),
        atol=1e-7,
    )
    shared_kwh = 0.25 * 4.0 + 0.75 * 4.0
    s0_bill = price_in * (0 + 0 + 1 + 9) - price_out * (4 + 1)
    s1_bill = price_in * (0 + 0 + 1 + 6) - price_out * (2 + 3)
    cost = 0.25 * s0_bill + 0.75 * s1_bill
    assert result.summary["expected_shared_kwh"] == pytest.approx(shared_kwh, abs=1e-7)
    assert result.summary["expected_incentive"] == pytest.approx(incentive * shared_kwh, abs=1e-7)
    assert result.report.objective == pytest.approx(cost - incentive * shared_kwh, abs=1e-7)
    # without batteries the LP reproduces the closed-form baseline
    base = no_battery_baseline(inputs)
    assert base["expected_shared_kwh"] == pytest.approx(shared_kwh, abs=1e-12)
    assert base["objective"] == pytest.approx(result.report.objective, abs=1e-7)
    assert result.summary["expected_savings"] == pytest.approx(0.0, abs=1e-7)
    check_plan(plan, inputs, lp=True)


def test_physical_caps_bound_incentive_farming() -> None:
    # Incentive far above the price spread: gross flows are worth creating, but only within
    # import <= load + charge and export <= pv + discharge. A has no load, B has no PV.
    inputs = _inputs(
        [[[0.0, 0.0], [3.0, 1.0]]],
        [[[5.0, 0.0], [0.0, 0.0]]],
        [[0.20, 0.20]],
        [[0.15, 0.15]],
        players=("A", "B"),
        incentive=10.0,
    )
    result = plan_day(inputs)
    shared = _rows(result.plan, "s0", "A")["community_shared_kwh"].to_numpy()
    np.testing.assert_allclose(shared, [3.0, 0.0], atol=1e-7)
    check_plan(result.plan, inputs, lp=True)


def test_battery_shifts_surplus_to_shared_energy() -> None:
    # A exports 4 kWh at t0 that nobody uses; B's battery may store it (as shared energy) and
    # serve B's load at t1. With export price 0 this beats buying at t1.
    inputs = _inputs(
        [[[0.0, 0.0], [0.0, 2.0]]],
        [[[4.0, 0.0], [0.0, 0.0]]],
        [[0.30, 0.30]],
        [[0.0, 0.0]],
        players=("A", "B"),
        incentive=0.1,
        batteries={"B": BatterySpec(10.0, 10.0, 1.0, initial_soc_fraction=0.0)},
    )
    result = plan_day(inputs)
    rows = _rows(result.plan, "s0", "B")
    # B charges exactly what it needs back at t1 (the day ends at SoC 0) from the grid at t0;
    # the cycling penalty rules out equally cheap charge/discharge churn
    np.testing.assert_allclose(rows["charge_kwh"], [2.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(rows["discharge_kwh"], [0.0, 2.0], atol=1e-7)
    np.testing.assert_allclose(rows["community_shared_kwh"], [2.0, 0.0], atol=1e-7)
    assert result.report.objective == pytest.approx(0.30 * 2.0 - 0.1 * 2.0 + 1e-4 * 4.0, abs=1e-7)
    assert result.summary["no_battery_net_cost"] == pytest.approx(0.30 * 2.0, abs=1e-12)
    check_plan(result.plan, inputs, lp=True)


# --------------------------------------------------------------------------------------------
# Property test
# --------------------------------------------------------------------------------------------


@st.composite
def battery_specs(draw: st.DrawFn) -> BatterySpec:
    min_soc = draw(st.sampled_from([0.0, 0.1, 0.2]))
    return BatterySpec(
        capacity_kwh=draw(st.floats(0.5, 20.0)),
        power_kw=draw(st.floats(0.0, 10.0)),
        round_trip_efficiency=draw(st.floats(0.5, 1.0)),
        initial_soc_fraction=draw(st.floats(min_soc, 1.0)),
        min_soc_fraction=min_soc,
    )


@st.composite
def dispatch_inputs(draw: st.DrawFn) -> DispatchInputs:
    n_s, n_p, n_t = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(3, 8))
    players = tuple(f"M{i:02d}" for i in range(n_p - 1)) + ("OWNER",)
    has_battery = draw(st.lists(st.booleans(), min_size=n_p, max_size=n_p))
    batteries = {p: draw(battery_specs()) for p, b in zip(players, has_battery, strict=True) if b}
    energy = st.floats(0.0, 10.0) | st.just(0.0)
    weights = draw(
        st.lists(st.integers(0, 4), min_size=n_s, max_size=n_s).filter(lambda w: sum(w) > 0)
    )
    inputs = _inputs(
        draw(hnp.arrays(np.float64, (n_s, n_p, n_t), elements=energy)),
        draw(hnp.arrays(np.float64, (n_s, n_p, n_t), elements=energy)),
        draw(hnp.arrays(np.float64, (n_s, n_t), elements=st.floats(-0.1, 0.6))),
        draw(hnp.arrays(np.float64, (n_s, n_t), elements=st.floats(0.0, 0.3))),
        players=players,
        batteries=batteries,
        probabilities=np.array(weights, dtype=float) / sum(weights),
        incentive=draw(st.sampled_from([0.0, 0.05, 0.11, 0.5])),
        interval_hours=draw(st.sampled_from([1.0, 0.25])),
        cycling_penalty=draw(st.sampled_from([0.0, 1e-4])),
    )
    if draw(st.booleans()):  # shared energy per hour of quarter-hours
        inputs = dataclasses.replace(inputs, share_periods=np.arange(n_t) // 4)
    return inputs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=dispatch_inputs())
def test_lp_plan_invariants(inputs: DispatchInputs) -> None:
    result = plan_day(inputs)
    check_plan(result.plan, inputs, lp=True)
    base = no_battery_baseline(inputs)
    # idle batteries are feasible, so the LP can never do worse than the baseline
    assert result.report.objective <= base["objective"] + TOL
    # the cleaned plan prices out at the LP objective
    sc = result.plan[result.plan["scenario"] == "s0"]
    throughput = float((sc["charge_kwh"] + sc["discharge_kwh"]).sum())
    summary = result.summary
    assert summary["expected_net_cost"] + inputs.cycling_penalty_per_kwh * throughput == (
        pytest.approx(result.report.objective, abs=TOL)
    )
    assert summary["expected_net_cost"] == pytest.approx(
        summary["expected_cost"] - summary["expected_incentive"], abs=1e-12
    )
    assert summary["expected_savings"] == pytest.approx(
        summary["no_battery_net_cost"] - summary["expected_net_cost"], abs=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(inputs=dispatch_inputs())
def test_rule_based_plan_invariants(inputs: DispatchInputs) -> None:
    check_plan(rule_based_plan(inputs), inputs, lp=False)


# --------------------------------------------------------------------------------------------
# Fallback
# --------------------------------------------------------------------------------------------


def test_rule_based_plan_self_consumption() -> None:
    # own surplus 3 at t0 (capped by power 2), deficits 1 and 4 afterwards
    inputs = _inputs(
        [[[1.0, 2.0, 4.0]]],
        [[[4.0, 1.0, 0.0]]],
        [[0.3, 0.3, 0.3]],
        [[0.05, 0.05, 0.05]],
        players=("M01",),
        batteries={"M01": BatterySpec(5.0, 2.0, 1.0, initial_soc_fraction=0.2)},
    )
    rows = _rows(rule_based_plan(inputs), "s0", "M01")
    np.testing.assert_allclose(rows["charge_kwh"], [2.0, 0.0, 0.0])
    np.testing.assert_allclose(rows["discharge_kwh"], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(rows["soc_kwh"], [3.0, 2.0, 0.0])
    np.testing.assert_allclose(rows["import_kwh"], [0.0, 0.0, 2.0])
    np.testing.assert_allclose(rows["export_kwh"], [1.0, 0.0, 0.0])


def test_rule_based_plan_survives_inputs_that_make_the_lp_infeasible() -> None:
    inputs = _inputs(
        np.ones((1, 1, 4)),
        np.zeros((1, 1, 4)),
        np.full((1, 4), 0.3),
        np.zeros((1, 4)),
        players=("M03",),
        batteries={"M03": BatterySpec(6.4, 3.0, 0.9, 1.25)},
    )
    with pytest.raises(DispatchError):
        plan_day(inputs)
    check_plan(rule_based_plan(inputs), inputs, lp=False)


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------


def _one_battery(spec: BatterySpec, member: str = "M03") -> DispatchInputs:
    return _inputs(
        np.ones((1, 1, 4)),
        np.zeros((1, 1, 4)),
        np.full((1, 4), 0.3),
        np.zeros((1, 4)),
        players=(member,),
        batteries={member: spec},
        incentive=0.1,
    )


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (
            BatterySpec(6.4, 3.0, 0.9, 1.25),
            "battery of M03: initial SoC 8.0 kWh exceeds capacity 6.4 kWh",
        ),
        (
            BatterySpec(10.0, 3.0, 0.9, 0.1, min_soc_fraction=0.2),
            "battery of M03: initial SoC 1.0 kWh is below the minimum SoC 2.0 kWh",
        ),
    ],
)
def test_infeasible_soc_raises_dispatch_error_without_plan(spec: BatterySpec, reason: str) -> None:
    inputs = _one_battery(spec)
    model = build_model(inputs)
    with pytest.raises(DispatchError) as info:
        solve(model)
    err = info.value
    assert err.termination_condition in {"provenInfeasible", "infeasibleOrUnbounded"}
    assert reason in err.reason
    assert reason in str(err)
    # nothing was loaded, so no partial plan can be read
    assert all(v.value is None for v in model.component_data_objects(pyo.Var))
    with pytest.raises(DispatchError, match="no value"):
        extract_results(model, inputs)
    with pytest.raises(DispatchError):
        plan_day(inputs)
    again = pickle.loads(pickle.dumps(err))
    assert (again.termination_condition, again.reason) == (err.termination_condition, err.reason)


def test_presolve_false_infeasibility_is_rechecked() -> None:
    # Found by the property test: HiGHS presolve declares this LP infeasible when the power
    # bound is 1e-7 kWh (its feasibility tolerance), though all-idle is feasible. Model data
    # snaps such energies to 0; with the bound forced back, solve() re-checks without presolve.
    inputs = _inputs(
        np.zeros((1, 1, 3)),
        np.zeros((1, 1, 3)),
        np.zeros((1, 3)),
        np.zeros((1, 3)),
        players=("OWNER",),
        batteries={"OWNER": BatterySpec(1.0, 1e-7, 0.5, 1.0)},
        cycling_penalty=0.0,
    )
    check_plan(plan_day(inputs).plan, inputs, lp=True)
    model = build_model(inputs)
    assert model.charge["OWNER", 0].ub == 0.0
    for var in (model.charge, model.discharge):
        for v in var.values():
            v.setub(1e-7)
    report = solve(model)
    assert report.termination_condition == "convergenceCriteriaSatisfied"
    assert all(v.value is not None for v in model.component_data_objects(pyo.Var))
    assert abs(model.soc["OWNER", 2].value - 1.0) <= TOL


def test_denormal_energies_do_not_break_the_solver() -> None:
    # Found by the property test: PV of 2e-258 kWh made HiGHS stop with an error.
    inputs = _inputs(
        np.zeros((1, 1, 3)),
        np.full((1, 1, 3), 1.98890766e-258),
        np.zeros((1, 3)),
        np.zeros((1, 3)),
        players=("OWNER",),
        batteries={"OWNER": BatterySpec(0.5, 1.0, 1.0, 0.0)},
        cycling_penalty=0.0,
    )
    check_plan(plan_day(inputs).plan, inputs, lp=True)


def test_shared_energy_is_valued_per_incentive_period() -> None:
    """Quarter-hours of one hour: A exports in the first, B imports in the last. Per interval
    nothing is shared; per hour 1 kWh is, and the plan (objective and summary) counts it."""
    load = np.zeros((1, 2, 4))
    pv = np.zeros((1, 2, 4))
    pv[0, 0, 0] = 1.0
    load[0, 1, 3] = 1.0
    args = (load, pv, np.full((1, 4), 0.3), np.full((1, 4), 0.05))
    kw = dict(players=("A", "B"), incentive=0.11, interval_hours=0.25)
    per_interval = plan_day(_inputs(*args, **kw))
    hourly_inputs = dataclasses.replace(_inputs(*args, **kw), share_periods=np.zeros(4, dtype=int))
    hourly = plan_day(hourly_inputs)
    assert per_interval.summary["expected_shared_kwh"] == pytest.approx(0.0)
    assert hourly.summary["expected_shared_kwh"] == pytest.approx(1.0)
    assert hourly.report.objective == pytest.approx(0.3 - 0.05 - 0.11, abs=1e-9)
    check_plan(hourly.plan, hourly_inputs, lp=True)
    with pytest.raises(DispatchInputError, match="share_periods"):
        dataclasses.replace(hourly_inputs, share_periods=np.array([0, 2, 2, 2]))


def test_milp_tolerance_does_not_let_a_battery_discharge_below_zero() -> None:
    """A 1e-6 kWh PV reading (kept: ENERGY_EPS) with netting binaries: HiGHS's default MIP
    feasibility tolerance let the battery discharge -1e-6 kWh to place it (found by
    hypothesis); the plan must stay within bounds and cost no more than no battery."""
    spec = BatterySpec(1.0, 1.0, 1.0, 0.0, 0.0)
    inputs = _inputs(
        np.zeros((1, 1, 3)),
        np.full((1, 1, 3), 1e-6),
        np.zeros((1, 3)),
        np.zeros((1, 3)),
        players=("OWNER",),
        batteries={"OWNER": spec},
    )
    assert not inputs.simultaneous_flows_unprofitable  # the MILP path
    result = plan_day(inputs)
    check_plan(result.plan, inputs, lp=True)
    assert (result.plan["discharge_kwh"] >= 0).all()


def test_time_limit_is_reported_and_no_solution_loaded() -> None:
    inputs = _one_battery(BatterySpec(10.0, 3.0, 0.9, 0.5))
    model = build_model(inputs)
    with pytest.raises(DispatchError) as info:
        solve(model, time_limit_s=0.0)
    assert info.value.termination_condition == "maxTimeLimit"
    assert all(v.value is None for v in model.component_data_objects(pyo.Var))


# --------------------------------------------------------------------------------------------
# Structure (no solve)
# --------------------------------------------------------------------------------------------


def _structure_inputs(incentive: float, with_battery: bool) -> DispatchInputs:
    s_n, p_n, t_n = 2, 3, 4
    return _inputs(
        np.ones((s_n, p_n, t_n)),
        np.ones((s_n, p_n, t_n)),
        np.full((s_n, t_n), 0.3),
        np.full((s_n, t_n), 0.05),
        players=("M01", "M02", "OWNER"),
        batteries={"OWNER": BatterySpec(10.0, 5.0, 0.9)} if with_battery else {},
        probabilities=[0.5, 0.5],
        incentive=incentive,
    )


@pytest.mark.parametrize(
    ("incentive", "with_battery", "components", "n_vars", "n_cons"),
    [
        # S=2, P=3, B=1, T=4: battery 3*B*T=12, grid 2*S*P*T=48, shared S*T=8
        # cons: soc_balance B*T=4, soc_end B=1, balance S*P*T=24, share 2*S*T=16; no physical
        # caps (2*S*B*T=16): simultaneous flows cost 0.25 - incentive > 0, so they are implied
        (0.1, True, {"charge", "discharge", "soc", "grid_import", "grid_export", "shared"}, 68, 45),
        (0.0, True, {"charge", "discharge", "soc", "grid_import", "grid_export"}, 60, 29),
        (0.1, False, {"grid_import", "grid_export", "shared"}, 56, 40),
        (0.0, False, {"grid_import", "grid_export"}, 48, 24),
    ],
)
def test_model_structure(
    incentive: float, with_battery: bool, components: set[str], n_vars: int, n_cons: int
) -> None:
    model = build_model(_structure_inputs(incentive, with_battery))
    assert {v.local_name for v in model.component_objects(pyo.Var)} == components
    assert model.nvariables() == n_vars
    assert model.nconstraints() == n_cons
    assert all(v.value is None for v in model.component_data_objects(pyo.Var))
    # first-stage variables carry no scenario index, second-stage ones do
    if with_battery:
        assert model.charge.index_set().dimen == 2 and len(model.charge) == 4
        assert model.soc.index_set().dimen == 2
        assert not hasattr(model, "import_cap")
    assert model.grid_import.index_set().dimen == 3
    for comp in model.component_objects((pyo.Var, pyo.Constraint, pyo.Objective, pyo.Set)):
        if comp.parent_component() is comp and not comp.local_name.endswith("_index"):
            assert comp.doc, f"{comp.local_name} has no doc"
    # players without a battery carry their physical caps as variable bounds
    assert model.grid_import[0, "M01", 0].ub == 1.0
    assert model.grid_export[0, "M01", 0].ub == 1.0


@pytest.mark.parametrize(
    ("incentive", "probabilities", "caps"),
    [
        (0.1, [0.5, 0.5], False),  # spread 0.25 > incentive: implied
        (0.3, [0.5, 0.5], True),  # simultaneous flows could pay: kept (with the binaries)
        (0.1, [1.0, 0.0], True),  # a scenario without weight: its flows cost nothing
    ],
)
def test_physical_caps_are_built_only_where_they_can_bind(
    incentive: float, probabilities: list[float], caps: bool
) -> None:
    inputs = _structure_inputs(incentive, True)
    inputs = _inputs(
        inputs.load_kwh,
        inputs.pv_kwh,
        inputs.import_price,
        inputs.export_price,
        players=inputs.players,
        batteries=dict(inputs.batteries),
        probabilities=probabilities,
        incentive=incentive,
    )
    model = build_model(inputs)
    assert hasattr(model, "import_cap") == caps
    if caps:
        assert model.import_cap.index_set().dimen == 3 and len(model.import_cap) == 8


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    incentive=st.floats(0.0, 0.13),
    n_players=st.integers(2, 5),
)
def test_leaving_out_implied_caps_keeps_the_optimum_and_the_caps_hold(
    seed: int, incentive: float, n_players: int
) -> None:
    """Without the caps (simultaneous flows cost at least 0.02 per kWh here) the optimal
    objective is the capped model's, and the optimal flows meet the caps anyway."""
    rng = np.random.default_rng(seed)
    s_n, t_n = 3, 8
    players = tuple(f"M{i}" for i in range(n_players))
    inputs = _inputs(
        rng.gamma(2.0, 0.6, (s_n, n_players, t_n)),
        rng.uniform(0, 3, (s_n, n_players, t_n)) * (rng.random((1, n_players, 1)) < 0.7),
        rng.uniform(0.2, 0.5, (s_n, t_n)),
        rng.uniform(0.0, 0.05, (s_n, t_n)),
        players=players,
        batteries={p: BatterySpec(6.0, 3.0, 0.9) for p in players[: n_players - 1]},
        probabilities=list(rng.dirichlet(np.ones(s_n))),
        incentive=incentive,
    )
    lean = build_model(inputs)
    assert not hasattr(lean, "import_cap")
    rep = solve(lean)
    capped = build_model(inputs)
    dispatch._define_physical_caps(
        capped, dataclasses.replace(dispatch._ModelData.from_inputs(inputs), physical_caps=True)
    )
    assert solve(capped).objective == pytest.approx(rep.objective, abs=1e-7)
    for (s, b, t), v in lean.grid_import.items():
        if b in inputs.batteries:
            load = inputs.load_kwh[s, players.index(b), t]
            pv = inputs.pv_kwh[s, players.index(b), t]
            assert v.value - lean.charge[b, t].value <= load + 1e-6
            assert lean.grid_export[s, b, t].value - lean.discharge[b, t].value <= pv + 1e-6


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _valid_kwargs() -> dict[str, object]:
    return {
        "ts": _ts(3),
        "interval_hours": 1.0,
        "players": ("M01", "M02"),
        "batteries": {"M01": BatterySpec(5.0, 2.0, 0.9)},
        "load_kwh": np.ones((2, 2, 3)),
        "pv_kwh": np.zeros((2, 2, 3)),
        "import_price": np.full((2, 3), 0.3),
        "export_price": np.full((2, 3), 0.05),
        "probabilities": np.array([0.4, 0.6]),
        "incentive_per_kwh": 0.1,
    }


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("load_kwh", np.ones((2, 2, 4)), "load_kwh: expected shape"),
        ("pv_kwh", -np.ones((2, 2, 3)), "pv_kwh: contains negative"),
        ("load_kwh", np.full((2, 2, 3), np.nan), "load_kwh: contains NaN"),
        ("import_price", np.array([[0.3, np.inf, 0.3]] * 2), "import_price: contains NaN"),
        ("export_price", np.zeros((3,)), "export_price: expected shape"),
        ("probabilities", np.array([0.4, 0.5]), "probabilities: must sum to 1"),
        ("probabilities", np.array([1.2, -0.2]), "probabilities: contains negative"),
        ("ts", tuple(t.tz_localize(None) for t in _ts(3)), "ts: .*UTC"),
        ("ts", tuple(t.tz_convert("Europe/Rome") for t in _ts(3)), "ts: .*UTC"),
        ("ts", _ts(3, 0.5), "ts: intervals must be"),
        ("players", ("M01", "M01"), "players: .*unique"),
        ("batteries", {"X9": BatterySpec(5.0, 2.0, 0.9)}, "batteries: player 'X9'"),
        ("incentive_per_kwh", -0.1, "incentive_per_kwh"),
    ],
)
def test_invalid_inputs_name_the_field(field: str, value: object, match: str) -> None:
    kwargs = _valid_kwargs()
    kwargs[field] = value
    with pytest.raises(DispatchInputError, match=match):
        DispatchInputs(**kwargs)


def test_inputs_are_copied_read_only_and_probabilities_normalised() -> None:
    kwargs = _valid_kwargs()
    load = np.ones((2, 2, 3))
    kwargs["load_kwh"] = load
    kwargs["probabilities"] = np.array([0.4, 0.6 + 5e-10])
    inputs = DispatchInputs(**kwargs)
    load[:] = 99.0
    assert (inputs.load_kwh == 1.0).all()
    assert not inputs.load_kwh.flags.writeable
    assert inputs.probabilities.sum() == pytest.approx(1.0, abs=1e-15)
    assert inputs.scenario_labels == ("s0", "s1")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity_kwh": 0.0, "power_kw": 1.0, "round_trip_efficiency": 0.9},
        {"capacity_kwh": 5.0, "power_kw": -1.0, "round_trip_efficiency": 0.9},
        {"capacity_kwh": 5.0, "power_kw": 1.0, "round_trip_efficiency": 1.1},
        {
            "capacity_kwh": 5.0,
            "power_kw": 1.0,
            "round_trip_efficiency": 0.9,
            "min_soc_fraction": 1.5,
        },
        {"capacity_kwh": float("nan"), "power_kw": 1.0, "round_trip_efficiency": 0.9},
    ],
)
def test_invalid_battery_spec(kwargs: dict[str, float]) -> None:
    with pytest.raises(DispatchInputError, match="BatterySpec"):
        BatterySpec(**kwargs)


# --------------------------------------------------------------------------------------------
# Matrix hand-over to HiGHS against Pyomo's own HiGHS interface
# --------------------------------------------------------------------------------------------


def _handover_inputs(incentive: float = 0.1, **extra: object) -> DispatchInputs:
    rng = np.random.default_rng(7)
    s_n, p_n, t_n = 2, 3, 6
    inputs = _inputs(
        rng.uniform(0.0, 3.0, (s_n, p_n, t_n)),
        rng.uniform(0.0, 3.0, (s_n, p_n, t_n)),
        rng.uniform(0.2, 0.4, (s_n, t_n)),
        rng.uniform(0.0, 0.1, (s_n, t_n)),
        players=("M01", "M02", "OWNER"),
        batteries={
            "M01": BatterySpec(5.0, 2.0, 0.9, 0.5, min_soc_fraction=0.1),
            "OWNER": BatterySpec(10.0, 4.0, 0.85, 0.3),
        },
        probabilities=[0.3, 0.7],
        incentive=incentive,
    )
    return dataclasses.replace(inputs, **extra) if extra else inputs


def _degenerate_inputs() -> DispatchInputs:
    """Three equal batteries and flat prices: many optimal plans, HiGHS picks one by order."""
    rng = np.random.default_rng(2)
    players = ("M01", "M02", "M03", "OWNER")
    return _inputs(
        rng.uniform(0.0, 2.0, (1, 4, 8)).round(1),
        rng.uniform(0.0, 3.0, (1, 4, 8)).round(1),
        np.full((1, 8), 0.3),
        np.full((1, 8), 0.05),
        players=players,
        batteries={p: BatterySpec(5.0, 2.0, 0.9, 0.5) for p in players[1:]},
        incentive=0.1,
    )


def _fix_first_moves(model: pyo.ConcreteModel) -> None:
    """As the closed-loop controller does: the first interval's battery moves are fixed."""
    model.charge["M01", 0].fix(0.5)
    model.discharge["M01", 0].fix(0.0)
    model.charge["OWNER", 0].fix(0.0)
    model.discharge["OWNER", 0].fix(1.2)


def _ranged_and_constant(model: pyo.ConcreteModel) -> None:
    model.soc_window = pyo.Constraint(expr=pyo.inequality(2.0, model.soc["OWNER", 2], 3.5))
    model.objective.set_value(model.objective.expr + 2.5)


def _no_change(model: pyo.ConcreteModel) -> None:
    del model


_HANDOVER_CASES = {
    "lp": (_handover_inputs, _no_change),
    # the incentive exceeds the import/export spread: netting binaries make it a MILP
    "milp": (lambda: _handover_inputs(incentive=0.5), _no_change),
    "grid_terms": (
        lambda: _handover_inputs(
            ramping_penalty_per_kwh=0.02,
            previous_community_net_kwh=1.5,
            peak_charge_per_kwh=0.1,
            feeder_cap_kwh=6.0,
            terminal_soc_value_per_kwh=0.15,
            import_limit_kwh=np.array([4.0, np.inf, 8.0]),
        ),
        _no_change,
    ),
    "fixed_vars": (_handover_inputs, _fix_first_moves),
    "degenerate": (_degenerate_inputs, _no_change),
    "ranged_and_constant": (_handover_inputs, _ranged_and_constant),
}


def _reference_solve(model: pyo.ConcreteModel) -> tuple[str, float | None]:
    """Termination name and objective from Pyomo's persistent HiGHS interface [currency]."""
    results = ContribSolverFactory("highs").solve(
        model,
        load_solutions=False,
        raise_exception_on_nonoptimal_result=False,
        solver_options=dict(HIGHS_OPTIONS),
    )
    name = results.termination_condition.name
    if name != "convergenceCriteriaSatisfied":
        return name, None
    results.solution_loader.load_vars()
    return name, float(pyo.value(model.objective))


@pytest.mark.parametrize("case", sorted(_HANDOVER_CASES))
def test_matrix_handover_matches_pyomo_highs_interface(case: str) -> None:
    make_inputs, modify = _HANDOVER_CASES[case]
    inputs = make_inputs()
    model, reference = build_model(inputs), build_model(inputs)
    modify(model)
    modify(reference)
    assert hasattr(model, "importing") == (case == "milp")
    report = solve(model)
    name, expected = _reference_solve(reference)
    assert (report.termination_condition, name) == ("convergenceCriteriaSatisfied",) * 2
    assert report.objective == pytest.approx(expected, rel=1e-6, abs=1e-9)
    # the loaded values reproduce the objective, its constant included
    assert float(pyo.value(model.objective)) == pytest.approx(report.objective, rel=1e-9)
    for v in model.component_data_objects(pyo.Var):
        assert v.value is not None, v.name
        lo, hi = v.bounds
        assert lo is None or v.value >= lo - 1e-7, v.name
        assert hi is None or v.value <= hi + 1e-7, v.name
    # the columns go to HiGHS in the interface's order: the same vertex of the degenerate LP
    # (not only the same objective), so closed-loop runs do not drift
    for v, ref in zip(
        model.component_data_objects(pyo.Var),
        reference.component_data_objects(pyo.Var),
        strict=True,
    ):
        assert ref.value is None or v.value == pytest.approx(ref.value, abs=1e-8), v.name
    if case == "fixed_vars":
        assert model.charge["M01", 0].fixed and model.charge["M01", 0].value == 0.5
        assert model.discharge["OWNER", 0].fixed and model.discharge["OWNER", 0].value == 1.2
    plan = extract_results(model, inputs)
    assert len(plan) == (inputs.n_scenarios + 1) * len(inputs.players) * inputs.n_intervals


def _beyond_capacity(model: pyo.ConcreteModel) -> None:
    # OWNER starts at 3 of 10 kWh: charging 4 kWh in each of the first 3 intervals overflows
    for t in range(3):
        model.charge["OWNER", t].fix(4.0)
        model.discharge["OWNER", t].fix(0.0)


def _violated_row_of_fixed_vars(model: pyo.ConcreteModel) -> None:
    model.charge["M01", 1].fix(1.0)
    model.cap_of_fixed = pyo.Constraint(expr=model.charge["M01", 1] <= 0.5)


def _violated_row_without_vars(model: pyo.ConcreteModel) -> None:
    # the compiler rejects it itself (InfeasibleConstraintException)
    model.level = pyo.Param(mutable=True, initialize=1.0)
    model.constant_row = pyo.Constraint(expr=model.level <= 0.5)


@pytest.mark.parametrize(
    ("case", "make_inputs", "modify", "reason"),
    [
        (
            "soc_conflict",
            lambda: _one_battery(BatterySpec(6.4, 3.0, 0.9, 1.25)),
            _no_change,
            "battery of M03: initial SoC 8.0 kWh exceeds capacity 6.4 kWh",
        ),
        (
            "fixed_beyond_capacity",
            _handover_inputs,
            _beyond_capacity,
            "infeasible, also without presolve",
        ),
        (
            "violated_row_of_fixed_vars",
            _handover_inputs,
            _violated_row_of_fixed_vars,
            "infeasible, also without presolve",
        ),
        (
            "violated_row_without_vars",
            _handover_inputs,
            _violated_row_without_vars,
            "infeasible, also without presolve",
        ),
    ],
)
def test_matrix_handover_infeasible_codes_match_pyomo_highs_interface(
    case: str,
    make_inputs: Callable[[], DispatchInputs],
    modify: Callable[[pyo.ConcreteModel], None],
    reason: str,
) -> None:
    inputs = make_inputs()
    model, reference = build_model(inputs), build_model(inputs)
    modify(model)
    modify(reference)
    with pytest.raises(DispatchError) as info:
        solve(model)
    name, _ = _reference_solve(reference)
    assert info.value.termination_condition == name, case
    assert name in {"provenInfeasible", "infeasibleOrUnbounded"}
    assert reason in info.value.reason
    assert all(v.value is None for v in model.component_data_objects(pyo.Var))
