"""EVs in the dispatch LP (optimisation.ev): charging inside the stay, to the energy needed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimisation.dispatch import DispatchInputError, DispatchInputs, plan_day
from optimisation.ev import EvSpec

DT = 0.25
T_N = 96
SUN = np.clip(np.sin((np.arange(T_N) * DT - 6.0) / 12 * np.pi), 0, None)


def home_and_roof(base_kw: float, pv_kw: float, **kw) -> DispatchInputs:
    """A home ``A`` with a flat base load and a roof ``ROOF`` with PV, on one quarter-hour
    summer day, one scenario; ``kw`` adds the assets."""
    pv = np.zeros((1, 2, T_N))
    pv[0, 1] = pv_kw * SUN * DT
    return DispatchInputs(
        ts=tuple(
            pd.Timestamp("2025-07-15", tz="UTC") + pd.Timedelta(minutes=15 * k) for k in range(T_N)
        ),
        interval_hours=DT,
        players=("A", "ROOF"),
        batteries={},
        load_kwh=np.full((1, 2, T_N), base_kw * DT),
        pv_kwh=pv,
        export_price=np.full((1, T_N), 0.05),
        probabilities=np.ones(1),
        incentive_per_kwh=0.10,
        **kw,
    )


def _inputs(evs: dict, pv_kw: float = 6.0, limit_kw: float | None = None) -> DispatchInputs:
    lim = None if limit_kw is None else np.array([limit_kw * DT, np.inf])
    return home_and_roof(
        0.3,
        pv_kw,
        import_price=np.where((np.arange(T_N) >= 68) & (np.arange(T_N) < 84), 0.45, 0.25)[None],
        import_limit_kwh=lim,
        evs=evs,
    )


def test_an_ev_charges_inside_its_stay_to_its_need_and_in_the_sun():
    ev = EvSpec(owner="A", arrival=32, departure=72, energy_kwh=10.0, max_power_kw=7.4)
    res = plan_day(_inputs({"car": ev}))
    e = res.ev
    charge = e["charge_kwh"].to_numpy()
    assert charge[:32].sum() == 0 and charge[72:].sum() == 0
    assert e["delivered_kwh"].iloc[0] == pytest.approx(10.0, abs=1e-6)
    assert e["shortfall_kwh"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    sunny = SUN > 0.5
    assert charge[sunny].sum() / charge.sum() > 0.8  # it follows the roof
    # its electricity is in its owner's load in the plan
    exp = res.plan[(res.plan["scenario"] == "expected") & (res.plan["member_id"] == "A")]
    np.testing.assert_allclose(exp.sort_values("ts")["load_kwh"], 0.3 * DT + charge, atol=1e-9)


def test_a_need_the_stay_cannot_meet_is_refused_naming_member_ev_and_field():
    ev = EvSpec(owner="A", arrival=80, departure=84, energy_kwh=20.0, max_power_kw=7.4)
    with pytest.raises(DispatchInputError, match=r"member 'A', EV 'car', field 'energy_kwh'"):
        _inputs({"car": ev})
    with pytest.raises(DispatchInputError, match=r"EV 'car', field 'departure'"):
        _inputs({"car": EvSpec(owner="A", arrival=90, departure=100, energy_kwh=1, max_power_kw=3)})
    with pytest.raises(DispatchInputError, match="owner 'Z' is not a player"):
        _inputs({"car": EvSpec(owner="Z", arrival=0, departure=4, energy_kwh=1, max_power_kw=3)})


def test_a_contracted_power_that_leaves_no_room_gives_a_plan_with_the_shortfall_named():
    ev = EvSpec(owner="A", arrival=32, departure=40, energy_kwh=10.0, max_power_kw=11.0)
    res = plan_day(_inputs({"car": ev}, limit_kw=3.0))  # 3 kW connection, 0.3 kW base load
    row = res.ev.iloc[0]
    assert row["ev_id"] == "car" and row["member_id"] == "A"
    most = 0.92 * (3.0 - 0.3) * DT * 8
    assert row["delivered_kwh"] == pytest.approx(most, rel=1e-6)
    assert row["shortfall_kwh"] == pytest.approx(10.0 - most, rel=1e-6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrival=st.integers(0, 90),
    length=st.integers(1, 40),
    power=st.floats(1.0, 11.0),
    share=st.floats(0.0, 1.0),
)
def test_every_ev_reaches_what_its_stay_allows(arrival, length, power, share):
    departure = min(arrival + length, T_N)
    need = share * 0.92 * power * DT * (departure - arrival)
    ev = EvSpec(
        owner="A", arrival=arrival, departure=departure, energy_kwh=need, max_power_kw=power
    )
    res = plan_day(_inputs({"car": ev}))
    charge = res.ev["charge_kwh"].to_numpy()
    assert (charge >= 0).all() and (charge <= power * DT + 1e-9).all()
    assert charge[:arrival].sum() == 0 and charge[departure:].sum() == 0
    assert 0.92 * charge.sum() >= need - 1e-6
    assert res.ev["shortfall_kwh"].iloc[0] < 1e-6
