"""Closed-loop battery control on the metered day: the simple rules, ECM's real-time layer and
the perfect-foresight bound, each replayed interval by interval with the state of charge carried.

A day-ahead schedule fixed at midnight cannot track per-home loads whose forecasts miss by about
half their mean: following its setpoints turns every forecast error into a wrong battery move
(``../shared/design/real-time-control.md``). ECM's real-time layer therefore runs
**self-consumption on the actual interval plus only the plan's deliberate deviations**, with the
plan re-optimised every interval (receding horizon) from forecasts updated with the newest
metered interval:

* ``extra_charge``: energy the plan buys beyond the forecast surplus (charging at a cheap price);
* ``hold``: the part of a forecast deficit the plan leaves to the grid (keeping stored energy for
  a dearer hour), i.e. forecast deficit minus planned discharge;
* ``extra_discharge``: discharge beyond the forecast deficit (exporting stored energy where the
  community can share it).

Each is sized from the plan's own numbers and applied to the actual interval, on top of the
greedy rule. Where the plan has no reason to deviate, the layer *is* the self-consumption rule.
A deviation must also pay: the plan is re-solved with the rule's move fixed in the interval, and
the deviation is kept only if it lowers the plan's cost by a margin per kWh deviated
(``deviation_margin_fraction``). On a flat price block (e.g. a two-rate HT/NT tariff) the LP is
indifferent between discharging now or in any later hour of the block, and without this test
those arbitrary ties became "hold" moves that forecast errors turned into losses.

Home batteries act on their home's net load; the shared battery acts on the community's net
position after the home batteries (its owner has a plant and no load). Every controller sees the
same metered data; none gets free energy at midnight: the state of charge at the end of a day is
the start of the next.

The controllers are

* ``no_battery``: batteries idle;
* ``self_consumption``: the greedy rule (charge on surplus, discharge on deficit) per battery;
* ``ecm``: the rule plus the deviations of an interval-by-interval re-optimisation
  (:func:`run_ecm`); a failed solve falls back to the rule for that interval, labelled
  ``fallback_rule``;
* ``perfect_foresight``: the same optimisation solved once on the actual day (and the next
  day's actuals as look-ahead), the bound no forecast-driven controller can beat.

Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from optimisation.allocation import incentive_periods
from optimisation.dispatch import BatterySpec, DispatchError, DispatchInputs
from optimisation.dispatch_matrix import MatrixLP, build_matrix, solve_matrix

CONTROLLERS: tuple[str, ...] = ("no_battery", "self_consumption", "ecm", "perfect_foresight")
"""Controllers evaluated side by side, in report order."""

DEVIATION_TOL = 1e-3
"""Planned deviations below this are solver noise and ignored [kWh]."""


class ControlInputError(ValueError):
    """Control inputs are malformed; the message names the field."""


@dataclass(frozen=True)
class Fleet:
    """The batteries of a community as arrays over players.

    Parameters
    ----------
    players : tuple of str
        Member ids, then the community owner id.
    batteries : Mapping[str, BatterySpec]
        Battery per player (players without one are absent).
    interval_hours : float
        Interval length [h].
    shared_player : str, optional
        Player whose battery serves the community's net position (the community owner).
    """

    players: tuple[str, ...]
    batteries: Mapping[str, BatterySpec]
    interval_hours: float
    shared_player: str | None = None
    capacity: np.ndarray = field(init=False, repr=False)
    max_energy: np.ndarray = field(init=False, repr=False)
    eta: np.ndarray = field(init=False, repr=False)
    min_soc: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.shared_player is not None and self.shared_player not in self.players:
            raise ControlInputError(f"shared_player {self.shared_player!r} is not a player")

        def arr(f: Callable[[BatterySpec], float]) -> np.ndarray:
            return np.array(
                [f(self.batteries[p]) if p in self.batteries else 0.0 for p in self.players]
            )

        object.__setattr__(self, "capacity", arr(lambda b: b.capacity_kwh))
        object.__setattr__(self, "max_energy", arr(lambda b: b.power_kw * self.interval_hours))
        object.__setattr__(self, "eta", arr(lambda b: b.efficiency) + (self.capacity == 0))
        object.__setattr__(self, "min_soc", arr(lambda b: b.min_soc_kwh))

    @property
    def shared_index(self) -> int | None:
        """Row of the shared player, or None."""
        return None if self.shared_player is None else self.players.index(self.shared_player)

    def initial_soc(self) -> np.ndarray:
        """Configured start-of-life state of charge per player [kWh] (0 without a battery)."""
        return np.array(
            [
                self.batteries[p].initial_soc_kwh if p in self.batteries else 0.0
                for p in self.players
            ]
        )

    def specs_at(self, soc_kwh: np.ndarray) -> dict[str, BatterySpec]:
        """Battery specs whose initial SoC is ``soc_kwh`` (for a plan starting now)."""
        out = {}
        for i, p in enumerate(self.players):
            b = self.batteries.get(p)
            if b is None:
                continue
            frac = float(np.clip(soc_kwh[i], b.min_soc_kwh, b.capacity_kwh)) / b.capacity_kwh
            out[p] = BatterySpec(
                b.capacity_kwh, b.power_kw, b.round_trip_efficiency, frac, b.min_soc_fraction
            )
        return out


@dataclass(frozen=True)
class Deviations:
    """A plan's deliberate departures from the rule for one interval, per player [kWh]."""

    extra_charge: np.ndarray
    hold: np.ndarray
    extra_discharge: np.ndarray

    @classmethod
    def none(cls, n: int) -> Deviations:
        """No deviation: the pure rule."""
        z = np.zeros(n)
        return cls(z, z, z)


