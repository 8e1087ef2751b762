"""Two-stage, scenario-based day-ahead battery dispatch (linear programme).

The day is planned once, before the uncertainty resolves:

* **First stage** (here-and-now, identical in every scenario): battery charge ``charge[b, t]``,
  discharge ``discharge[b, t]`` (grid-side energy per interval [kWh]) and the state of charge
  ``soc[b, t]`` at the end of each interval [kWh].
* **Second stage** (recourse, one copy per scenario): grid import/export per player
  ``grid_import[s, p, t]``, ``grid_export[s, p, t]`` [kWh] and the community's shared energy
  ``shared[s, t]`` [kWh], the linearised ``min(sum_p export, sum_p import)`` rewarded by the
  incentive.

The objective is the probability-weighted energy bill minus the sharing incentive, plus a small
cycling penalty on battery throughput that removes degenerate charge/discharge churn.

The module follows the ``build_model -> solve -> extract_results`` split used by PyPSA/linopy:
the model is assembled by the ordered list :data:`_DEFINE_STEPS` of ``_define_*`` functions,
each reading plain Python lists prepared from the numpy inputs (no Pyomo ``Param`` look-ups)
and returning early when its component is absent (no batteries, no incentive).
:func:`plan_day` runs the three steps and adds a summary against :func:`no_battery_baseline`.
:func:`rule_based_plan` is a solver-free greedy fallback for when the LP fails.

Notes
-----
* The two physical caps ``import <= load + charge`` and ``export <= pv + discharge`` are
  algebraically equivalent once the energy balance holds; both are kept, as specified, and they
  bound (but do not forbid) simultaneous import and export of one player within an interval.
  The LP chooses such gross flows wherever the incentive exceeds the import/export price
  spread, although a meter nets them and no member controls them; there, shared energy and
  savings are optimistic. Forbidding them needs binaries (a MILP) for battery players.
* Shared energy is computed per incentive period (``DispatchInputs.share_periods``): by
  default each interval; for quarter-hour meters the assets pass the local hours, because the
  incentive is paid on the minimum of the hour's sums (at least the sum of the quarter-hour
  minima).

Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

import ctypes
import math
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyomo.environ as pyo
from pyomo.common.errors import InfeasibleConstraintException
from pyomo.common.tee import capture_output
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.core.base.var import VarData
from pyomo.core.staleflag import StaleFlagManager
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from optimisation.allocation import per_period
from optimisation.deferrable import (
    DeferrableInputError,
    DeferrableSpec,
    deferrable_frame,
    deferrable_schedule,
    define_deferrable,
)
from optimisation.ev import EvInputError, EvSpec, define_ev, ev_frame, shortfall_cost
from optimisation.hvac import (
    HvacInputError,
    HvacSpec,
    check_feasible,
    comfort_cost,
    define_hvac,
)

PLAN_COLUMNS: tuple[str, ...] = (
    "member_id",
    "ts",
    "scenario",
    "probability",
    "load_kwh",
    "pv_kwh",
    "charge_kwh",
    "discharge_kwh",
    "soc_kwh",
    "import_kwh",
    "export_kwh",
    "import_price",
    "export_price",
    "community_shared_kwh",
)
"""Columns of a dispatch plan, in order (see :func:`extract_results`)."""

EXPECTED_SCENARIO = "expected"
"""Scenario label of the probability-weighted rows of a plan."""

PROBABILITY_TOL = 1e-9
"""Allowed deviation of ``sum(probabilities)`` from 1 [-]."""

NOISE_TOL = 1e-7
"""Solver noise: values within this distance (times the largest value of the variable, when
above 1) outside their bounds are clipped [kWh]."""

SIMULTANEOUS_TOL = 1e-9
"""Simultaneous import and export below this are treated as solver noise [kWh]."""

ENERGY_EPS = 1e-6
"""Energies below this are 0 in the LP data [kWh] (meters resolve 1 Wh). HiGHS mishandles
bounds and right-hand sides near or below its 1e-7 feasibility tolerance (presolve declares
feasible LPs infeasible; values like 1e-258 end in a solver error)."""

STANDALONE_SLACK_PENALTY = 10.0
"""Cost of each currency unit by which a player's expected bill exceeds its standalone bill
[currency/currency]: high enough that the plan only does so where no plan can avoid it."""

COEF_EPS = 1e-12
"""Objective coefficients below this in magnitude are dropped [currency/kWh]."""

CAPS_MIN_COST = 1e-9
"""Smallest probability-weighted cost [currency/kWh] of importing and exporting at once for
which the physical caps are left out as implied (see :func:`_caps_implied`)."""

HIGHS_OPTIONS: Mapping[str, object] = types.MappingProxyType(
    {"solver": "ipx", "run_crossover": "on", "mip_feasibility_tolerance": 1e-8}
)
"""Default HiGHS options. Interior point (IPX, named: with ``highspy-extras`` installed, "ipm"
means HiPO, which is slower on these small LPs) plus crossover (a vertex solution) is as fast as
dual simplex on small days and about 6x faster on large ones (P=1000, S=8, T=24: 65 s vs 406 s),
where the sharing coupling makes simplex highly degenerate. The MIP feasibility tolerance is
1e-8 instead of HiGHS's 1e-6: with the netting binaries, 1e-6 let a battery "discharge" -1e-6
kWh to export a 1e-6 kWh PV reading it could not otherwise place (found by the plan property
test), an energy that :data:`ENERGY_EPS` keeps in the data."""


# --------------------------------------------------------------------------------------------
# Errors and inputs
# --------------------------------------------------------------------------------------------


class DispatchInputError(ValueError):
    """Dispatch inputs are malformed; the message names the offending field."""


class DispatchError(RuntimeError):
    """The dispatch LP could not be solved to optimality; no plan exists.

    Parameters
    ----------
    termination_condition : str
        Solver termination condition (e.g. ``provenInfeasible``, ``maxTimeLimit``).
    reason : str
        Human-readable cause, naming the battery and constraint family when detectable.
    """

    def __init__(self, termination_condition: str, reason: str) -> None:
        self.termination_condition = termination_condition
        self.reason = reason
        super().__init__(
            f"dispatch LP not solved to optimality ({termination_condition}): {reason}"
        )

    def __reduce__(self) -> tuple[type[DispatchError], tuple[str, str]]:
        return (type(self), (self.termination_condition, self.reason))


def _finite(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise DispatchInputError(f"{name} must be finite, got {value!r}")
    return v


@dataclass(frozen=True)
class BatterySpec:
    """A battery owned by one player.

    Parameters
    ----------
    capacity_kwh : float
        Usable energy capacity [kWh], > 0.
    power_kw : float
        Maximum charge and discharge power, grid side [kW], >= 0.
    round_trip_efficiency : float
        Round-trip efficiency in (0, 1] [-]; each direction uses ``sqrt`` of it.
    initial_soc_fraction : float
        State of charge at the start of the day, as a fraction of capacity [-], >= 0. The day
        must end at the same energy. Values above 1 (or below ``min_soc_fraction``) are not
        rejected here, because a measured SoC may exceed a derated capacity; the LP then
        reports the day as infeasible with the battery named (:class:`DispatchError`).
    min_soc_fraction : float
        Lowest allowed state of charge, as a fraction of capacity [-], in [0, 1].
    """

    capacity_kwh: float
    power_kw: float
    round_trip_efficiency: float
    initial_soc_fraction: float = 0.5
    min_soc_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not _finite("BatterySpec.capacity_kwh", self.capacity_kwh) > 0:
            raise DispatchInputError(
                f"BatterySpec.capacity_kwh must be > 0, got {self.capacity_kwh}"
            )
        if not _finite("BatterySpec.power_kw", self.power_kw) >= 0:
            raise DispatchInputError(f"BatterySpec.power_kw must be >= 0, got {self.power_kw}")
        rte = _finite("BatterySpec.round_trip_efficiency", self.round_trip_efficiency)
        if not 0 < rte <= 1:
            raise DispatchInputError(
                f"BatterySpec.round_trip_efficiency must be in (0, 1], got {rte}"
            )
        if not _finite("BatterySpec.initial_soc_fraction", self.initial_soc_fraction) >= 0:
            raise DispatchInputError(
                f"BatterySpec.initial_soc_fraction must be >= 0, got {self.initial_soc_fraction}"
            )
        if not 0 <= _finite("BatterySpec.min_soc_fraction", self.min_soc_fraction) <= 1:
            raise DispatchInputError(
                f"BatterySpec.min_soc_fraction must be in [0, 1], got {self.min_soc_fraction}"
            )

    @property
    def efficiency(self) -> float:
        """One-way (charge and discharge) efficiency ``sqrt(round_trip_efficiency)`` [-]."""
        return math.sqrt(self.round_trip_efficiency)

    @property
    def initial_soc_kwh(self) -> float:
        """State of charge at the start (and required at the end) of the day [kWh]."""
        return self.initial_soc_fraction * self.capacity_kwh

    @property
    def min_soc_kwh(self) -> float:
        """Lowest allowed state of charge [kWh]."""
        return self.min_soc_fraction * self.capacity_kwh


def _as_array(name: str, value: object, shape: tuple[int, ...], nonneg: bool) -> np.ndarray:
    try:
        arr = np.array(value, dtype=float)  # a copy: the caller's array can change afterwards
    except (TypeError, ValueError) as exc:
        raise DispatchInputError(f"{name}: not numeric ({exc})") from exc
    if arr.shape != shape:
        raise DispatchInputError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise DispatchInputError(f"{name}: contains NaN or infinite values")
    if nonneg and (arr < 0).any():
        raise DispatchInputError(f"{name}: contains negative values (min {arr.min()})")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class DispatchInputs:
    """Everything the day-ahead dispatch needs, validated on construction.

    ``S`` scenarios, ``P`` players and ``T`` intervals are read from ``probabilities``,
    ``players`` and ``ts``. Arrays are copied, converted to float and made read-only;
    probabilities are renormalised to sum to exactly 1 after validation.

    Parameters
    ----------
    ts : tuple of pandas.Timestamp
        Interval starts, tz-aware UTC, strictly increasing by ``interval_hours`` (``T = 23, 24
        or 25`` for an hourly local day).
    interval_hours : float
        Interval length [h], e.g. 1.0 or 0.25.
    players : tuple of str
        Member ids plus the community owner id (shared assets); unique.
    batteries : Mapping[str, BatterySpec]
        Battery per player; players without a battery are absent.
    load_kwh : numpy.ndarray
        Consumption per scenario, player and interval, shape (S, P, T) [kWh], >= 0.
    pv_kwh : numpy.ndarray
        PV generation per scenario, player and interval, shape (S, P, T) [kWh], >= 0.
    import_price : numpy.ndarray
        Grid import price per scenario and interval, shape (S, T) [currency/kWh].
    export_price : numpy.ndarray
        Grid export (feed-in) price per scenario and interval, shape (S, T) [currency/kWh].
    probabilities : numpy.ndarray
        Scenario probabilities, shape (S,), >= 0, summing to 1 within 1e-9 [-].
    incentive_per_kwh : float
        Incentive paid on the community's shared energy [currency/kWh], >= 0.
    cycling_penalty_per_kwh : float
        Penalty on battery throughput ``charge + discharge`` [currency/kWh], >= 0.
    terminal_soc_value_per_kwh : float or Mapping[str, float], optional
        ``None`` (default): every battery ends the horizon at its initial SoC (a day-ahead
        plan). A value (or a value per battery player): the end SoC is free and each kWh left
        at the end is worth this much [currency/kWh] (a receding-horizon plan), >= 0.
    ramping_penalty_per_kwh : float
        Penalty on the change of the community's net grid exchange between consecutive
        intervals, ``|sum_p (import - export)[t] - ...[t-1]|`` [currency/kWh], >= 0.
    previous_community_net_kwh : float, optional
        Community net grid exchange in the interval before ``ts[0]`` [kWh]; with it the first
        interval's ramp is penalised too.
    peak_charge_per_kwh : float
        Demand charge on the community's highest interval import of the horizon, per
        scenario [currency/kWh per interval], >= 0.
    carbon_price_per_kg : float
        Price of the CO2 of imported energy [currency/kg], >= 0; needs ``carbon_intensity``.
    carbon_intensity : numpy.ndarray, optional
        Grid carbon intensity per scenario and interval, shape (S, T) [kg/kWh], >= 0.
    import_limit_kwh : numpy.ndarray, optional
        Contracted (connection) limit per player on import and on export per interval, shape
        (P,) [kWh]; ``inf`` for no limit.
    feeder_cap_kwh : float, optional
        Limit on the community's net import and net export per interval [kWh].
    standalone_cost : numpy.ndarray, optional
        Expected grid bill of each player acting alone, shape (P,) [currency]. With it, each
        player's expected bill in the plan is at most that (a soft constraint: a violation
        costs :data:`STANDALONE_SLACK_PENALTY` per currency unit).
    share_periods : numpy.ndarray, optional
        Incentive period of each interval, shape (T,), integers 0, 1, ... in order, each
        period contiguous (e.g. the local hour of quarter-hour intervals, see
        :func:`optimisation.allocation.incentive_periods`): shared energy is the minimum of
        each period's summed export and import, as the Italian incentive is settled. Default:
        every interval its own period.
    hvac : Mapping[str, HvacSpec], optional
        Air conditioner per player (:mod:`optimisation.hvac`): its electricity is planned with
        the batteries, inside its dwelling's comfort band. Needs ``outdoor_temp_c`` and an LP
        where simultaneous import and export cannot pay.
    outdoor_temp_c : numpy.ndarray, optional
        Outdoor temperature forecast per interval, shape (T,) [degC].
    evs : Mapping[str, EvSpec], optional
        EV stays by id (:mod:`optimisation.ev`): charged on their owner's connection to the
        energy needed by departure. Needs an LP where simultaneous import and export cannot
        pay.
    deferrable : Mapping[str, DeferrableSpec], optional
        Cycles of fixed shape to run once inside a window (:mod:`optimisation.deferrable`):
        binaries, so the plan becomes a MILP.

    Raises
    ------
    DispatchInputError
        A field has the wrong shape, non-finite or negative values; the field is named.
    """

    ts: tuple[pd.Timestamp, ...]
    interval_hours: float
    players: tuple[str, ...]
    batteries: Mapping[str, BatterySpec]
    load_kwh: np.ndarray
    pv_kwh: np.ndarray
    import_price: np.ndarray
    export_price: np.ndarray
    probabilities: np.ndarray
    incentive_per_kwh: float
    cycling_penalty_per_kwh: float = 1e-4
    terminal_soc_value_per_kwh: float | Mapping[str, float] | None = None
    ramping_penalty_per_kwh: float = 0.0
    previous_community_net_kwh: float | None = None
    peak_charge_per_kwh: float = 0.0
    carbon_price_per_kg: float = 0.0
    carbon_intensity: np.ndarray | None = None
    import_limit_kwh: np.ndarray | None = None
    feeder_cap_kwh: float | None = None
    standalone_cost: np.ndarray | None = None
    share_periods: np.ndarray | None = None
    hvac: Mapping[str, HvacSpec] | None = None
    outdoor_temp_c: np.ndarray | None = None
    evs: Mapping[str, EvSpec] | None = None
    deferrable: Mapping[str, DeferrableSpec] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise fields in place
        try:
            ts = tuple(pd.Timestamp(t) for t in self.ts)
        except (TypeError, ValueError) as exc:
            raise DispatchInputError(f"ts: not timestamps ({exc})") from exc
        if not ts:
            raise DispatchInputError("ts: at least one interval is required")
        for t in ts:
            if t.tzinfo is None or t.utcoffset() != pd.Timedelta(0) or t.tzname() != "UTC":
                raise DispatchInputError(f"ts: timestamps must be tz-aware UTC, got {t!r}")
        dt = _finite("interval_hours", self.interval_hours)
        if dt <= 0:
            raise DispatchInputError(f"interval_hours must be > 0, got {dt}")
        step = pd.Timedelta(hours=dt)
        for a, b in zip(ts[:-1], ts[1:], strict=True):
            if b - a != step:
                raise DispatchInputError(
                    f"ts: intervals must be {dt} h apart and increasing; {a} -> {b}"
                )
        set_(self, "ts", ts)
        set_(self, "interval_hours", dt)

        players = tuple(self.players)
        if not players:
            raise DispatchInputError("players: at least one player is required")
        if not all(isinstance(p, str) and p for p in players):
            raise DispatchInputError("players: ids must be non-empty strings")
        if len(set(players)) != len(players):
            raise DispatchInputError("players: ids must be unique")
        set_(self, "players", players)

        batteries = dict(self.batteries)
        for p, spec in batteries.items():
            if p not in players:
                raise DispatchInputError(f"batteries: player {p!r} is not in players")
            if not isinstance(spec, BatterySpec):
                raise DispatchInputError(f"batteries[{p!r}]: expected BatterySpec, got {spec!r}")
        set_(self, "batteries", types.MappingProxyType(batteries))

        if np.ndim(self.probabilities) != 1 or np.size(self.probabilities) == 0:
            raise DispatchInputError("probabilities: expected a non-empty 1-D array")
        s, p, t = int(np.size(self.probabilities)), len(players), len(ts)
        probs = _as_array("probabilities", self.probabilities, (s,), nonneg=True)
        if abs(probs.sum() - 1.0) > PROBABILITY_TOL:
            raise DispatchInputError(f"probabilities: must sum to 1, got {probs.sum()!r}")
        probs = probs / probs.sum()
        probs.setflags(write=False)
        set_(self, "probabilities", probs)
        set_(self, "load_kwh", _as_array("load_kwh", self.load_kwh, (s, p, t), nonneg=True))
        set_(self, "pv_kwh", _as_array("pv_kwh", self.pv_kwh, (s, p, t), nonneg=True))
        set_(self, "import_price", _as_array("import_price", self.import_price, (s, t), False))
        set_(self, "export_price", _as_array("export_price", self.export_price, (s, t), False))

        incentive = _finite("incentive_per_kwh", self.incentive_per_kwh)
        if incentive < 0:
            raise DispatchInputError(f"incentive_per_kwh must be >= 0, got {incentive}")
        set_(self, "incentive_per_kwh", incentive)
        penalty = _finite("cycling_penalty_per_kwh", self.cycling_penalty_per_kwh)
        if penalty < 0:
            raise DispatchInputError(f"cycling_penalty_per_kwh must be >= 0, got {penalty}")
        set_(self, "cycling_penalty_per_kwh", penalty)
        for name in ("ramping_penalty_per_kwh", "peak_charge_per_kwh", "carbon_price_per_kg"):
            v = _finite(name, getattr(self, name))
            if v < 0:
                raise DispatchInputError(f"{name} must be >= 0, got {v}")
            set_(self, name, v)
        if self.previous_community_net_kwh is not None:
            set_(
                self,
                "previous_community_net_kwh",
                _finite("previous_community_net_kwh", self.previous_community_net_kwh),
            )
        tv = self.terminal_soc_value_per_kwh
        if tv is not None:
            values = (
                {b: tv[b] if b in tv else 0.0 for b in batteries}
                if isinstance(tv, Mapping)
                else dict.fromkeys(batteries, tv)
            )
            values = {b: _finite(f"terminal_soc_value_per_kwh[{b}]", v) for b, v in values.items()}
            if any(v < 0 for v in values.values()):
                raise DispatchInputError("terminal_soc_value_per_kwh must be >= 0")
            set_(self, "terminal_soc_value_per_kwh", types.MappingProxyType(values))
        if self.feeder_cap_kwh is not None:
            cap = _finite("feeder_cap_kwh", self.feeder_cap_kwh)
            if cap < 0:
                raise DispatchInputError(f"feeder_cap_kwh must be >= 0, got {cap}")
            set_(self, "feeder_cap_kwh", cap)
        if self.carbon_intensity is not None:
            ci = _as_array("carbon_intensity", self.carbon_intensity, (s, t), nonneg=True)
            set_(self, "carbon_intensity", ci)
        elif self.carbon_price_per_kg > 0:
            raise DispatchInputError("carbon_price_per_kg > 0 needs carbon_intensity (S, T)")
        if self.import_limit_kwh is not None:
            lim = np.array(self.import_limit_kwh, dtype=float)
            if lim.shape != (p,) or np.isnan(lim).any() or (lim < 0).any():
                raise DispatchInputError(
                    f"import_limit_kwh: expected shape ({p},), >= 0 (inf for none)"
                )
            lim.setflags(write=False)
            set_(self, "import_limit_kwh", lim)
        if self.standalone_cost is not None:
            set_(
                self,
                "standalone_cost",
                _as_array("standalone_cost", self.standalone_cost, (p,), False),
            )
        if self.share_periods is not None:
            per = np.asarray(self.share_periods)
            ok = (
                per.shape == (t,)
                and np.issubdtype(per.dtype, np.integer)
                and per[0] == 0
                and np.isin(np.diff(per), (0, 1)).all()
            )
            if not ok:
                raise DispatchInputError(
                    f"share_periods: expected ({t},) integers from 0, each period contiguous "
                    "and numbered in order"
                )
            per = per.astype(np.int64)
            per.setflags(write=False)
            set_(self, "share_periods", per)
        if self.hvac:
            hvac = dict(self.hvac)
            for h, spec in hvac.items():
                if h not in players:
                    raise DispatchInputError(f"hvac: player {h!r} is not in players")
                if not isinstance(spec, HvacSpec):
                    raise DispatchInputError(f"hvac[{h!r}]: expected HvacSpec, got {spec!r}")
                try:
                    spec.band(t)
                except HvacInputError as exc:
                    raise DispatchInputError(f"hvac[{h!r}]: {exc}") from None
            if self.outdoor_temp_c is None:
                raise DispatchInputError("hvac needs outdoor_temp_c, shape (T,) [degC]")
            outdoor = _as_array("outdoor_temp_c", self.outdoor_temp_c, (t,), False)
            set_(self, "outdoor_temp_c", outdoor)
            for h, spec in hvac.items():
                try:
                    check_feasible(h, spec, outdoor, dt)
                except HvacInputError as exc:
                    raise DispatchInputError(str(exc)) from None
            if not self.simultaneous_flows_unprofitable:
                raise DispatchInputError(
                    "hvac: planned only where simultaneous import and export cannot pay (the "
                    "incentive below the import-export spread in every interval)"
                )
            set_(self, "hvac", types.MappingProxyType(hvac))
        else:
            set_(self, "hvac", None)
        set_(self, "evs", self._owned("evs", EvSpec, lambda e, x: x.check(e, t, dt)))
        set_(
            self,
            "deferrable",
            self._owned("deferrable", DeferrableSpec, lambda d, x: x.check(d, t)),
        )

    def _owned(
        self, name: str, kind: type, check: Callable[[str, Any], None]
    ) -> Mapping[str, Any] | None:
        """Validate a field of flexible assets owned by players (EVs, deferrable loads): each a
        ``kind`` with an ``owner`` among the players, passing ``check(id, asset)`` (whose
        typed error names the member, the asset and the field)."""
        assets = dict(getattr(self, name) or {})
        if not assets:
            return None
        for key, spec in assets.items():
            if not isinstance(spec, kind):
                raise DispatchInputError(f"{name}[{key!r}]: expected {kind.__name__}, got {spec!r}")
            if spec.owner not in self.players:
                raise DispatchInputError(f"{name}[{key!r}]: owner {spec.owner!r} is not a player")
            try:
                check(key, spec)
            except (EvInputError, DeferrableInputError) as exc:
                raise DispatchInputError(str(exc)) from None
        if not self.simultaneous_flows_unprofitable:
            raise DispatchInputError(
                f"{name}: planned only where simultaneous import and export cannot pay"
            )
        return types.MappingProxyType(assets)

    @property
    def simultaneous_flows_unprofitable(self) -> bool:
        """True when no player can gain by importing and exporting in the same interval.

        Importing and exporting ``x`` kWh at once costs ``x * (import - export price)`` (plus
        carbon) and can raise shared energy by at most ``x``, earning ``x * incentive``; the
        peak and ramping terms are not lowered by it. Where the incentive is below the spread
        in every scenario and interval, any optimum nets the two, so the LP needs no binaries.
        """
        spread = self.import_price - self.export_price
        return bool((self.incentive_per_kwh < spread - 1e-12).all())

    @property
    def periods(self) -> np.ndarray:
        """Incentive period of each interval (T,): ``share_periods`` or every interval its
        own."""
        if self.share_periods is None:
            return np.arange(self.n_intervals)
        return self.share_periods

    @property
    def n_scenarios(self) -> int:
        """Number of scenarios S."""
        return int(self.probabilities.size)

    @property
    def n_intervals(self) -> int:
        """Number of intervals T."""
        return len(self.ts)

    @property
    def scenario_labels(self) -> tuple[str, ...]:
        """Scenario labels ``s0, s1, ...`` used in plans."""
        return tuple(f"s{i}" for i in range(self.n_scenarios))


@dataclass(frozen=True)
class SolveReport:
    """Outcome of :func:`solve`.

    Parameters
    ----------
    termination_condition : str
        Solver termination condition (``convergenceCriteriaSatisfied`` when optimal).
    objective : float
        Optimal objective: expected net cost plus cycling penalty [currency].
    build_time_s : float
        Wall time of :func:`build_model` [s].
    solve_time_s : float
        Wall time of the solver call, including the hand-over to HiGHS [s].
    n_variables : int
        Number of scalar variables.
    n_constraints : int
        Number of scalar constraints (variable bounds excluded).
    """

    termination_condition: str
    objective: float
    build_time_s: float
    solve_time_s: float
    n_variables: int
    n_constraints: int


@dataclass(frozen=True)
class DispatchResult:
    """Result of :func:`plan_day`.

    Parameters
    ----------
    plan : pandas.DataFrame
        Plan with :data:`PLAN_COLUMNS` (see :func:`extract_results`).
    report : SolveReport
        Solver outcome and timings.
    summary : dict of str to float
        ``expected_cost``, ``expected_incentive``, ``expected_net_cost``, ``no_battery_cost``,
        ``no_battery_incentive``, ``no_battery_net_cost``, ``expected_savings``,
        ``expected_shared_kwh`` [kWh], ``objective``; money in [currency].
    """

    plan: pd.DataFrame
    report: SolveReport
    summary: dict[str, float] = field(default_factory=dict)
    hvac: pd.DataFrame | None = None
    """the air conditioners' schedule and indoor temperatures (:func:`extract_hvac`), if any"""
    ev: pd.DataFrame | None = None
    """the EVs' charging, delivered energy and shortfall (:func:`optimisation.ev.ev_frame`)"""
    deferrable: pd.DataFrame | None = None
    """each deferrable load's start and end (:func:`optimisation.deferrable.deferrable_frame`)"""


