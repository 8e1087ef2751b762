"""The four scenarios of the Italian renewable-energy-community study: air conditioners and
batteries each run without optimisation (thermostat, idle) or planned by the dispatch LP.

A scenario's figures are expected values over the day's load and PV scenarios:

- ``revenue``: the sharing incentive, ``incentive x sum over hours of min(injection,
  withdrawal)`` [currency];
- ``final_cost``: the members' grid bills (import at the import price, the plant's injection
  paid at the export price) minus the revenue [currency];
- ``comfort_violations``: apartment quarter-hours more than 0.05 K outside the comfort band;
- ``bill_margin``: per apartment, its cost in scenario 0 minus its cost here (the study's
  participation rule asks it to be >= 0). It is checked on the cost after sharing, not put in
  the LP as a bound on each grid bill: the apartments own no PV, so any battery move raises
  an apartment's own grid bill by its losses, and that bound would forbid every one (tried:
  scenario 2 fell back to scenario 0's figures);
- ``members_worse_off``: apartments whose cost, their own import bill minus their share of
  the plant's export revenue and of the incentive (both shared pro rata to their expected
  withdrawal), is more than half a cent above the same cost without optimisation (scenario 0).

Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from optimisation.dispatch import BatterySpec, DispatchInputs, plan_day
from optimisation.ev import EvSpec
from optimisation.hvac import HvacSpec, thermostat

SCENARIOS = ((0, False, False), (1, True, False), (2, False, True), (3, True, True))
"""``(scenario, hvac_optimised, battery_optimised)``, as the study numbers them."""
COMFORT_TOLERANCE_K = 0.05


@dataclass
class ScenarioResult:
    """One scenario's figures and detail."""

    scenario: int
    hvac_optimised: bool
    battery_optimised: bool
    revenue: float
    final_cost: float
    comfort_violations: int
    members_worse_off: int
    member_cost: dict[str, float]
    """per apartment, its cost as defined in the module notes [currency]"""
    bill_margin: dict[str, float]
    """per apartment, its cost without optimisation (scenario 0) minus this scenario's: >= 0
    where the bill is no worse [currency]"""
    temperatures: pd.DataFrame
    """``member_id, ts, indoor_temp_c, hvac_kwh`` per apartment and interval"""
    shared_kwh: float

    def row(self) -> dict[str, Any]:
        """The JSON row of ``ecm study italian-rec --json``."""
        return {
            "scenario": self.scenario,
            "hvac_optimised": self.hvac_optimised,
            "battery_optimised": self.battery_optimised,
            "revenue": round(self.revenue, 2),
            "final_cost": round(self.final_cost, 2),
            "comfort_violations": self.comfort_violations,
            "members_worse_off": self.members_worse_off,
        }


def study_inputs(
    data: Any,
    *,
    import_price: float,
    export_price: float,
    incentive: float,
    contracted_kw: float,
    load_kwh: np.ndarray | None = None,
    batteries: bool = True,
    hvac: bool = True,
    evs: Mapping[str, EvSpec] | None = None,
) -> DispatchInputs:
    """The day-ahead LP's inputs of the study's community (``run_study``'s ``data``): flat
    prices [currency/kWh], the contracted power of each apartment with an air conditioner
    [kW], the incentive on hourly shared energy, and the batteries, air conditioners and EVs
    that are planned (``load_kwh`` replaces the data's load, e.g. with thermostat power)."""
    ts = pd.DatetimeIndex(data.ts)
    s_n, t_n, dt_h = len(data.probabilities), len(ts), (ts[1] - ts[0]).total_seconds() / 3600
    specs = {a: HvacSpec(**p) for a, p in data.hvac.items()}
    return DispatchInputs(
        ts=tuple(ts),
        interval_hours=dt_h,
        players=tuple(data.players),
        batteries={a: BatterySpec(**b) for a, b in data.batteries.items()} if batteries else {},
        load_kwh=data.load_kwh if load_kwh is None else load_kwh,
        pv_kwh=data.pv_kwh,
        import_price=np.full((s_n, t_n), import_price),
        export_price=np.full((s_n, t_n), export_price),
        probabilities=data.probabilities,
        incentive_per_kwh=incentive,
        import_limit_kwh=np.array(
            [contracted_kw * dt_h if p in specs else np.inf for p in data.players]
        ),
        share_periods=_hours(ts),
        hvac=specs if hvac else None,
        outdoor_temp_c=data.outdoor_temp_c if hvac else None,
        evs=evs,
    )


