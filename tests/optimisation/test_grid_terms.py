"""Grid-aware terms of the dispatch LP: ramping, peak, limits, terminal value, netting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from optimisation.control import DayFlows
from optimisation.dispatch import BatterySpec, DispatchInputs, plan_day
from optimisation.evaluation import day_totals, period_kpis

T = 8
PRICE = np.array([[0.2, 0.2, 0.2, 0.2, 0.5, 0.5, 0.5, 0.5]])


def _inputs(**kw: object) -> DispatchInputs:
    base = dict(
        ts=tuple(pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(hours=i) for i in range(T)),
        interval_hours=1.0,
        players=("A", "B"),
        batteries={"A": BatterySpec(10.0, 5.0, 0.9, 0.1), "B": BatterySpec(10.0, 5.0, 0.9, 0.1)},
        load_kwh=np.full((1, 2, T), 1.0),
        pv_kwh=np.zeros((1, 2, T)),
        import_price=PRICE,
        export_price=np.full((1, T), 0.05),
        probabilities=np.ones(1),
        incentive_per_kwh=0.0,
    )
    base.update(kw)
    return DispatchInputs(**base)


def _community_net(plan: pd.DataFrame) -> np.ndarray:
    p = plan[plan["scenario"] == "s0"]
    return (p["import_kwh"] - p["export_kwh"]).groupby(p["ts"]).sum().to_numpy()


def test_ramping_penalty_flattens_the_community_exchange() -> None:
    free = plan_day(_inputs()).plan
    flat = plan_day(_inputs(ramping_penalty_per_kwh=0.2)).plan
    ramp = lambda p: np.abs(np.diff(_community_net(p))).sum()  # noqa: E731
    assert ramp(flat) < ramp(free) - 1.0


def test_peak_charge_lowers_the_highest_import() -> None:
    free = plan_day(_inputs()).plan
    peaked = plan_day(_inputs(peak_charge_per_kwh=1.0)).plan
    assert _community_net(peaked).max() < _community_net(free).max() - 0.5


def test_contracted_limit_and_feeder_cap_hold() -> None:
    res = plan_day(_inputs(import_limit_kwh=np.array([2.5, np.inf]), feeder_cap_kwh=4.0)).plan
    p = res[res["scenario"] == "s0"]
    assert p.loc[p["member_id"] == "A", "import_kwh"].max() <= 2.5 + 1e-6
    assert np.abs(_community_net(res)).max() <= 4.0 + 1e-6


def test_terminal_value_frees_the_end_soc() -> None:
    cyclic = plan_day(_inputs()).plan
    free = plan_day(_inputs(terminal_soc_value_per_kwh=0.0)).plan
    last = lambda p: p[p["scenario"] == "s0"].sort_values("ts").groupby("member_id").soc_kwh.last()  # noqa: E731
    assert np.allclose(last(cyclic), 1.0)  # ends where it started (10 % of 10 kWh)
    assert (last(free) < 1.0 - 1e-6).all()  # nothing is worth keeping: it is used up


def test_netting_binaries_forbid_incentive_farming() -> None:
    # incentive 0.5 > spread 0.2 - 0.05: gross import and export would farm the incentive
    inputs = _inputs(
        incentive_per_kwh=0.5,
        import_price=np.full((1, T), 0.2),
        pv_kwh=np.full((1, 2, T), 1.0),
    )
    assert not inputs.simultaneous_flows_unprofitable
    p = plan_day(inputs).plan
    assert (np.minimum(p["import_kwh"], p["export_kwh"]) <= 1e-6).all()
    assert dataclasses.replace(inputs, incentive_per_kwh=0.1).simultaneous_flows_unprofitable


def test_carbon_needs_intensity() -> None:
    with pytest.raises(ValueError, match="carbon_intensity"):
        _inputs(carbon_price_per_kg=0.1)


def test_day_totals_by_hand() -> None:
    imp = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    exp = np.array([[0.0, 0.0, 0.0], [0.5, 3.0, 0.0]])
    z = np.zeros((2, 3))
    f = DayFlows(z, z, np.array([[0, 0, 1.0], [0, 0, 2.0]]), imp, exp, np.array(["rule"] * 3))
    t = day_totals(f, np.array([0.2, 0.2, 0.4]), np.full(3, 0.05), 0.1, np.full(3, 0.5), 10.0)
    assert t["grid_cost"] == pytest.approx(1.0 * 0.2 + 2 * 0.4 - 3.5 * 0.05)
    assert t["shared_kwh"] == pytest.approx(0.5)
    assert t["net_cost"] == pytest.approx(t["grid_cost"] - 0.05)
    assert t["ramping_kwh"] == pytest.approx(abs(-3 - 0.5) + abs(2 + 3))
    assert t["peak_import_kwh"] == pytest.approx(2.0)
    assert t["co2_kg"] == pytest.approx((0.5 + 2.0) * 0.5)
    assert t["benefit"] == pytest.approx(10.0 - t["net_cost"])
    assert t["end_soc_kwh"] == pytest.approx(3.0)


def test_period_kpis_are_ratios_to_no_battery() -> None:
    ts = pd.date_range("2025-01-01", periods=2, freq="h", tz="UTC")
    rows = []
    for c, e in (("no_battery", [2.0, 4.0]), ("ecm", [3.0, 3.0])):
        for t, v in zip(ts, e, strict=True):
            rows.append(
                {
                    "controller": c,
                    "ts": t,
                    "day": "d",
                    "import_kwh": v,
                    "export_kwh": 0.0,
                    "import_price": 1.0,
                }
            )
    k = period_kpis(pd.DataFrame(rows))
    assert k.loc["ecm", "cost"] == pytest.approx(1.0)
    assert k.loc["ecm", "ramping"] == pytest.approx(0.0)
    assert k.loc["ecm", "one_minus_load_factor"] == pytest.approx(0.0)
    assert k.loc["no_battery", "one_minus_load_factor_abs"] == pytest.approx(1 - 3 / 4)