# --------------------------------------------------------------------------------------------
# Model building
# --------------------------------------------------------------------------------------------


def _snap(x: np.ndarray) -> np.ndarray:
    """Energies below :data:`ENERGY_EPS` set to 0 [kWh]."""
    return np.where(np.abs(x) < ENERGY_EPS, 0.0, x)


def _snap_kwh(x: float) -> float:
    return 0.0 if abs(x) < ENERGY_EPS else float(x)


@dataclass(frozen=True)
class _ModelData:
    """Inputs as plain Python lists and dicts, ready for fast Pyomo rules.

    Energies are snapped to 0 below :data:`ENERGY_EPS` and tiny rates to 0 below
    :data:`COEF_EPS`; :func:`extract_results` re-derives the flows from the original inputs.
    """

    scenarios: list[int]
    players: list[str]
    player_index: dict[str, int]
    batteries: list[str]
    intervals: list[int]
    prob: list[float]
    load: list[list[list[float]]]  # [s][p][t]
    pv: list[list[list[float]]]
    net: list[list[list[float]]]  # load - pv
    import_price: list[list[float]]  # [s][t]
    export_price: list[list[float]]
    max_energy: dict[str, float]  # power * dt
    efficiency: dict[str, float]
    capacity: dict[str, float]
    min_soc: dict[str, float]
    initial_soc: dict[str, float]
    incentive: float
    penalty: float
    terminal_value: Mapping[str, float] | None = None
    ramp_penalty: float = 0.0
    prev_net: float | None = None
    peak_charge: float = 0.0
    carbon_cost: list[list[float]] | None = None  # [s][t] currency/kWh imported
    limit: dict[str, float] = field(default_factory=dict)  # per player, finite only
    feeder_cap: float | None = None
    standalone: dict[str, float] = field(default_factory=dict)
    netting_binaries: bool = False
    physical_caps: bool = True
    periods: list[list[int]] = field(default_factory=list)  # intervals of each share period
    hvac: Mapping[str, HvacSpec] = field(default_factory=dict)
    outdoor: list[float] = field(default_factory=list)  # [t] degC
    evs: Mapping[str, EvSpec] = field(default_factory=dict)
    deferrable: Mapping[str, DeferrableSpec] = field(default_factory=dict)
    dt: float = 1.0  # interval length [h]

    @classmethod
    def from_inputs(cls, inputs: DispatchInputs) -> _ModelData:
        bats = [p for p in inputs.players if p in inputs.batteries]
        spec = inputs.batteries
        load, pv = _snap(inputs.load_kwh), _snap(inputs.pv_kwh)
        return cls(
            scenarios=list(range(inputs.n_scenarios)),
            players=list(inputs.players),
            player_index={p: i for i, p in enumerate(inputs.players)},
            batteries=bats,
            intervals=list(range(inputs.n_intervals)),
            prob=inputs.probabilities.tolist(),
            load=load.tolist(),
            pv=pv.tolist(),
            net=_snap(load - pv).tolist(),
            import_price=inputs.import_price.tolist(),
            export_price=inputs.export_price.tolist(),
            max_energy={b: _snap_kwh(spec[b].power_kw * inputs.interval_hours) for b in bats},
            efficiency={b: spec[b].efficiency for b in bats},
            capacity={b: _snap_kwh(spec[b].capacity_kwh) for b in bats},
            min_soc={b: _snap_kwh(spec[b].min_soc_kwh) for b in bats},
            initial_soc={b: _snap_kwh(spec[b].initial_soc_kwh) for b in bats},
            incentive=inputs.incentive_per_kwh if inputs.incentive_per_kwh >= COEF_EPS else 0.0,
            penalty=inputs.cycling_penalty_per_kwh
            if inputs.cycling_penalty_per_kwh >= COEF_EPS
            else 0.0,
            terminal_value=inputs.terminal_soc_value_per_kwh,
            ramp_penalty=inputs.ramping_penalty_per_kwh,
            prev_net=inputs.previous_community_net_kwh,
            peak_charge=inputs.peak_charge_per_kwh,
            carbon_cost=(inputs.carbon_price_per_kg * inputs.carbon_intensity).tolist()
            if inputs.carbon_intensity is not None and inputs.carbon_price_per_kg > 0
            else None,
            limit={
                p: float(v)
                for p, v in zip(
                    inputs.players,
                    inputs.import_limit_kwh
                    if inputs.import_limit_kwh is not None
                    else [math.inf] * len(inputs.players),
                    strict=True,
                )
                if math.isfinite(v)
            },
            feeder_cap=inputs.feeder_cap_kwh,
            standalone={}
            if inputs.standalone_cost is None
            else dict(zip(inputs.players, inputs.standalone_cost.tolist(), strict=True)),
            netting_binaries=bool(bats) and not inputs.simultaneous_flows_unprofitable,
            physical_caps=bool(bats) and not _caps_implied(inputs),
            periods=[
                np.flatnonzero(inputs.periods == h).tolist()
                for h in range(int(inputs.periods[-1]) + 1)
            ],
            hvac=dict(inputs.hvac or {}),
            evs=dict(inputs.evs or {}),
            deferrable=dict(inputs.deferrable or {}),
            outdoor=inputs.outdoor_temp_c.tolist() if inputs.outdoor_temp_c is not None else [],
            dt=inputs.interval_hours,
        )