@dataclass
class DayFlows:
    """Realised battery and grid flows of one controller over one day.

    Attributes
    ----------
    charge, discharge, soc, import_kwh, export_kwh : ndarray (P, T)
        Battery charge and discharge (grid side), SoC at the end of each interval, net grid
        import and export per player [kWh].
    mode : ndarray of str (T,)
        ``rule``, ``optimised`` or ``fallback_rule`` per interval.
    """

    charge: np.ndarray
    discharge: np.ndarray
    soc: np.ndarray
    import_kwh: np.ndarray
    export_kwh: np.ndarray
    mode: np.ndarray

    @property
    def end_soc(self) -> np.ndarray:
        """State of charge at the end of the day [kWh] (the next day's start)."""
        return self.soc[:, -1].copy()


def _check_shapes(load: np.ndarray, pv: np.ndarray, fleet: Fleet, soc0: np.ndarray) -> None:
    p = len(fleet.players)
    if load.ndim != 2 or load.shape[0] != p or pv.shape != load.shape:
        raise ControlInputError(
            f"load_kwh and pv_kwh: expected shape ({p}, T), got {load.shape}, {pv.shape}"
        )
    if np.shape(soc0) != (p,):
        raise ControlInputError(f"soc0_kwh: expected shape ({p},), got {np.shape(soc0)}")
    if not (np.isfinite(load).all() and np.isfinite(pv).all()):
        raise ControlInputError("load_kwh and pv_kwh must be finite (missing meter data?)")


