"""Synthetic dispatch problems of any size, and the ``ecm bench dispatch`` measurement."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from optimisation.dispatch import (
    BatterySpec,
    DispatchError,
    DispatchInputs,
    build_model,
    is_large,
    solve,
)
from optimisation.dispatch_matrix import build_matrix, large_options, solve_matrix

BATTERY_SIZES_KWH = (5.0, 6.4, 10.0, 13.5)


def dispatch_case(
    n_members: int, n_scenarios: int, n_intervals: int = 24, seed: int = 0
) -> DispatchInputs:
    """A day-ahead dispatch problem shaped like a residential community.

    Every member has a battery (the hard case: each adds first-stage variables) of 5 to
    13.5 kWh at C/2 and rooftop PV of 2 to 4 kW peak on a clear-sky-like shape; loads are
    gamma-distributed per interval (mean 1 kW); scenarios differ in load and PV. Import is on
    a time-of-use tariff (0.22, 0.54 from 16:00 to 21:00 [currency/kWh]), export 0.05, the
    sharing incentive 0.10 [currency/kWh].

    Parameters
    ----------
    n_members, n_scenarios, n_intervals : int
        Problem size; the day is split into ``n_intervals`` equal intervals.
    seed : int
        Seed of the draws.

    Returns
    -------
    DispatchInputs
    """
    rng = np.random.default_rng(seed)
    dt_h = 24.0 / n_intervals
    hours = np.arange(n_intervals) * dt_h
    sun = np.clip(np.sin((hours - 6) / 12 * np.pi), 0, None)
    load = rng.gamma(2.0, 0.5, (n_scenarios, n_members, n_intervals)) * dt_h
    pv = sun[None, None, :] * rng.uniform(2, 4, (n_scenarios, n_members, 1)) * dt_h
    price = np.where((hours >= 16) & (hours < 21), 0.54, 0.22)[None, :].repeat(n_scenarios, 0)
    sizes = rng.choice(BATTERY_SIZES_KWH, n_members)
    bats = {
        f"P{i:04d}": BatterySpec(float(sizes[i]), float(sizes[i]) / 2, 0.9)
        for i in range(n_members)
    }
    start = pd.Timestamp("2017-06-14 07:00", tz="UTC")
    return DispatchInputs(
        ts=tuple(start + pd.Timedelta(hours=float(h)) for h in hours),
        interval_hours=dt_h,
        players=tuple(bats),
        batteries=bats,
        load_kwh=load,
        pv_kwh=pv,
        import_price=price,
        export_price=np.full((n_scenarios, n_intervals), 0.05),
        probabilities=np.full(n_scenarios, 1 / n_scenarios),
        incentive_per_kwh=0.10,
    )


def bench_dispatch(
    n_members: int,
    n_intervals: int,
    n_scenarios: int,
    seed: int = 0,
    time_limit_s: float = 1800.0,
) -> dict[str, Any]:
    """Build and solve :func:`dispatch_case`; return the measurement.

    Returns
    -------
    dict
        ``members, intervals, scenarios, variables, constraints, build_s, solve_s, total_s,
        status, objective`` (seconds [s], objective [currency], None when not solved) and
        ``path``: the build and solver :func:`~optimisation.dispatch.plan_day` uses at this
        size (Pyomo with interior point and crossover, or matrices with HiPO).
    """
    if min(n_members, n_intervals, n_scenarios) < 1:
        raise ValueError("members, intervals and scenarios must be at least 1")
    inputs = dispatch_case(n_members, n_scenarios, n_intervals, seed)
    status, objective = "optimal", None
    t0 = time.perf_counter()
    if is_large(inputs):  # the path plan_day takes: matrices and HiPO
        lp = build_matrix(inputs)
        t1 = time.perf_counter()
        options = large_options()
        path = f"matrix, {options['solver']}"
        try:
            objective = round(float(solve_matrix(lp, time_limit_s, options).objective), 6)
        except DispatchError as err:
            status = f"failed: {err}"
        size = lp.a.shape[::-1]
    else:
        model = build_model(inputs)
        t1 = time.perf_counter()
        path = "pyomo, ipm + crossover"
        try:
            objective = round(solve(model, time_limit_s=time_limit_s).objective, 6)
        except DispatchError as err:
            status = f"failed: {err}"
        size = (model.nvariables(), model.nconstraints())
    t2 = time.perf_counter()
    return {
        "members": n_members,
        "intervals": n_intervals,
        "scenarios": n_scenarios,
        "variables": int(size[0]),
        "constraints": int(size[1]),
        "build_s": round(t1 - t0, 2),
        "solve_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
        "status": status,
        "objective": objective,
        "path": path,
    }


def bench_flexible(
    data: Any,
    evs: dict[str, dict[str, float]],
    *,
    import_price: float,
    export_price: float,
    incentive: float,
    contracted_kw: float,
    charger_kw: float,
) -> dict[str, Any]:
    """Plan a community with air conditioners, batteries and EVs in one LP; time it.

    ``data`` as :func:`optimisation.study.run_study` takes it; ``evs`` by id: ``owner``,
    ``arrival``, ``departure`` (intervals) and ``energy_kwh``, charged at ``charger_kw``.

    Returns
    -------
    dict
        ``members, intervals, scenarios, evs, variables, constraints, build_s, solve_s,
        total_s, status, objective, comfort_violations, ev_shortfall_kwh``.
    """
    from optimisation.ev import EvSpec
    from optimisation.study import study_inputs

    inputs = study_inputs(
        data,
        import_price=import_price,
        export_price=export_price,
        incentive=incentive,
        contracted_kw=contracted_kw,
        evs={e: EvSpec(max_power_kw=charger_kw, **v) for e, v in evs.items()},
    )
    t_n, s_n = inputs.n_intervals, len(inputs.probabilities)
    t0 = time.perf_counter()
    model = build_model(inputs)
    t1 = time.perf_counter()
    status, objective, violations, short = "optimal", None, None, None
    try:
        objective = round(solve(model).objective, 6)
        from optimisation.dispatch import ev_schedule, extract_hvac
        from optimisation.ev import ev_frame

        violations = int((extract_hvac(model, inputs)["outside_band_k"] > 0.05).sum())
        ev = ev_frame(inputs.evs, ev_schedule(model, inputs), pd.DatetimeIndex(inputs.ts))
        short = round(float(ev.groupby("ev_id")["shortfall_kwh"].first().sum()), 6)
    except DispatchError as err:
        status = f"failed: {err}"
    t2 = time.perf_counter()
    return {
        "members": len(inputs.hvac or {}),
        "intervals": t_n,
        "scenarios": s_n,
        "evs": len(evs),
        "variables": int(model.nvariables()),
        "constraints": int(model.nconstraints()),
        "build_s": round(t1 - t0, 2),
        "solve_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
        "status": status,
        "objective": objective,
        "comfort_violations": violations,
        "ev_shortfall_kwh": short,
    }