def _caps_implied(inputs: DispatchInputs) -> bool:
    """Whether every optimum meets the physical caps without them (see
    :func:`_define_physical_caps`): simultaneous import and export strictly cost in every
    scenario and interval, so no optimum has them, and without them the caps hold."""
    prob = np.asarray(inputs.probabilities, dtype=float)
    if not inputs.simultaneous_flows_unprofitable or (prob <= 0).any():
        return False
    spread = inputs.import_price - inputs.export_price - inputs.incentive_per_kwh
    return bool((prob[:, None] * spread >= CAPS_MIN_COST).all())


def _define_sets(m: pyo.ConcreteModel, d: _ModelData) -> None:
    m.S = pyo.Set(initialize=d.scenarios, ordered=True, doc="scenarios (index into probabilities)")
    m.P = pyo.Set(initialize=d.players, ordered=True, doc="players: members and community owner")
    m.B = pyo.Set(initialize=d.batteries, within=m.P, ordered=True, doc="players with a battery")
    m.T = pyo.Set(initialize=d.intervals, ordered=True, doc="intervals of the day (0-based)")


def _define_battery_variables(m: pyo.ConcreteModel, d: _ModelData) -> None:
    if not d.batteries:
        return
    m.charge = pyo.Var(
        m.B,
        m.T,
        domain=pyo.NonNegativeReals,
        bounds=lambda _m, b, _t: (0.0, d.max_energy[b]),
        doc="first stage: battery charge, grid side, per interval [kWh]",
    )
    m.discharge = pyo.Var(
        m.B,
        m.T,
        domain=pyo.NonNegativeReals,
        bounds=lambda _m, b, _t: (0.0, d.max_energy[b]),
        doc="first stage: battery discharge, grid side, per interval [kWh]",
    )
    m.soc = pyo.Var(
        m.B,
        m.T,
        domain=pyo.NonNegativeReals,
        bounds=lambda _m, b, _t: (d.min_soc[b], d.capacity[b]),
        doc="first stage: battery state of charge at the end of the interval [kWh]",
    )