def _limit(
    want_ch: np.ndarray, want_dis: np.ndarray, soc: np.ndarray, fleet: Fleet, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Net a charge and a discharge wish and clip them to power and SoC limits."""
    net = want_ch - want_dis
    ch = np.clip(net, 0.0, None)
    dis = np.clip(-net, 0.0, None)
    eta = fleet.eta[rows]
    ch = np.minimum(ch, fleet.max_energy[rows])
    ch = np.minimum(ch, np.clip(fleet.capacity[rows] - soc[rows], 0.0, None) / eta)
    dis = np.minimum(dis, fleet.max_energy[rows])
    dis = np.minimum(dis, np.clip(soc[rows] - fleet.min_soc[rows], 0.0, None) * eta)
    return ch, dis


def rule_step(
    net_kwh: np.ndarray, soc_kwh: np.ndarray, fleet: Fleet, dev: Deviations
) -> tuple[np.ndarray, np.ndarray]:
    """One interval of the rule plus deviations, on the actual net load.

    Parameters
    ----------
    net_kwh : ndarray (P,)
        Actual load minus PV of the interval [kWh].
    soc_kwh : ndarray (P,)
        State of charge at the start of the interval [kWh].
    fleet : Fleet
        Battery limits.
    dev : Deviations
        The plan's deliberate deviations for this interval [kWh].

    Returns
    -------
    charge, discharge : ndarray (P,)
        Grid-side battery energy [kWh], within power and SoC limits, never both > 0.
    """
    n = len(fleet.players)
    ch, dis = np.zeros(n), np.zeros(n)
    shared = fleet.shared_index
    members = np.array([i for i in range(n) if i != shared], dtype=int)

    def act(rows: np.ndarray, ref: np.ndarray) -> None:
        surplus, deficit = np.clip(-ref, 0.0, None), np.clip(ref, 0.0, None)
        want_ch = surplus + dev.extra_charge[rows]
        want_dis = np.where(
            dev.extra_charge[rows] > 0,
            0.0,
            np.clip(deficit - dev.hold[rows], 0.0, None) + dev.extra_discharge[rows],
        )
        ch[rows], dis[rows] = _limit(want_ch, want_dis, soc_kwh, fleet, rows)

    act(members, net_kwh[members])
    if shared is not None:
        after = net_kwh + ch - dis
        community = after[members].sum() + net_kwh[shared]
        act(np.array([shared]), np.array([community]))
    return ch, dis


def _replay(
    load: np.ndarray,
    pv: np.ndarray,
    fleet: Fleet,
    soc0: np.ndarray,
    decide: Callable[[int, np.ndarray], tuple[Deviations, str]] | None,
) -> DayFlows:
    _check_shapes(load, pv, fleet, soc0)
    p_n, t_n = load.shape
    soc = np.asarray(soc0, dtype=float).copy()
    out = {k: np.zeros((p_n, t_n)) for k in ("charge", "discharge", "soc")}
    mode = np.full(t_n, "rule", dtype=object)
    net = load - pv
    for t in range(t_n):
        dev, mode[t] = (Deviations.none(p_n), "rule") if decide is None else decide(t, soc)
        ch, dis = rule_step(net[:, t], soc, fleet, dev)
        soc = np.clip(soc + fleet.eta * ch - dis / fleet.eta, fleet.min_soc, fleet.capacity)
        out["charge"][:, t], out["discharge"][:, t], out["soc"][:, t] = ch, dis, soc
    grid = net + out["charge"] - out["discharge"]
    return DayFlows(
        out["charge"],
        out["discharge"],
        out["soc"],
        np.clip(grid, 0.0, None),
        np.clip(-grid, 0.0, None),
        mode,
    )


def run_no_battery(
    load_kwh: np.ndarray, pv_kwh: np.ndarray, fleet: Fleet, soc0_kwh: np.ndarray
) -> DayFlows:
    """Batteries idle: the SoC stays where it was.

    Parameters
    ----------
    load_kwh, pv_kwh : ndarray (P, T)
        Metered load and PV [kWh].
    fleet : Fleet
        Batteries.
    soc0_kwh : ndarray (P,)
        SoC at the start of the day [kWh].

    Returns
    -------
    DayFlows
    """
    _check_shapes(load_kwh, pv_kwh, fleet, soc0_kwh)
    net = load_kwh - pv_kwh
    z = np.zeros_like(net)
    return DayFlows(
        z,
        z.copy(),
        np.repeat(np.asarray(soc0_kwh, float)[:, None], net.shape[1], axis=1),
        np.clip(net, 0.0, None),
        np.clip(-net, 0.0, None),
        np.full(net.shape[1], "rule", dtype=object),
    )


def run_self_consumption(
    load_kwh: np.ndarray, pv_kwh: np.ndarray, fleet: Fleet, soc0_kwh: np.ndarray
) -> DayFlows:
    """The greedy self-consumption rule per battery (the shared one on the community's net).

    Parameters and returns as :func:`run_no_battery`.
    """
    return _replay(load_kwh, pv_kwh, fleet, soc0_kwh, None)


@dataclass(frozen=True)
class Tariff:
    """Prices over a day and its look-ahead, on the same interval grid.

    Parameters
    ----------
    import_price, export_price : ndarray (N,)
        [currency/kWh].
    incentive_per_kwh : float
        Incentive on shared energy [currency/kWh].
    carbon_intensity : ndarray (N,), optional
        [kg/kWh].
    """

    import_price: np.ndarray
    export_price: np.ndarray
    incentive_per_kwh: float
    carbon_intensity: np.ndarray | None = None


@dataclass(frozen=True)
class ObjectiveSettings:
    """Grid-aware terms of the re-optimisation (see :class:`DispatchInputs`).

    Parameters
    ----------
    horizon_intervals : int
        Intervals planned ahead at every step (must reach past the next evening peak).
    terminal_value_fraction : float
        Each kWh left at the horizon's end is worth this fraction of the horizon's cheapest
        import price times the discharge efficiency [-]; below 1/eta^2 the plan never buys
        energy only to hold it, above export/import it never dumps it.
    ramping_penalty_per_kwh, peak_charge_per_kwh, carbon_price_per_kg : float
        [currency/kWh], [currency/kWh per interval], [currency/kg].
    ramping_penalty_fraction : float
        Adds this fraction of the horizon's import price spread (max - min) to the ramping
        penalty [-]: the smoothing term then weighs the same against the arbitrage it competes
        with whatever the tariff's level and currency (:func:`ramping_penalty`).
    import_limit_kwh : ndarray (P,), optional
        Contracted limit per player per interval [kWh].
    feeder_cap_kwh : float, optional
        Community net exchange limit per interval [kWh].
    cycling_penalty_per_kwh : float
        [currency/kWh].
    deviation_margin_fraction : float
        A deviation from the rule is applied only if the plan expects it to earn at least this
        fraction of the horizon's mean import price per kWh deviated, against following the
        rule in the interval and re-optimising the rest (:func:`run_ecm`) [-]. 0 applies every
        deviation. Any positive value also breaks the LP's ties (e.g. discharging now or in
        any later hour of the same flat price) in favour of the rule.
    share_period_minutes : int, optional
        Shared energy is valued per period of this length (intervals grouped by their UTC
        start floored to it: the clock hour for 60 in every zone with a whole-hour offset),
        as the incentive settles it; None: per interval [min].
    """

    horizon_intervals: int = 24
    terminal_value_fraction: float = 0.9
    ramping_penalty_per_kwh: float = 0.0
    peak_charge_per_kwh: float = 0.0
    carbon_price_per_kg: float = 0.0
    import_limit_kwh: np.ndarray | None = None
    feeder_cap_kwh: float | None = None
    cycling_penalty_per_kwh: float = 1e-4
    ramping_penalty_fraction: float = 0.0
    deviation_margin_fraction: float = 0.0
    share_period_minutes: int | None = None


def ramping_penalty(settings: ObjectiveSettings, tariff: Tariff) -> float:
    """Ramping penalty of a horizon [currency/kWh]: the absolute one plus
    ``ramping_penalty_fraction x (max - min import price)`` over the horizon."""
    imp = np.asarray(tariff.import_price, float)
    spread = float(imp.max() - imp.min()) if imp.size else 0.0
    return settings.ramping_penalty_per_kwh + settings.ramping_penalty_fraction * spread


def terminal_values(
    fleet: Fleet, load_kwh: np.ndarray, tariff: Tariff, fraction: float
) -> dict[str, float]:
    """Value of a kWh left in each battery at the horizon's end [currency/kWh].

    A battery behind a consumer's meter displaces imports: ``fraction x eta x`` the horizon's
    cheapest import price. A battery whose owner consumes nothing (the shared battery) can
    only export, earning at most the export price plus the sharing incentive:
    ``fraction x eta x max(export + incentive)``, capped by the import-based value. Both stay
    below what buying energy to hold would cost, and above what dumping it would earn in the
    usual case, so the plan neither hoards grid energy nor empties batteries at the end.
    """
    import_floor = float(np.min(tariff.import_price))
    export_cap = float(np.max(tariff.export_price)) + tariff.incentive_per_kwh
    out = {}
    for i, p in enumerate(fleet.players):
        b = fleet.batteries.get(p)
        if b is None:
            continue
        use = import_floor if load_kwh[i].sum() > 0 else min(import_floor, export_cap)
        out[p] = fraction * b.efficiency * use
    return out


def share_periods(ts: Sequence[pd.Timestamp], minutes: int | None) -> np.ndarray | None:
    """Period number (0, 1, ...) of each interval: UTC starts floored to ``minutes`` [min];
    None when ``minutes`` is None (every interval its own period)."""
    if minutes is None or not len(ts):
        return None
    return incentive_periods(ts, "UTC", minutes)


def horizon_inputs(
    ts: Sequence[pd.Timestamp],
    fleet: Fleet,
    soc_kwh: np.ndarray,
    load_kwh: np.ndarray,
    pv_kwh: np.ndarray,
    tariff: Tariff,
    settings: ObjectiveSettings,
    previous_net_kwh: float | None = None,
) -> DispatchInputs:
    """Deterministic receding-horizon inputs: start at ``soc_kwh``, value what is left.

    Parameters
    ----------
    ts : sequence of Timestamp
        Interval starts of the horizon (UTC).
    fleet : Fleet
        Batteries.
    soc_kwh : ndarray (P,)
        SoC now [kWh].
    load_kwh, pv_kwh : ndarray (P, H)
        Forecast (or actual) load and PV over the horizon [kWh].
    tariff : Tariff
        Prices over the horizon (arrays of length H).
    settings : ObjectiveSettings
        Grid-aware terms.
    previous_net_kwh : float, optional
        Community net exchange of the interval before the horizon [kWh] (ramping).

    Returns
    -------
    DispatchInputs
    """
    terminal = terminal_values(fleet, load_kwh, tariff, settings.terminal_value_fraction)
    ramp = ramping_penalty(settings, tariff)
    ci = None if tariff.carbon_intensity is None else np.asarray(tariff.carbon_intensity)[None]
    return DispatchInputs(
        ts=tuple(ts),
        interval_hours=fleet.interval_hours,
        players=fleet.players,
        batteries=fleet.specs_at(soc_kwh),
        load_kwh=np.clip(load_kwh, 0.0, None)[None],
        pv_kwh=np.clip(pv_kwh, 0.0, None)[None],
        import_price=np.asarray(tariff.import_price, float)[None],
        export_price=np.asarray(tariff.export_price, float)[None],
        probabilities=np.ones(1),
        incentive_per_kwh=tariff.incentive_per_kwh,
        cycling_penalty_per_kwh=settings.cycling_penalty_per_kwh,
        terminal_soc_value_per_kwh=terminal,
        ramping_penalty_per_kwh=ramp,
        previous_community_net_kwh=previous_net_kwh if ramp > 0 else None,
        peak_charge_per_kwh=settings.peak_charge_per_kwh,
        carbon_price_per_kg=settings.carbon_price_per_kg if ci is not None else 0.0,
        carbon_intensity=ci,
        import_limit_kwh=settings.import_limit_kwh,
        feeder_cap_kwh=settings.feeder_cap_kwh,
        share_periods=share_periods(ts, settings.share_period_minutes),
    )


def solve_horizon(
    inputs: DispatchInputs,
    time_limit_s: float = 30.0,
    first: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Solve a deterministic horizon; return the planned charge and discharge (P, H) [kWh]
    and the objective [currency].

    Parameters
    ----------
    first : (charge, discharge) of ndarray (P,), optional
        Fix the first interval's battery moves to these [kWh] (the rest is optimised).

    Raises
    ------
    DispatchError
        The LP was not solved to optimality.
    """
    ch, dis, obj, _ = plan_horizon(inputs, time_limit_s, first)
    return ch, dis, obj


def plan_horizon(
    inputs: DispatchInputs,
    time_limit_s: float = 30.0,
    first: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, float, MatrixLP]:
    """:func:`solve_horizon`, also returning the solved LP (for :func:`first_move_objective`).

    The LP is the dispatch model of :func:`optimisation.dispatch.build_model`, assembled as
    matrices (:mod:`optimisation.dispatch_matrix`): it is solved at every interval of every
    replayed day, where building it through Pyomo cost 0.15 s for a 20 ms solve.
    """
    lp = solve_matrix(build_matrix(inputs, first), time_limit_s)
    ch, dis = lp.battery_flows()
    return ch, dis, float(lp.objective), lp


def first_move_objective(
    lp: MatrixLP,
    first: tuple[np.ndarray, np.ndarray],
    time_limit_s: float = 30.0,
) -> float:
    """Objective [currency] of a solved horizon ``lp`` (from :func:`plan_horizon`) re-solved
    with the first interval's moves fixed to ``first`` (P,) [kWh].

    The same LP as building it again with those moves fixed, without the build: the kept
    HiGHS model is re-solved warm with the moves' columns fixed (see
    :meth:`~optimisation.dispatch_matrix.MatrixLP.first_move_objective`); only the objective
    is read (it is unique, unlike the optimal moves).

    Raises
    ------
    DispatchError
        The LP was not solved to optimality.
    """
    return lp.first_move_objective(first[0], first[1], time_limit_s)


def deviations_from_plan(
    charge: np.ndarray, discharge: np.ndarray, net_fc: np.ndarray, fleet: Fleet
) -> Deviations:
    """The plan's deliberate deviations in its first interval, per player [kWh].

    Parameters
    ----------
    charge, discharge : ndarray (P,)
        Planned battery energy in the first interval [kWh].
    net_fc : ndarray (P,)
        Forecast load minus PV of that interval [kWh].
    fleet : Fleet
        Batteries (for the shared player, the reference is the forecast community net
        position after the home batteries' planned moves).

    Returns
    -------
    Deviations
    """
    ref = net_fc.astype(float).copy()
    shared = fleet.shared_index
    if shared is not None:
        after = net_fc + charge - discharge
        ref[shared] = after.sum() - after[shared] + net_fc[shared]
    surplus, deficit = np.clip(-ref, 0.0, None), np.clip(ref, 0.0, None)

    def clean(x: np.ndarray) -> np.ndarray:
        return np.where(x > DEVIATION_TOL, x, 0.0)

    return Deviations(
        extra_charge=clean(charge - surplus),
        hold=clean(deficit - discharge),
        extra_discharge=clean(discharge - deficit),
    )


Forecaster = Callable[[int, int], tuple[np.ndarray, np.ndarray]]
"""``forecast(i, h) -> (load (P, h), pv (P, h))`` for intervals ``i .. i+h-1`` of the global grid,
using only data known before interval ``i`` starts."""


@dataclass(frozen=True)
class Horizon:
    """The global interval grid a day is replayed on: the day plus a look-ahead.

    Parameters
    ----------
    ts : sequence of Timestamp
        Interval starts (UTC) of the grid.
    day_start : int
        Index of the day's first interval in the grid.
    day_len : int
        Intervals in the day (23, 24 or 25 for an hourly local day).
    tariff : Tariff
        Prices on the whole grid.
    """

    ts: Sequence[pd.Timestamp]
    day_start: int
    day_len: int
    tariff: Tariff

    def tariff_slice(self, i: int, h: int) -> Tariff:
        """Prices of intervals ``i .. i+h-1``."""
        t = self.tariff
        sl = slice(i, i + h)
        return Tariff(
            t.import_price[sl],
            t.export_price[sl],
            t.incentive_per_kwh,
            None if t.carbon_intensity is None else t.carbon_intensity[sl],
        )


def run_ecm(
    load_kwh: np.ndarray,
    pv_kwh: np.ndarray,
    fleet: Fleet,
    soc0_kwh: np.ndarray,
    horizon: Horizon,
    forecast: Forecaster,
    settings: ObjectiveSettings,
    previous_net_kwh: float | None = None,
    time_limit_s: float = 30.0,
) -> DayFlows:
    """ECM's real-time layer: re-optimise every interval, apply the rule plus its deviations.

    At the start of each interval the community LP is solved over the next
    ``settings.horizon_intervals`` intervals from the current SoC, on forecasts that use the
    newest metered interval. Its first interval's deliberate deviations
    (:func:`deviations_from_plan`) are applied to the actual interval on top of the rule
    (:func:`rule_step`). With ``settings.deviation_margin_fraction > 0`` they are applied only
    if re-solving with the rule's move (on the forecast) fixed in the first interval costs the
    plan at least ``fraction x mean import price`` more per kWh deviated. A failed solve falls
    back to the rule for that interval.

    Parameters
    ----------
    load_kwh, pv_kwh : ndarray (P, T)
        Metered load and PV of the day [kWh] (what the interval turns out to be).
    fleet : Fleet
        Batteries.
    soc0_kwh : ndarray (P,)
        SoC at the start of the day [kWh].
    horizon : Horizon
        The grid the day sits in (the look-ahead must cover ``horizon_intervals``; shorter
        look-ahead shortens the plan).
    forecast : Forecaster
        Intraday forecasts on the grid.
    settings : ObjectiveSettings
        Objective terms.
    previous_net_kwh : float, optional
        Community net exchange of the interval before the day [kWh].
    time_limit_s : float
        Solver limit per interval [s].

    Returns
    -------
    DayFlows
        With ``mode`` ``optimised`` or ``fallback_rule`` per interval.
    """
    n_grid = len(horizon.ts)

    def decide(t: int, soc: np.ndarray) -> tuple[Deviations, str]:
        i = horizon.day_start + t
        h = min(settings.horizon_intervals, n_grid - i)
        f_load, f_pv = forecast(i, h)
        try:
            inputs = horizon_inputs(
                horizon.ts[i : i + h],
                fleet,
                soc,
                f_load,
                f_pv,
                horizon.tariff_slice(i, h),
                settings,
                previous_net_kwh if t == 0 else None,
            )
            ch, dis, obj, lp = plan_horizon(inputs, time_limit_s)
        except DispatchError:
            return Deviations.none(len(fleet.players)), "fallback_rule"
        net_fc = f_load[:, 0] - f_pv[:, 0]
        dev = deviations_from_plan(ch[:, 0], dis[:, 0], net_fc, fleet)
        size = float((dev.extra_charge + dev.hold + dev.extra_discharge).sum())
        if settings.deviation_margin_fraction > 0 and size > 0:
            # what deviating now is worth to the plan: the same horizon with the rule's move
            # (on the forecast) fixed in the first interval, the rest re-optimised
            none = Deviations.none(len(fleet.players))
            margin = settings.deviation_margin_fraction * float(np.mean(inputs.import_price[0]))
            try:
                obj_rule = first_move_objective(
                    lp, rule_step(net_fc, soc, fleet, none), time_limit_s
                )
            except DispatchError:
                return none, "optimised"
            if obj_rule - obj < margin * size:
                return none, "optimised"
        return dev, "optimised"

    return _replay(load_kwh, pv_kwh, fleet, soc0_kwh, decide)


def run_perfect_foresight(
    load_kwh: np.ndarray,
    pv_kwh: np.ndarray,
    fleet: Fleet,
    soc0_kwh: np.ndarray,
    horizon: Horizon,
    lookahead_load_kwh: np.ndarray,
    lookahead_pv_kwh: np.ndarray,
    settings: ObjectiveSettings,
    previous_net_kwh: float | None = None,
    time_limit_s: float = 60.0,
) -> DayFlows:
    """The optimisation solved once on the actual day and the given look-ahead.

    Parameters
    ----------
    load_kwh, pv_kwh : ndarray (P, T)
        Metered day [kWh].
    fleet, soc0_kwh, horizon, settings, previous_net_kwh, time_limit_s
        As :func:`run_ecm`.
    lookahead_load_kwh, lookahead_pv_kwh : ndarray (P, L)
        Intervals after the day (``L`` may be 0) [kWh]: the daily evaluation passes the
        intraday forecast issued at the day's end, so that a day's result does not depend on
        whether the next day's readings are stored yet.

    Returns
    -------
    DayFlows
        ``optimised``, or the rule labelled ``fallback_rule`` if the solve failed.
    """
    _check_shapes(load_kwh, pv_kwh, fleet, soc0_kwh)
    t_n = load_kwh.shape[1]
    load = np.concatenate([load_kwh, lookahead_load_kwh], axis=1)
    pv = np.concatenate([pv_kwh, lookahead_pv_kwh], axis=1)
    i, h = horizon.day_start, load.shape[1]
    try:
        inputs = horizon_inputs(
            horizon.ts[i : i + h],
            fleet,
            np.asarray(soc0_kwh, float),
            load,
            pv,
            horizon.tariff_slice(i, h),
            settings,
            previous_net_kwh,
        )
        ch, dis, _ = solve_horizon(inputs, time_limit_s)
    except DispatchError:
        flows = run_self_consumption(load_kwh, pv_kwh, fleet, soc0_kwh)
        flows.mode[:] = "fallback_rule"
        return flows
    ch, dis = ch[:, :t_n], dis[:, :t_n]
    eta = fleet.eta[:, None]
    soc = np.asarray(soc0_kwh, float)[:, None] + np.cumsum(eta * ch - dis / eta, axis=1)
    soc = np.clip(soc, fleet.min_soc[:, None], fleet.capacity[:, None])
    grid = load_kwh - pv_kwh + ch - dis
    return DayFlows(
        ch,
        dis,
        soc,
        np.clip(grid, 0.0, None),
        np.clip(-grid, 0.0, None),
        np.full(t_n, "optimised", dtype=object),
    )