def run_study(
    data: Any,
    *,
    import_price: float,
    export_price: float,
    incentive: float,
    contracted_kw: float,
    setpoint_c: float,
    gain_kw_per_k: float,
) -> list[ScenarioResult]:
    """Run the four scenarios on ``data`` (``models.italian_rec.StudyData``: ``ts``,
    ``players``, ``load_kwh`` and ``pv_kwh`` (S, P, T) [kWh], ``probabilities``,
    ``outdoor_temp_c`` (T,) [degC], ``hvac`` and ``batteries`` parameters per apartment).

    Prices and the incentive in [currency/kWh]; contracted power per apartment [kW]; the
    thermostat's set-point [degC] and gain [kW/K] for the scenarios without optimisation.

    Returns
    -------
    list of ScenarioResult
        Scenarios 0 to 3.
    """
    ts = pd.DatetimeIndex(data.ts)
    dt_h = (ts[1] - ts[0]).total_seconds() / 3600
    players = tuple(data.players)
    specs = {a: HvacSpec(**p) for a, p in data.hvac.items()}
    thermo = {
        a: thermostat(s, data.outdoor_temp_c, dt_h, setpoint_c, gain_kw_per_k)
        for a, s in specs.items()
    }
    rows = {p: i for i, p in enumerate(players)}
    results: list[ScenarioResult] = []
    for number, hvac_opt, bat_opt in SCENARIOS:
        load = np.array(data.load_kwh, dtype=float)
        if not hvac_opt:
            for a, (power, _) in thermo.items():
                load[:, rows[a]] += power[None, :]
        inputs = study_inputs(
            data,
            import_price=import_price,
            export_price=export_price,
            incentive=incentive,
            contracted_kw=contracted_kw,
            load_kwh=load,
            batteries=bat_opt,
            hvac=hvac_opt,
        )
        res = plan_day(inputs)
        temps = _temperatures(specs, thermo, res.hvac, ts, hvac_opt)
        results.append(
            ScenarioResult(
                scenario=number,
                hvac_optimised=hvac_opt,
                battery_optimised=bat_opt,
                revenue=res.summary["expected_incentive"],
                final_cost=res.summary["expected_cost"] - res.summary["expected_incentive"],
                comfort_violations=int((temps["outside_band_k"] > COMFORT_TOLERANCE_K).sum()),
                members_worse_off=0,
                member_cost=_member_costs(res.plan, specs, res.summary),
                bill_margin={},
                temperatures=temps,
                shared_kwh=res.summary["expected_shared_kwh"],
            )
        )
    base = results[0].member_cost
    for r in results:
        r.bill_margin = {a: base[a] - r.member_cost[a] for a in base}
        r.members_worse_off = sum(m < -0.005 for m in r.bill_margin.values())
    return results


def _hours(ts: pd.DatetimeIndex) -> np.ndarray:
    """Incentive period (the UTC hour, equal to the local hour in whole-hour zones) of each
    quarter-hour: 0, 0, 0, 0, 1, ..."""
    hour = ts.floor("h")
    return pd.factorize(hour)[0].astype(np.int64)


def _temperatures(
    specs: dict[str, HvacSpec],
    thermo: dict[str, tuple[np.ndarray, np.ndarray]],
    planned: pd.DataFrame | None,
    ts: pd.DatetimeIndex,
    hvac_opt: bool,
) -> pd.DataFrame:
    if hvac_opt:
        assert planned is not None
        return planned[["member_id", "ts", "hvac_kwh", "indoor_temp_c", "outside_band_k"]]
    frames = []
    for a, spec in specs.items():
        power, temps = thermo[a]
        lo, hi = spec.band(len(ts))
        frames.append(
            pd.DataFrame(
                {
                    "member_id": a,
                    "ts": ts,
                    "hvac_kwh": power,
                    "indoor_temp_c": temps,
                    "outside_band_k": np.maximum(lo - temps, 0) + np.maximum(temps - hi, 0),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _member_costs(
    plan: pd.DataFrame, specs: dict[str, HvacSpec], summary: dict[str, float]
) -> dict[str, float]:
    """Per apartment: expected import bill minus its pro-rata (expected withdrawal) share of
    the plant's export revenue and of the incentive [currency]."""
    exp = plan[plan["scenario"] == "expected"]
    bill = exp["import_kwh"] * exp["import_price"] - exp["export_kwh"] * exp["export_price"]
    by_member = bill.groupby(exp["member_id"]).sum()
    withdrawal = exp["import_kwh"].groupby(exp["member_id"]).sum()
    apartments = list(specs)
    plant_credit = -float(by_member.drop(apartments).sum())  # the plant's export revenue
    pool = plant_credit + summary["expected_incentive"]
    w = withdrawal[apartments]
    share = w / w.sum() if w.sum() > 0 else pd.Series(1 / len(apartments), index=apartments)
    return {a: float(by_member[a] - share[a] * pool) for a in apartments}