def _define_soc_dynamics(m: pyo.ConcreteModel, d: _ModelData) -> None:
    if not d.batteries:
        return

    def soc_balance(m: pyo.ConcreteModel, b: str, t: int) -> object:
        eta = d.efficiency[b]
        prev = d.initial_soc[b] if t == 0 else m.soc[b, t - 1]
        return m.soc[b, t] == prev + eta * m.charge[b, t] - m.discharge[b, t] / eta

    m.soc_balance = pyo.Constraint(
        m.B,
        m.T,
        rule=soc_balance,
        doc="soc[t] = soc[t-1] + eta*charge[t] - discharge[t]/eta, soc[-1] = initial SoC [kWh]",
    )
    last = d.intervals[-1]
    if d.terminal_value is not None:
        return  # receding horizon: the end SoC is free and valued in the objective
    m.soc_end = pyo.Constraint(
        m.B,
        rule=lambda m, b: m.soc[b, last] == d.initial_soc[b],
        doc="the day ends at the initial state of charge [kWh]",
    )


def _define_grid_variables(m: pyo.ConcreteModel, d: _ModelData) -> None:
    has_battery = set(d.batteries)
    pidx = d.player_index

    ev_owners = {e.owner for e in d.evs.values()} | {x.owner for x in d.deferrable.values()}

    def import_bounds(_m: pyo.ConcreteModel, s: int, p: str, t: int) -> tuple[float, float | None]:
        # without a battery or an air conditioner the physical cap import <= load is a bound
        flexible = p in has_battery or p in d.hvac or p in ev_owners
        return (0.0, None) if flexible else (0.0, d.load[s][pidx[p]][t])

    def export_bounds(_m: pyo.ConcreteModel, s: int, p: str, t: int) -> tuple[float, float | None]:
        return (0.0, None) if p in has_battery else (0.0, d.pv[s][pidx[p]][t])

    m.grid_import = pyo.Var(
        m.S,
        m.P,
        m.T,
        domain=pyo.NonNegativeReals,
        bounds=import_bounds,
        doc="second stage: grid import per scenario, player and interval [kWh]",
    )
    m.grid_export = pyo.Var(
        m.S,
        m.P,
        m.T,
        domain=pyo.NonNegativeReals,
        bounds=export_bounds,
        doc="second stage: grid export per scenario, player and interval [kWh]",
    )


def _define_energy_balance(m: pyo.ConcreteModel, d: _ModelData) -> None:
    has_battery = set(d.batteries)
    pidx = d.player_index

    evs_of: dict[str, list[str]] = {}
    for e, spec in d.evs.items():
        evs_of.setdefault(spec.owner, []).append(e)
    deferred_of: dict[str, list[str]] = {}
    for x, dspec in d.deferrable.items():
        deferred_of.setdefault(dspec.owner, []).append(x)

    def balance(m: pyo.ConcreteModel, s: int, p: str, t: int) -> object:
        flows = m.grid_import[s, p, t] - m.grid_export[s, p, t]
        if p in has_battery:
            flows = flows - m.charge[p, t] + m.discharge[p, t]
        if p in d.hvac:
            flows = flows - m.hvac_power[p, t]
        for e in evs_of.get(p, ()):
            flows = flows - m.ev_charge[e, t]
        for x in deferred_of.get(p, ()):
            flows = flows - m.deferred_power[x, t]
        return flows == d.net[s][pidx[p]][t]

    m.energy_balance = pyo.Constraint(
        m.S,
        m.P,
        m.T,
        rule=balance,
        doc="load + hvac - pv + charge - discharge = import - export, per scenario [kWh]",
    )


def _define_physical_caps(m: pyo.ConcreteModel, d: _ModelData) -> None:
    """import <= load + charge and export <= pv + discharge, per battery player.

    Left out where they cannot bind (:func:`_caps_implied`): when simultaneous import and
    export strictly cost, an optimum nets them, and a netted flow meets both caps (importing,
    import = load - pv + charge - discharge <= load + charge; exporting, alike). The optimal
    set is then the same with or without them, and the LP has 2 S B T rows fewer: at 200
    members x 96 intervals x 10 scenarios, 384,000 of 597,320, and HiGHS solves it 4x faster.
    """
    # players without a battery carry these caps as variable bounds (_define_grid_variables)
    if not d.batteries or not d.physical_caps:
        return
    pidx = d.player_index
    m.import_cap = pyo.Constraint(
        m.S,
        m.B,
        m.T,
        rule=lambda m, s, b, t: (
            m.grid_import[s, b, t]
            - m.charge[b, t]
            - (m.hvac_power[b, t] if b in d.hvac else 0.0)
            - sum(m.ev_charge[e, t] for e, v in d.evs.items() if v.owner == b)
            - sum(m.deferred_power[x, t] for x, v in d.deferrable.items() if v.owner == b)
            <= d.load[s][pidx[b]][t]
        ),
        doc="import <= load + charge: no import beyond what is consumed or stored [kWh]",
    )
    m.export_cap = pyo.Constraint(
        m.S,
        m.B,
        m.T,
        rule=lambda m, s, b, t: m.grid_export[s, b, t] - m.discharge[b, t] <= d.pv[s][pidx[b]][t],
        doc="export <= pv + discharge: no export beyond what is generated or released [kWh]",
    )


def _define_sharing(m: pyo.ConcreteModel, d: _ModelData) -> None:
    if d.incentive <= 0:
        return  # shared energy has no value in the objective; it is computed after the solve
    m.H = pyo.Set(
        initialize=range(len(d.periods)),
        ordered=True,
        doc="incentive periods (an interval each, or e.g. the hours of quarter-hours)",
    )
    m.shared = pyo.Var(
        m.S,
        m.H,
        domain=pyo.NonNegativeReals,
        doc="second stage: community shared energy of a period, min(sum export, sum import) "
        "over its intervals [kWh]",
    )

    def flows(var: pyo.Var, s: int, h: int) -> object:
        return pyo.quicksum(var[s, p, t] for t in d.periods[h] for p in m.P)

    m.shared_le_export = pyo.Constraint(
        m.S,
        m.H,
        rule=lambda m, s, h: m.shared[s, h] <= flows(m.grid_export, s, h),
        doc="shared energy <= community export of the period [kWh]",
    )
    m.shared_le_import = pyo.Constraint(
        m.S,
        m.H,
        rule=lambda m, s, h: m.shared[s, h] <= flows(m.grid_import, s, h),
        doc="shared energy <= community import of the period [kWh]",
    )


def _define_limits(m: pyo.ConcreteModel, d: _ModelData) -> None:
    """Contracted power per player and the community feeder cap, on net grid exchange."""
    if d.limit:
        for p, lim in d.limit.items():
            for s in d.scenarios:
                for t in d.intervals:
                    m.grid_import[s, p, t].setub(
                        lim
                        if m.grid_import[s, p, t].ub is None
                        else min(lim, m.grid_import[s, p, t].ub)
                    )
                    m.grid_export[s, p, t].setub(
                        lim
                        if m.grid_export[s, p, t].ub is None
                        else min(lim, m.grid_export[s, p, t].ub)
                    )
    if d.feeder_cap is not None:
        cap = d.feeder_cap

        def net(m: pyo.ConcreteModel, s: int, t: int) -> object:
            return pyo.quicksum(m.grid_import[s, p, t] - m.grid_export[s, p, t] for p in m.P)

        m.feeder_import = pyo.Constraint(
            m.S,
            m.T,
            rule=lambda m, s, t: net(m, s, t) <= cap,
            doc="community net import <= cap [kWh]",
        )
        m.feeder_export = pyo.Constraint(
            m.S,
            m.T,
            rule=lambda m, s, t: -net(m, s, t) <= cap,
            doc="community net export <= cap [kWh]",
        )


def _define_netting(m: pyo.ConcreteModel, d: _ModelData) -> None:
    """Forbid simultaneous import and export of a battery player where it could pay (MILP).

    Only added when :attr:`DispatchInputs.simultaneous_flows_unprofitable` is false; otherwise
    every optimum nets them and the model stays an LP.
    """
    if not d.netting_binaries:
        return
    big = {
        b: d.max_energy[b]
        + max(max(d.load[s][d.player_index[b]]) for s in d.scenarios)
        + max(max(d.pv[s][d.player_index[b]]) for s in d.scenarios)
        for b in d.batteries
    }
    m.importing = pyo.Var(m.S, m.B, m.T, domain=pyo.Binary, doc="1 if the player imports")
    m.netting_import = pyo.Constraint(
        m.S,
        m.B,
        m.T,
        rule=lambda m, s, b, t: m.grid_import[s, b, t] <= big[b] * m.importing[s, b, t],
        doc="import only when importing [kWh]",
    )
    m.netting_export = pyo.Constraint(
        m.S,
        m.B,
        m.T,
        rule=lambda m, s, b, t: m.grid_export[s, b, t] <= big[b] * (1 - m.importing[s, b, t]),
        doc="export only when not importing [kWh]",
    )


def _define_grid_terms(m: pyo.ConcreteModel, d: _ModelData) -> None:
    """Ramping and peak variables of the community's grid exchange."""
    if d.ramp_penalty > 0:
        m.ramp = pyo.Var(
            m.S, m.T, domain=pyo.NonNegativeReals, doc="|change of net exchange| [kWh]"
        )

        def net(m: pyo.ConcreteModel, s: int, t: int) -> object:
            return pyo.quicksum(m.grid_import[s, p, t] - m.grid_export[s, p, t] for p in m.P)

        def prev(m: pyo.ConcreteModel, s: int, t: int) -> object:
            return net(m, s, t - 1) if t > 0 else d.prev_net

        m.ramp_up = pyo.Constraint(
            m.S,
            m.T,
            rule=lambda m, s, t: (
                pyo.Constraint.Skip
                if t == 0 and d.prev_net is None
                else m.ramp[s, t] >= net(m, s, t) - prev(m, s, t)
            ),
            doc="ramp >= net[t] - net[t-1] [kWh]",
        )
        m.ramp_down = pyo.Constraint(
            m.S,
            m.T,
            rule=lambda m, s, t: (
                pyo.Constraint.Skip
                if t == 0 and d.prev_net is None
                else m.ramp[s, t] >= prev(m, s, t) - net(m, s, t)
            ),
            doc="ramp >= net[t-1] - net[t] [kWh]",
        )
    if d.peak_charge > 0:
        m.peak = pyo.Var(m.S, domain=pyo.NonNegativeReals, doc="highest community import [kWh]")
        m.peak_def = pyo.Constraint(
            m.S,
            m.T,
            rule=lambda m, s, t: m.peak[s] >= pyo.quicksum(m.grid_import[s, p, t] for p in m.P),
            doc="peak >= community import in every interval [kWh]",
        )
    if d.standalone:
        m.standalone_slack = pyo.Var(m.P, domain=pyo.NonNegativeReals, doc="bill above standalone")
        m.no_worse = pyo.Constraint(
            m.P,
            rule=lambda m, p: (
                pyo.quicksum(
                    d.prob[s]
                    * (
                        d.import_price[s][t] * m.grid_import[s, p, t]
                        - d.export_price[s][t] * m.grid_export[s, p, t]
                    )
                    for s in d.scenarios
                    for t in d.intervals
                )
                <= d.standalone[p] + m.standalone_slack[p]
            ),
            doc="expected bill with the community <= expected bill acting alone [currency]",
        )


def _define_objective(m: pyo.ConcreteModel, d: _ModelData) -> None:
    terms: list[object] = []
    for s in d.scenarios:
        w = d.prob[s]
        c_imp = [w * c if abs(w * c) >= COEF_EPS else 0.0 for c in d.import_price[s]]
        c_exp = [w * c if abs(w * c) >= COEF_EPS else 0.0 for c in d.export_price[s]]
        for p in d.players:
            for t in d.intervals:
                if c_imp[t]:
                    terms.append(c_imp[t] * m.grid_import[s, p, t])
                if c_exp[t]:
                    terms.append(-c_exp[t] * m.grid_export[s, p, t])
        if d.incentive > 0 and w * d.incentive >= COEF_EPS:
            terms.extend(-w * d.incentive * m.shared[s, h] for h in range(len(d.periods)))
        if d.carbon_cost is not None:
            terms.extend(
                w * d.carbon_cost[s][t] * m.grid_import[s, p, t]
                for p in d.players
                for t in d.intervals
                if w * d.carbon_cost[s][t] >= COEF_EPS
            )
        if d.ramp_penalty > 0:
            terms.extend(
                w * d.ramp_penalty * m.ramp[s, t]
                for t in d.intervals
                if t > 0 or d.prev_net is not None
            )
        if d.peak_charge > 0:
            terms.append(w * d.peak_charge * m.peak[s])
    if d.standalone:
        terms.extend(STANDALONE_SLACK_PENALTY * m.standalone_slack[p] for p in d.players)
    if d.batteries and d.terminal_value is not None:
        last = d.intervals[-1]
        terms.extend(
            -d.terminal_value[b] * m.soc[b, last]
            for b in d.batteries
            if d.terminal_value[b] >= COEF_EPS
        )
    if d.batteries and d.penalty > 0:
        terms.extend(
            d.penalty * (m.charge[b, t] + m.discharge[b, t])
            for b in d.batteries
            for t in d.intervals
        )
    if d.hvac:
        terms.append(comfort_cost(m, d.dt))
    if d.evs:
        terms.append(shortfall_cost(m))
    m.objective = pyo.Objective(
        expr=pyo.quicksum(terms),
        sense=pyo.minimize,
        doc="expected import cost - export revenue - sharing incentive + cycling penalty "
        "[currency]",
    )


def _define_hvac(m: pyo.ConcreteModel, d: _ModelData) -> None:
    """Air conditioners and their dwellings' RC models (:func:`optimisation.hvac.define_hvac`)."""
    define_hvac(m, d.hvac, d.outdoor, d.dt)


def _define_ev(m: pyo.ConcreteModel, d: _ModelData) -> None:
    """EV charging within each stay (:func:`optimisation.ev.define_ev`)."""
    define_ev(m, d.evs, d.dt)


def _define_deferrable(m: pyo.ConcreteModel, d: _ModelData) -> None:
    """Deferrable cycles and their start binaries
    (:func:`optimisation.deferrable.define_deferrable`)."""
    define_deferrable(m, d.deferrable)


_DEFINE_STEPS: tuple[Callable[[pyo.ConcreteModel, _ModelData], None], ...] = (
    _define_sets,
    _define_battery_variables,
    _define_soc_dynamics,
    _define_hvac,
    _define_ev,
    _define_deferrable,
    _define_grid_variables,
    _define_energy_balance,
    _define_physical_caps,
    _define_sharing,
    _define_limits,
    _define_netting,
    _define_grid_terms,
    _define_objective,
)
"""Model assembly order; each step returns early when its component is absent."""


def build_model(inputs: DispatchInputs) -> pyo.ConcreteModel:
    """Assemble the two-stage dispatch LP.

    Parameters
    ----------
    inputs : DispatchInputs
        Validated inputs.

    Returns
    -------
    pyomo.environ.ConcreteModel
        The unsolved model. Variables: ``charge``, ``discharge``, ``soc`` (battery players x
        intervals [kWh], absent without batteries), ``grid_import``, ``grid_export``
        (scenarios x players x intervals [kWh]), ``shared`` (scenarios x intervals [kWh],
        absent when the incentive is 0). The build time is kept for :func:`solve`.
    """
    start = time.perf_counter()
    data = _ModelData.from_inputs(inputs)
    model = pyo.ConcreteModel(name="ecm_day_ahead_dispatch")
    for define in _DEFINE_STEPS:
        define(model, data)
    model._ecm_inputs = inputs
    model._ecm_build_time_s = time.perf_counter() - start
    return model


# --------------------------------------------------------------------------------------------
# Solving
# --------------------------------------------------------------------------------------------


def _kwh(x: float) -> str:
    return f"{round(x, 3)} kWh"


def _soc_conflicts(inputs: DispatchInputs | None) -> list[str]:
    """Known causes of infeasibility: only a battery's SoC limits can conflict."""
    problems: list[str] = []
    for p, b in inputs.batteries.items() if inputs is not None else ():
        init = b.initial_soc_kwh
        if init > b.capacity_kwh + 1e-9:
            problems.append(
                f"battery of {p}: initial SoC {_kwh(init)} exceeds capacity {_kwh(b.capacity_kwh)}"
            )
        elif init < b.min_soc_kwh - 1e-9:
            problems.append(
                f"battery of {p}: initial SoC {_kwh(init)} is below the minimum SoC "
                f"{_kwh(b.min_soc_kwh)}"
            )
    return problems


_HIGHS_TERMINATION: Mapping[str, TerminationCondition] = types.MappingProxyType(
    {
        "kOptimal": TerminationCondition.convergenceCriteriaSatisfied,
        "kInfeasible": TerminationCondition.provenInfeasible,
        "kUnboundedOrInfeasible": TerminationCondition.infeasibleOrUnbounded,
        "kUnbounded": TerminationCondition.unbounded,
        "kObjectiveBound": TerminationCondition.objectiveLimit,
        "kObjectiveTarget": TerminationCondition.objectiveLimit,
        "kTimeLimit": TerminationCondition.maxTimeLimit,
        "kIterationLimit": TerminationCondition.iterationLimit,
        "kSolutionLimit": TerminationCondition.iterationLimit,
        "kLoadError": TerminationCondition.error,
        "kModelError": TerminationCondition.error,
        "kPresolveError": TerminationCondition.error,
        "kSolveError": TerminationCondition.error,
        "kPostsolveError": TerminationCondition.error,
    }
)
"""HiGHS model status (by name) -> termination condition, as Pyomo's HiGHS interface maps
them; any other status (not set, empty model, interrupted, unknown) is ``unknown``."""


def _clear_values(model: pyo.ConcreteModel) -> None:
    for v in model.component_data_objects(pyo.Var, descend_into=True):
        v.set_value(None, skip_validation=True)


def quiet_highs(highspy: types.ModuleType) -> object:
    """A HiGHS instance that prints nothing. Each new instance writes a banner to C stdout
    (with ``highspy-extras``, "Using BLAS" too); the buffer is flushed while stdout is
    captured, else it comes out at the next HiGHS call, in the middle of a CLI's JSON line."""
    with capture_output(capture_fd=True):
        highs = highspy.Highs()
        ctypes.CDLL(None).fflush(None)
    highs.setOptionValue("output_flag", False)
    return highs


def _highspy() -> types.ModuleType:
    try:
        import highspy
    except ImportError as exc:
        raise DispatchError(
            "solverUnavailable", "HiGHS (highspy) is not available to Pyomo"
        ) from exc
    return highspy


def _bound(x: float | None, missing: float) -> float:
    return missing if x is None else x


def _idle_value(v: VarData) -> float:
    """Value of a variable that no active constraint or objective term depends on.

    The compiler drops such a variable (e.g. ``0.0 * importing`` when a big-M is 0), so it is
    no HiGHS column; it gets the value HiGHS gives an empty zero-cost column: its lower bound,
    else its upper bound, else 0. Adding it as an empty column instead changes HiGHS's
    arithmetic in the last bits, and the degenerate LP may then pick another optimal vertex.
    """
    lo, hi = v.bounds
    return lo if lo is not None else hi if hi is not None else 0.0


def _pass_model(
    highs: object, highspy: types.ModuleType, model: pyo.ConcreteModel
) -> list[VarData]:
    """Compile the model to matrices and hand them to HiGHS in one call.

    Fixed variables are substituted by their values (they are not HiGHS columns, and their
    values stay as they are); so are variables without a non-zero coefficient in any active
    constraint or the objective (see :func:`_idle_value`). Rows are in mixed form: an
    equality is one row with equal bounds, a ranged constraint two rows (upper and lower).

    Columns are ordered by the first row they appear in (ties in the compiler's order, which
    follows the expressions), the order in which Pyomo's persistent HiGHS interface adds
    them; the compiler lists the objective's variables first. The dispatch LP is degenerate
    and HiGHS's choice among alternative optima depends on this order: with it, the plans
    are the ones the persistent interface produced (bit for bit on four closed-loop days
    checked, 196 solves), not only their objective.

    Parameters
    ----------
    highs : highspy.Highs
        Solver instance; its model is replaced.
    highspy : module
        The ``highspy`` module.
    model : pyomo.environ.ConcreteModel
        A linear (or mixed-integer linear) model with at most one active objective.

    Returns
    -------
    list of pyomo.core.base.var.VarData
        The Pyomo variable of each HiGHS column, in column order.

    Raises
    ------
    pyomo.common.errors.InfeasibleConstraintException
        A constraint without variables is violated (checked exactly, without a tolerance).
    ValueError
        More than one active objective, non-linear terms, or HiGHS rejected the matrices.
    """
    info = LinearStandardFormCompiler().write(model, mixed_form=True, set_sense=None)
    if len(info.objectives) > 1:
        raise ValueError(f"{len(info.objectives)} active objectives; at most one is supported")
    n_row = len(info.rows)
    a = info.A
    nonempty = a.indptr[1:] > a.indptr[:-1]
    first_row = np.full(a.shape[1], n_row)  # objective-only columns last
    if nonempty.any():
        first_row[nonempty] = np.minimum.reduceat(a.indices, a.indptr[:-1][nonempty])
    order = np.lexsort((np.arange(a.shape[1]), first_row))
    a = a[:, order]
    columns = [info.columns[i] for i in order]
    n_col = len(columns)
    cost = np.zeros(n_col)
    offset, maximise = 0.0, False
    if info.objectives:
        cost[:] = info.c.toarray()[0][order]
        offset = float(info.c_offset[0])
        maximise = info.objectives[0].sense == pyo.maximize
    bounds = [v.bounds for v in columns]  # explicit bounds within the domain's
    col_lower = np.array([_bound(lo, -np.inf) for lo, _ in bounds], dtype=np.float64)
    col_upper = np.array([_bound(hi, np.inf) for _, hi in bounds], dtype=np.float64)
    integrality = np.array([v.is_integer() for v in columns], dtype=np.int32)  # 1: kInteger
    kind = np.array([row.bound_type for row in info.rows], dtype=np.int8)  # 0 ==, 1 <=, -1 >=
    rhs = np.asarray(info.rhs, dtype=np.float64).reshape(n_row)
    row_lower = np.where(kind == 1, -np.inf, rhs)
    row_upper = np.where(kind == -1, np.inf, rhs)
    status = highs.passModel(
        n_col,
        n_row,
        int(a.nnz),
        highspy.MatrixFormat.kColwise,
        highspy.ObjSense.kMaximize if maximise else highspy.ObjSense.kMinimize,
        offset,
        cost,
        col_lower,
        col_upper,
        row_lower,
        row_upper,
        np.ascontiguousarray(a.indptr, dtype=np.int32),
        np.ascontiguousarray(a.indices, dtype=np.int32),
        np.ascontiguousarray(a.data, dtype=np.float64),
        integrality,
    )
    if status == highspy.HighsStatus.kError:
        raise ValueError("HiGHS rejected the compiled model (passModel returned kError)")
    return columns


def _run_highs(
    highs: object, highspy: types.ModuleType, time_limit_s: float, options: Mapping[str, object]
) -> tuple[TerminationCondition, SolutionStatus]:
    """Run HiGHS from scratch on its current model; return termination and solution status.

    Options are set as Pyomo's HiGHS interface sets them: the time limit, then ``options``
    (an unknown option or value is ignored by HiGHS, with a status it does not raise on).
    """
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("time_limit", float(time_limit_s))
    for key, option in options.items():
        highs.setOptionValue(key, option)
    highs.clearSolver()  # no basis or solution carried over from an earlier run
    highs.run()
    status = highs.getModelStatus()
    tc = _HIGHS_TERMINATION.get(status.name, TerminationCondition.unknown)
    if status == highspy.HighsModelStatus.kOptimal:
        return tc, SolutionStatus.optimal
    if highs.getInfo().primal_solution_status == 2:  # 2: feasible
        return tc, SolutionStatus.feasible
    return tc, SolutionStatus.noSolution


def _not_optimal(
    tc: TerminationCondition, sol: SolutionStatus, conflicts: list[str], time_limit_s: float
) -> DispatchError:
    """The error for a solve that ended without an optimal solution, with its reason."""
    infeasible = (TerminationCondition.provenInfeasible, TerminationCondition.infeasibleOrUnbounded)
    if tc in infeasible and conflicts:
        reason = "; ".join(conflicts) + " (soc bounds vs soc_end: the day must end there)"
    elif tc in infeasible:
        reason = "infeasible, also without presolve; no inconsistent battery SoC in the inputs"
    elif tc == TerminationCondition.maxTimeLimit:
        reason = f"time limit of {time_limit_s} s reached before optimality"
    else:
        reason = f"solver stopped with solution status {sol.name}"
    return DispatchError(tc.name, reason)


def solve(
    model: pyo.ConcreteModel,
    time_limit_s: float = 120.0,
    *,
    highs_options: Mapping[str, object] | None = None,
) -> SolveReport:
    """Solve the model with HiGHS (in memory) and load the solution only if it is optimal.

    The model is compiled to sparse matrices by Pyomo's
    :class:`~pyomo.repn.plugins.standard_form.LinearStandardFormCompiler` and passed to
    ``highspy`` in one call: on a closed-loop day (49 LPs of about 1,800 rows) the hand-over
    takes 1.35 s instead of the 4.0 s of Pyomo's persistent HiGHS interface, which builds a
    standard repn per constraint.

    Parameters
    ----------
    model : pyomo.environ.ConcreteModel
        A model from :func:`build_model` (possibly with variables fixed by the caller, which
        are substituted by their values and keep them).
    time_limit_s : float
        Solver time limit [s].
    highs_options : Mapping[str, object], optional
        HiGHS options overriding :data:`HIGHS_OPTIONS` (interior point with crossover).

    Returns
    -------
    SolveReport
        Termination condition, objective (with its constant) [currency], timings [s] and
        model size.

    Raises
    ------
    DispatchError
        The solver is unavailable, failed, hit a limit, or proved the model infeasible or
        unbounded. Variable values are cleared so no partial plan can be extracted.

    Notes
    -----
    An infeasibility that the inputs do not explain (no battery with its initial SoC outside
    its limits) is re-checked once without HiGHS presolve, which can misjudge bounds close to
    its feasibility tolerance. A constraint without variables (constants or parameters only)
    is checked by the compiler, exactly (no tolerance), and reported as infeasible. On
    success every unfixed variable has a value, also one that nothing depends on (its lower
    bound, see :func:`_idle_value`).
    """
    inputs: DispatchInputs | None = getattr(model, "_ecm_inputs", None)
    highspy = _highspy()
    options = {**HIGHS_OPTIONS, **(highs_options or {})}
    infeasible = (TerminationCondition.provenInfeasible, TerminationCondition.infeasibleOrUnbounded)
    conflicts = _soc_conflicts(inputs)
    start = time.perf_counter()
    try:
        highs = quiet_highs(highspy)
        columns = _pass_model(highs, highspy, model)
        tc, sol = _run_highs(highs, highspy, time_limit_s, options)
        if tc in infeasible and not conflicts:
            # HiGHS presolve can wrongly declare an LP infeasible (e.g. bounds near its 1e-7
            # feasibility tolerance, ERGO-Code/HiGHS#2511); the inputs explain no
            # infeasibility, so confirm without presolve.
            remaining = time_limit_s - (time.perf_counter() - start)
            tc, sol = _run_highs(
                highs, highspy, max(remaining, 0.0), {**options, "presolve": "off"}
            )
    except InfeasibleConstraintException:  # a violated constraint without variables
        tc, sol = TerminationCondition.provenInfeasible, SolutionStatus.noSolution
    except Exception as exc:  # any compiler/solver failure is a failed dispatch
        _clear_values(model)
        raise DispatchError("error", f"HiGHS raised {type(exc).__name__}: {exc}") from exc
    solve_time = time.perf_counter() - start
    if tc != TerminationCondition.convergenceCriteriaSatisfied or sol != SolutionStatus.optimal:
        _clear_values(model)
        raise _not_optimal(tc, sol, conflicts, time_limit_s)
    for v, x in zip(columns, highs.getSolution().col_value, strict=True):
        v.set_value(x, skip_validation=True)
    loaded = {id(v) for v in columns}
    for v in model.component_data_objects(pyo.Var, descend_into=True):
        if not v.fixed and id(v) not in loaded:
            v.set_value(_idle_value(v), skip_validation=True)
    StaleFlagManager.mark_all_as_stale(delayed=True)
    return SolveReport(
        termination_condition=tc.name,
        objective=float(pyo.value(model.objective)),  # with its constant
        build_time_s=float(getattr(model, "_ecm_build_time_s", float("nan"))),
        solve_time_s=solve_time,
        n_variables=int(model.nvariables()),
        n_constraints=int(model.nconstraints()),
    )


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _values(var: pyo.Var, index: Sequence[tuple[object, ...]], name: str) -> np.ndarray:
    vals = [var[i].value for i in index]
    if any(v is None for v in vals):
        raise DispatchError(
            "noSolution", f"{name} has no value: solve the model successfully first"
        )
    return np.array(vals, dtype=float)


def _clip_noise(
    a: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float, name: str
) -> np.ndarray:
    # HiGHS's feasibility tolerance applies to the scaled model: unscaled, a violation grows
    # with the values' magnitude (8.9e-7 kWh on a 28 kWh export was seen)
    tol = NOISE_TOL * max(1.0, float(np.abs(a).max()) if a.size else 1.0)
    if (a < np.asarray(lo) - tol).any() or (a > np.asarray(hi) + tol).any():
        raise DispatchError(
            "convergenceCriteriaSatisfied", f"{name} violates its bounds beyond solver noise"
        )
    return np.clip(a, lo, hi)


def _period_shared(
    inputs: DispatchInputs, grid_import: np.ndarray, grid_export: np.ndarray
) -> np.ndarray:
    """Community shared energy (S, T) [kWh]: per incentive period, ``min(sum export, sum
    import)`` over its intervals and players, spread equally over the period's intervals (so
    that it sums to the period's value; with one interval per period, that interval's)."""
    per = inputs.periods
    imp = per_period(grid_import.sum(axis=1), per)
    exp = per_period(grid_export.sum(axis=1), per)
    return (np.minimum(imp, exp) / np.bincount(per))[:, per]


def _assemble_plan(
    inputs: DispatchInputs,
    charge: np.ndarray,
    discharge: np.ndarray,
    soc: np.ndarray,
    grid_import: np.ndarray,
    grid_export: np.ndarray,
) -> pd.DataFrame:
    """Build the plan frame from first-stage (P, T) and second-stage (S, P, T) arrays [kWh]."""
    s_n, p_n, t_n = inputs.load_kwh.shape
    prob = inputs.probabilities
    shared = _period_shared(inputs, grid_import, grid_export)  # (S, T)

    def with_expected(x: np.ndarray) -> np.ndarray:  # (S, ...) -> (S+1, ...)
        return np.concatenate([x, np.tensordot(prob, x, axes=1)[None]], axis=0)

    def first_stage(x: np.ndarray) -> np.ndarray:  # (P, T): same in every scenario
        return np.broadcast_to(x, (s_n + 1, p_n, t_n)).reshape(-1)

    def community(x: np.ndarray) -> np.ndarray:  # (S, T): same for every player
        return np.broadcast_to(with_expected(x)[:, None, :], (s_n + 1, p_n, t_n)).reshape(-1)

    def per_player(x: np.ndarray) -> np.ndarray:  # (S, P, T)
        return with_expected(x).reshape(-1)

    n_blocks = (s_n + 1) * p_n
    ts = pd.DatetimeIndex(inputs.ts)
    return pd.DataFrame(
        {
            "member_id": np.tile(np.repeat(np.array(inputs.players, dtype=object), t_n), s_n + 1),
            "ts": ts[np.tile(np.arange(t_n), n_blocks)],
            "scenario": np.repeat(
                np.array([*inputs.scenario_labels, EXPECTED_SCENARIO], dtype=object), p_n * t_n
            ),
            "probability": np.repeat(np.append(prob, 1.0), p_n * t_n),
            "load_kwh": per_player(inputs.load_kwh),
            "pv_kwh": per_player(inputs.pv_kwh),
            "charge_kwh": first_stage(charge),
            "discharge_kwh": first_stage(discharge),
            "soc_kwh": first_stage(soc),
            "import_kwh": per_player(grid_import),
            "export_kwh": per_player(grid_export),
            "import_price": community(inputs.import_price),
            "export_price": community(inputs.export_price),
            "community_shared_kwh": community(shared),
        },
        columns=list(PLAN_COLUMNS),
    )


def _net_flows(
    inputs: DispatchInputs,
    charge: np.ndarray,
    discharge: np.ndarray,
    simultaneous: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """Import and export (S, P, T) [kWh] that satisfy the balance, plus a simultaneous part."""
    net = inputs.load_kwh - inputs.pv_kwh + charge[None] - discharge[None]
    return np.maximum(net, 0.0) + simultaneous, np.maximum(-net, 0.0) + simultaneous


def extract_results(model: pyo.ConcreteModel, inputs: DispatchInputs) -> pd.DataFrame:
    """Read the optimal plan out of a solved model.

    Solver noise is cleaned: values within 1e-7 outside their bounds are clipped, then import
    and export are re-derived from the energy balance so that
    ``load - pv + charge - discharge = import - export`` holds to rounding and both are >= 0.
    A simultaneous import/export chosen by the LP is kept where it exceeds 1e-9 kWh in a
    scenario of positive probability (elsewhere the objective does not determine it).
    ``community_shared_kwh`` is ``min(sum_p import, sum_p export)`` of the cleaned flows (per
    incentive period, spread equally over its intervals: see ``share_periods``).

    Parameters
    ----------
    model : pyomo.environ.ConcreteModel
        A model built from ``inputs`` and solved by :func:`solve`.
    inputs : DispatchInputs
        The inputs the model was built from.

    Returns
    -------
    pandas.DataFrame
        One row per scenario (``s0, s1, ...`` then ``expected``), player and interval, with
        :data:`PLAN_COLUMNS`. Energies in [kWh], prices in [currency/kWh]. The ``expected``
        rows have probability 1 and hold the probability-weighted means of the scenario
        quantities; charge, discharge and SoC are first-stage and equal in all scenarios.
        Players without a battery have charge, discharge and SoC 0.

    Raises
    ------
    DispatchError
        The model holds no (complete) solution, or a value violates its bounds beyond noise.
    """
    s_n, p_n, t_n = inputs.load_kwh.shape
    charge = np.zeros((p_n, t_n))
    discharge = np.zeros((p_n, t_n))
    soc = np.zeros((p_n, t_n))
    for i, p in enumerate(inputs.players):
        spec = inputs.batteries.get(p)
        if spec is None:
            continue
        idx = [(p, t) for t in range(t_n)]
        hi = _snap_kwh(spec.power_kw * inputs.interval_hours)  # the LP's bounds (_ModelData)
        charge[i] = _clip_noise(_values(model.charge, idx, f"charge of {p}"), 0.0, hi, "charge")
        discharge[i] = _clip_noise(
            _values(model.discharge, idx, f"discharge of {p}"), 0.0, hi, "discharge"
        )
        lo, cap = _snap_kwh(spec.min_soc_kwh), _snap_kwh(spec.capacity_kwh)
        soc[i] = _clip_noise(_values(model.soc, idx, f"soc of {p}"), lo, cap, "soc")
    idx3 = [(s, p, t) for s in range(s_n) for p in inputs.players for t in range(t_n)]
    imp = _values(model.grid_import, idx3, "grid_import").reshape(s_n, p_n, t_n)
    exp = _values(model.grid_export, idx3, "grid_export").reshape(s_n, p_n, t_n)
    imp = _clip_noise(imp, 0.0, np.inf, "grid_import")
    exp = _clip_noise(exp, 0.0, np.inf, "grid_export")
    simultaneous = np.minimum(imp, exp)
    keep = (simultaneous > SIMULTANEOUS_TOL) & (inputs.probabilities > 0)[:, None, None]
    if inputs.simultaneous_flows_unprofitable:
        keep[:] = False  # netting them never costs more: any gross flow is a tie, not a choice
    inputs = with_flexible_load(model, inputs)  # flexible loads are part of their owner's load
    imp, exp = _net_flows(inputs, charge, discharge, np.where(keep, simultaneous, 0.0))
    return _assemble_plan(inputs, charge, discharge, soc, imp, exp)


def hvac_schedule(model: pyo.ConcreteModel, inputs: DispatchInputs) -> np.ndarray:
    """Planned air conditioner electricity per player and interval, (P, T) [kWh] (0 without
    one), solver noise clipped into the unit's range."""
    p_n, t_n = len(inputs.players), inputs.n_intervals
    out = np.zeros((p_n, t_n))
    for i, p in enumerate(inputs.players):
        spec = (inputs.hvac or {}).get(p)
        if spec is not None:
            idx = [(p, t) for t in range(t_n)]
            out[i] = _clip_noise(
                _values(model.hvac_power, idx, f"hvac of {p}"),
                0.0,
                spec.max_power_kw * inputs.interval_hours,
                "hvac_power",
            )
    return out


def ev_schedule(model: pyo.ConcreteModel, inputs: DispatchInputs) -> np.ndarray:
    """Planned EV charging per stay and interval, (E, T) [kWh, grid side], in ``inputs.evs``
    order, solver noise clipped."""
    evs = inputs.evs or {}
    out = np.zeros((len(evs), inputs.n_intervals))
    for k, (e, spec) in enumerate(evs.items()):
        idx = [(e, t) for t in range(inputs.n_intervals)]
        hi = spec.max_power_kw * inputs.interval_hours
        out[k] = _clip_noise(_values(model.ev_charge, idx, f"EV {e}"), 0.0, hi, "ev_charge")
    return out


def flexible_load(model: pyo.ConcreteModel, inputs: DispatchInputs) -> np.ndarray:
    """Air conditioners' and EVs' planned electricity per player and interval, (P, T) [kWh]."""
    out = hvac_schedule(model, inputs) if inputs.hvac else np.zeros(inputs.load_kwh.shape[1:])
    row = {p: i for i, p in enumerate(inputs.players)}
    if inputs.evs:
        for spec, charge in zip(inputs.evs.values(), ev_schedule(model, inputs), strict=True):
            out[row[spec.owner]] += charge
    if inputs.deferrable:
        power, _ = deferrable_schedule(model, inputs.deferrable, inputs.n_intervals)
        for spec, p in zip(inputs.deferrable.values(), power, strict=True):
            out[row[spec.owner]] += p
    return out


def with_flexible_load(model: pyo.ConcreteModel, inputs: DispatchInputs) -> DispatchInputs:
    """``inputs`` with the flexible loads' planned electricity (:func:`flexible_load`) added to
    every scenario's load and the assets removed: the fixed-load problem the plan's rows and
    money describe (``inputs`` itself where it has no flexible load)."""
    import dataclasses

    if not (inputs.hvac or inputs.evs or inputs.deferrable):
        return inputs
    return dataclasses.replace(
        inputs,
        load_kwh=inputs.load_kwh + flexible_load(model, inputs)[None],
        hvac=None,
        outdoor_temp_c=None,
        evs=None,
        deferrable=None,
    )


def extract_hvac(model: pyo.ConcreteModel, inputs: DispatchInputs) -> pd.DataFrame:
    """The air conditioners' plan: ``member_id, ts, hvac_kwh`` [kWh], ``indoor_temp_c``,
    ``t_min_c``, ``t_max_c`` [degC] and ``outside_band_k`` [K], per interval (empty without
    air conditioners). The temperature is re-simulated from the clipped schedule."""
    from optimisation.hvac import simulate

    rows = []
    sched = hvac_schedule(model, inputs) if inputs.hvac else None
    for p, spec in (inputs.hvac or {}).items():
        assert sched is not None and inputs.outdoor_temp_c is not None
        row = inputs.players.index(p)
        temps = simulate(spec, inputs.outdoor_temp_c, inputs.interval_hours, sched[row])
        lo, hi = spec.band(inputs.n_intervals)
        rows.append(
            pd.DataFrame(
                {
                    "member_id": p,
                    "ts": pd.DatetimeIndex(inputs.ts),
                    "hvac_kwh": sched[row],
                    "indoor_temp_c": temps,
                    "t_min_c": lo,
                    "t_max_c": hi,
                    "outside_band_k": np.maximum(lo - temps, 0) + np.maximum(temps - hi, 0),
                }
            )
        )
    cols = ["member_id", "ts", "hvac_kwh", "indoor_temp_c", "t_min_c", "t_max_c", "outside_band_k"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------------------------
# Baseline, fallback, summary
# --------------------------------------------------------------------------------------------


def _cost_terms(
    inputs: DispatchInputs, grid_import: np.ndarray, grid_export: np.ndarray
) -> dict[str, float]:
    prob = inputs.probabilities
    bill = (inputs.import_price[:, None, :] * grid_import).sum(axis=(1, 2)) - (
        inputs.export_price[:, None, :] * grid_export
    ).sum(axis=(1, 2))
    shared = _period_shared(inputs, grid_import, grid_export).sum(axis=1)
    cost = float(prob @ bill)
    shared_kwh = float(prob @ shared)
    incentive = inputs.incentive_per_kwh * shared_kwh
    return {
        "expected_cost": cost,
        "expected_incentive": incentive,
        "expected_net_cost": cost - incentive,
        "expected_shared_kwh": shared_kwh,
    }


def no_battery_baseline(inputs: DispatchInputs) -> dict[str, float]:
    """Expected cost and incentive with every battery idle (closed form, no solver).

    Each player imports ``max(load - pv, 0)`` and exports ``max(pv - load, 0)``; shared energy
    is ``min(sum import, sum export)`` per scenario and incentive period. This is a feasible
    point of the LP (idle batteries at their initial SoC), so the LP objective never exceeds
    it.

    Parameters
    ----------
    inputs : DispatchInputs
        Dispatch inputs; batteries are ignored.

    Returns
    -------
    dict of str to float
        ``expected_cost`` [currency] (import cost - export revenue), ``expected_incentive``
        [currency], ``expected_net_cost`` [currency], ``expected_shared_kwh`` [kWh] and
        ``objective`` [currency] (= net cost; an idle battery has no cycling penalty).
    """
    net = inputs.load_kwh - inputs.pv_kwh
    out = _cost_terms(inputs, np.maximum(net, 0.0), np.maximum(-net, 0.0))
    out["objective"] = out["expected_net_cost"]
    return out


def summarise_plan(plan: pd.DataFrame, inputs: DispatchInputs) -> dict[str, float]:
    """Expected cost, incentive and shared energy of a plan (LP or rule-based).

    Parameters
    ----------
    plan : pandas.DataFrame
        Plan with :data:`PLAN_COLUMNS` built from ``inputs``.
    inputs : DispatchInputs
        The inputs of the plan (for the incentive rate).

    Returns
    -------
    dict of str to float
        ``expected_cost``, ``expected_incentive``, ``expected_net_cost`` [currency] and
        ``expected_shared_kwh`` [kWh], weighted by scenario probability.
    """
    sc = plan[plan["scenario"] != EXPECTED_SCENARIO]
    bill = sc["import_price"] * sc["import_kwh"] - sc["export_price"] * sc["export_kwh"]
    cost = float((sc["probability"] * bill).sum())
    per_interval = sc.drop_duplicates(["scenario", "ts"])
    shared_kwh = float((per_interval["probability"] * per_interval["community_shared_kwh"]).sum())
    incentive = inputs.incentive_per_kwh * shared_kwh
    return {
        "expected_cost": cost,
        "expected_incentive": incentive,
        "expected_net_cost": cost - incentive,
        "expected_shared_kwh": shared_kwh,
    }


def rule_based_plan(inputs: DispatchInputs) -> pd.DataFrame:
    """Greedy self-consumption plan, the fallback when the LP fails (no solver).

    Each battery charges from its owner's own PV surplus and discharges to its owner's own
    load, within its power, capacity and minimum-SoC limits; the end-of-day SoC is free. The
    schedule is first-stage: it is decided on the probability-weighted load and PV, and every
    scenario then nets its own import and export against it. A start SoC outside
    ``[0, capacity]`` is clamped into it; below the minimum SoC the battery only charges.
    The caller labels the result as a fallback.

    Parameters
    ----------
    inputs : DispatchInputs
        Dispatch inputs.

    Returns
    -------
    pandas.DataFrame
        Plan with :data:`PLAN_COLUMNS`, as :func:`extract_results`.
    """
    s_n, p_n, t_n = inputs.load_kwh.shape
    prob = inputs.probabilities
    e_surplus = np.tensordot(prob, inputs.pv_kwh - inputs.load_kwh, axes=1)  # (P, T)
    charge = np.zeros((p_n, t_n))
    discharge = np.zeros((p_n, t_n))
    soc = np.zeros((p_n, t_n))
    for i, p in enumerate(inputs.players):
        spec = inputs.batteries.get(p)
        if spec is None:
            continue
        eta, cap = spec.efficiency, spec.capacity_kwh
        max_e, floor = spec.power_kw * inputs.interval_hours, spec.min_soc_kwh
        level = min(max(spec.initial_soc_kwh, 0.0), cap)
        for t in range(t_n):
            surplus = float(e_surplus[i, t])
            if surplus > 0:
                charge[i, t] = max(min(surplus, max_e, (cap - level) / eta), 0.0)
                level = min(level + eta * charge[i, t], cap)
            elif surplus < 0:
                discharge[i, t] = max(min(-surplus, max_e, (level - floor) * eta), 0.0)
                level = max(level - discharge[i, t] / eta, 0.0)
            soc[i, t] = level
    imp, exp = _net_flows(inputs, charge, discharge, 0.0)
    return _assemble_plan(inputs, charge, discharge, soc, imp, exp)


LARGE_PLAN_COLUMNS = 400_000
"""LP columns above which :func:`plan_day` builds the plan as matrices and solves it with
HiPO without crossover (:func:`optimisation.dispatch_matrix.plan_large`). Measured on 2 cores
(``ecm bench dispatch``): 200 members x 96 quarter-hours x 10 scenarios (442,560 columns) in
25 s instead of 46 s through Pyomo with interior point and crossover, the same objective;
1,000 members (2.2 million columns) in 5.5 minutes, where IPX did not finish in 15. Smaller
plans (the demo: 8,400 columns) keep the Pyomo model and a vertex solution."""


def lp_columns(inputs: DispatchInputs) -> int:
    """Columns of the dispatch LP of ``inputs`` without building it: import and export per
    scenario, player and interval, three battery columns per battery and interval, shared
    energy per scenario and period."""
    s_n, p_n, t_n = inputs.load_kwh.shape
    periods = int(inputs.periods[-1]) + 1 if len(inputs.periods) else t_n
    return 2 * s_n * p_n * t_n + 3 * len(inputs.batteries) * t_n + s_n * periods


def is_large(inputs: DispatchInputs) -> bool:
    """Whether :func:`plan_day` takes the matrix path: more than :data:`LARGE_PLAN_COLUMNS`
    columns, and an LP (where simultaneous import and export could pay, the netting binaries
    make a MILP, which stays on the Pyomo model)."""
    return (
        lp_columns(inputs) > LARGE_PLAN_COLUMNS
        and inputs.simultaneous_flows_unprofitable
        and not inputs.hvac  # air conditioners and EVs are in the Pyomo model only
        and not inputs.evs
        and not inputs.deferrable
    )


def plan_day(inputs: DispatchInputs, time_limit_s: float = 120.0) -> DispatchResult:
    """Build, solve and extract the day-ahead plan, with a summary against idle batteries.

    Large plans (:func:`is_large`) are assembled as matrices and solved by HiPO without
    crossover (:func:`optimisation.dispatch_matrix.plan_large`); the plan has the same rows.

    Parameters
    ----------
    inputs : DispatchInputs
        Dispatch inputs.
    time_limit_s : float
        Solver time limit [s].

    Returns
    -------
    DispatchResult
        Plan, solve report and summary (money in [currency], energy in [kWh]):
        ``expected_cost``, ``expected_incentive``, ``expected_net_cost``, ``no_battery_cost``,
        ``no_battery_incentive``, ``no_battery_net_cost``,
        ``expected_savings`` (= no-battery net cost - expected net cost),
        ``expected_shared_kwh`` and the LP ``objective``.

    Raises
    ------
    DispatchError
        The LP was not solved to optimality; no plan is returned. Callers may fall back to
        :func:`rule_based_plan`.
    """
    hvac = ev = deferred = None
    if is_large(inputs):
        from optimisation.dispatch_matrix import plan_large  # it builds on this module

        plan, report = plan_large(inputs, time_limit_s=time_limit_s)
    else:
        model = build_model(inputs)
        report = solve(model, time_limit_s=time_limit_s)
        plan = extract_results(model, inputs)
        if inputs.hvac:
            hvac = extract_hvac(model, inputs)
        if inputs.evs:
            ev = ev_frame(inputs.evs, ev_schedule(model, inputs), pd.DatetimeIndex(inputs.ts))
        if inputs.deferrable:
            _, starts = deferrable_schedule(model, inputs.deferrable, inputs.n_intervals)
            deferred = deferrable_frame(inputs.deferrable, starts, pd.DatetimeIndex(inputs.ts))
        inputs = with_flexible_load(model, inputs)
    mine = summarise_plan(plan, inputs)
    base = no_battery_baseline(inputs)
    summary = {
        "expected_cost": mine["expected_cost"],
        "expected_incentive": mine["expected_incentive"],
        "expected_net_cost": mine["expected_net_cost"],
        "no_battery_cost": base["expected_cost"],
        "no_battery_incentive": base["expected_incentive"],
        "no_battery_net_cost": base["expected_net_cost"],
        "expected_savings": base["expected_net_cost"] - mine["expected_net_cost"],
        "expected_shared_kwh": mine["expected_shared_kwh"],
        "objective": report.objective,
    }
    return DispatchResult(
        plan=plan, report=report, summary=summary, hvac=hvac, ev=ev, deferrable=deferred
    )
