"""The dispatch LP of :mod:`optimisation.dispatch`, assembled directly as sparse matrices.

The real-time layer (:mod:`optimisation.control`) solves a small dispatch LP at every interval
of every replayed day: 24 to 48 LPs a day, plus the one of perfect foresight. Built through
Pyomo, each costs about 0.15 s of model building and compilation for 20 ms of HiGHS; on a
backfill that was 3.7 s of the 6 s a day takes to settle. This module writes the same LP
(every ``_define_*`` step of :mod:`optimisation.dispatch`, from the same snapped
:class:`~optimisation.dispatch._ModelData`) as column blocks and COO triplets with numpy, in
the manner of linopy, and hands it to ``highspy`` in one call: about 3 ms per LP.

The day-ahead plan keeps the Pyomo model (its structure is what the documentation, the
structural tests and the canonical settlement solution are written against), except for
large communities (:func:`plan_large`, more than
:data:`~optimisation.dispatch.LARGE_PLAN_COLUMNS` columns): there the Pyomo build alone takes
a minute and gigabytes, and the matrices go to HiGHS's factorisation interior point solver
HiPO (``highspy-extras``), which solves 1,000 members x 96 quarter-hours x 10 scenarios in a
few minutes where IPX did not finish in fifteen. That both
build the same LP is a property test: on random inputs covering every optional term, the
optimal objectives agree and the matrix solution is feasible for the Pyomo model
(``tests/optimisation/test_dispatch_matrix.py``). Which of several optimal vertices HiGHS
returns depends on column order and may differ between the two.

Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from scipy import sparse

from optimisation.dispatch import (
    _HIGHS_TERMINATION,
    COEF_EPS,
    HIGHS_OPTIONS,
    STANDALONE_SLACK_PENALTY,
    DispatchError,
    DispatchInputs,
    SolveReport,
    _assemble_plan,
    _clip_noise,
    _highspy,
    _ModelData,
    _net_flows,
    _not_optimal,
    _run_highs,
    _soc_conflicts,
    quiet_highs,
)

__all__ = [
    "MatrixLP",
    "build_matrix",
    "extract_plan",
    "hipo_available",
    "large_options",
    "plan_large",
    "solve_matrix",
]


class _Blocks:
    """Columns, rows and triplets of an LP under construction."""

    def __init__(self) -> None:
        self.n_col = 0
        self.col_lo: list[np.ndarray] = []
        self.col_hi: list[np.ndarray] = []
        self.cost: list[np.ndarray] = []
        self.integer: list[np.ndarray] = []
        self.n_row = 0
        self.row_lo: list[np.ndarray] = []
        self.row_hi: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []

    def columns(
        self, shape: tuple[int, ...], lo: object, hi: object, integer: bool = False
    ) -> np.ndarray:
        """Add a block of columns; return their indices with ``shape``."""
        n = int(np.prod(shape))
        idx = np.arange(self.n_col, self.n_col + n).reshape(shape)
        self.n_col += n
        self.col_lo.append(np.broadcast_to(np.asarray(lo, float), shape).ravel())
        self.col_hi.append(np.broadcast_to(np.asarray(hi, float), shape).ravel())
        self.cost.append(np.zeros(n))
        self.integer.append(np.full(n, int(integer), dtype=np.int32))
        return idx

    def rows_(self, shape: tuple[int, ...], lo: object, hi: object) -> np.ndarray:
        """Add a block of rows ``lo <= a x <= hi``; return their indices with ``shape``."""
        n = int(np.prod(shape))
        idx = np.arange(self.n_row, self.n_row + n).reshape(shape)
        self.n_row += n
        self.row_lo.append(np.broadcast_to(np.asarray(lo, float), shape).ravel())
        self.row_hi.append(np.broadcast_to(np.asarray(hi, float), shape).ravel())
        return idx

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: object) -> None:
        """Add coefficients ``vals`` at ``(rows, cols)`` (broadcast together)."""
        r, c, v = np.broadcast_arrays(rows, cols, np.asarray(vals, float))
        self.rows.append(r.ravel())
        self.cols.append(c.ravel())
        self.vals.append(v.ravel())


@dataclass
class MatrixLP:
    """A dispatch LP in matrix form, its column indices and (once solved) its HiGHS model.

    Attributes
    ----------
    inputs : DispatchInputs
        What it was built from.
    charge, discharge, soc : ndarray of int (B, T)
        Column indices of the battery variables, batteries in player order.
    battery_rows : ndarray of int (B,)
        Index in ``inputs.players`` of each battery player.
    a : scipy.sparse.csc_matrix
        Constraint matrix.
    col_lower, col_upper, cost, row_lower, row_upper : ndarray
        Bounds [kWh] and costs [currency/kWh].
    integrality : ndarray of int
        1 for the netting binaries, else 0.
    """

    inputs: DispatchInputs
    charge: np.ndarray
    discharge: np.ndarray
    soc: np.ndarray
    battery_rows: np.ndarray
    a: sparse.csc_matrix
    col_lower: np.ndarray
    col_upper: np.ndarray
    cost: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    integrality: np.ndarray
    build_time_s: float = 0.0
    highs: object | None = None
    col_value: np.ndarray | None = None
    objective: float | None = None

    def battery_flows(self) -> tuple[np.ndarray, np.ndarray]:
        """Solved charge and discharge per player and interval, (P, T) [kWh] (0 without a
        battery), solver noise clipped into their bounds as
        :func:`~optimisation.dispatch.extract_results` does.

        Raises
        ------
        DispatchError
            Not solved, or a value outside its bounds beyond solver noise.
        """
        if self.col_value is None:
            raise DispatchError("noSolution", "solve the matrix LP successfully first")
        p_n, t_n = len(self.inputs.players), self.inputs.n_intervals
        ch, dis = np.zeros((p_n, t_n)), np.zeros((p_n, t_n))
        for out, idx, name in ((ch, self.charge, "charge"), (dis, self.discharge, "discharge")):
            out[self.battery_rows] = _clip_noise(
                self.col_value[idx], self.col_lower[idx], self.col_upper[idx], name
            )
        return ch, dis

    def first_move_objective(
        self, charge: np.ndarray, discharge: np.ndarray, time_limit_s: float = 30.0
    ) -> float:
        """Optimal objective [currency] with the first interval's battery moves held at
        ``charge``, ``discharge`` (P,) [kWh], re-solved warm (dual simplex from the optimal
        basis). The solved values are kept; only the objective is read (it is unique, the
        optimal moves are not).

        Raises
        ------
        DispatchError
            Not solved yet, or the re-solved LP is not optimal.
        """
        if self.highs is None:
            raise DispatchError("noSolution", "solve the matrix LP successfully first")
        highspy = _highspy()
        highs = self.highs
        idx = np.concatenate([self.charge[:, 0], self.discharge[:, 0]]).astype(np.int32)
        vals = np.concatenate(
            [
                np.asarray(charge, float)[self.battery_rows],
                np.asarray(discharge, float)[self.battery_rows],
            ]
        )
        if idx.size == 0:
            return float(self.objective)
        highs.changeColsBounds(idx.size, idx, vals, vals)
        highs.setOptionValue("solver", "simplex")
        highs.setOptionValue("time_limit", float(time_limit_s))
        highs.run()
        status = highs.getModelStatus()
        obj = float(highs.getInfo().objective_function_value)
        highs.changeColsBounds(idx.size, idx, self.col_lower[idx], self.col_upper[idx])
        if status != highspy.HighsModelStatus.kOptimal:
            tc = _HIGHS_TERMINATION.get(status.name, None)
            raise DispatchError(
                tc.name if tc is not None else "unknown",
                f"re-solve with fixed moves stopped: {status.name}",
            )
        return obj


def build_matrix(
    inputs: DispatchInputs, first: tuple[np.ndarray, np.ndarray] | None = None
) -> MatrixLP:
    """Assemble the dispatch LP of :func:`optimisation.dispatch.build_model` as matrices.

    Parameters
    ----------
    inputs : DispatchInputs
        Validated inputs.
    first : (charge, discharge) of ndarray (P,), optional
        Hold the first interval's battery moves at these [kWh] (equal column bounds).

    Returns
    -------
    MatrixLP
    """
    if inputs.hvac or inputs.evs or inputs.deferrable:
        raise NotImplementedError(
            "air conditioners, EVs and deferrable loads are planned by the Pyomo model "
            "(optimisation.dispatch.build_model)"
        )
    start = time.perf_counter()
    d = _ModelData.from_inputs(inputs)
    s_n, p_n, t_n = len(d.scenarios), len(d.players), len(d.intervals)
    bats = d.batteries
    b_n = len(bats)
    brow = np.array([d.player_index[b] for b in bats], dtype=int)
    is_bat = np.zeros(p_n, bool)
    is_bat[brow] = True
    prob = np.asarray(d.prob, float)
    load, pv, net = (np.asarray(x, float).reshape(s_n, p_n, t_n) for x in (d.load, d.pv, d.net))
    ip = np.asarray(d.import_price, float).reshape(s_n, t_n)
    ep = np.asarray(d.export_price, float).reshape(s_n, t_n)
    blk = _Blocks()
    col = lambda v: np.array([v[b] for b in bats], float)  # noqa: E731 - per-battery vector
    e_max, eta = col(d.max_energy), col(d.efficiency)
    cap, smin, s0 = col(d.capacity), col(d.min_soc), col(d.initial_soc)

    # _define_battery_variables
    ch = blk.columns((b_n, t_n), 0.0, e_max[:, None])
    dis = blk.columns((b_n, t_n), 0.0, e_max[:, None])
    soc = blk.columns((b_n, t_n), smin[:, None], cap[:, None])
    # _define_grid_variables and _define_limits (bounds)
    imp_hi = np.where(is_bat[None, :, None], np.inf, load)
    exp_hi = np.where(is_bat[None, :, None], np.inf, pv)
    if d.limit:
        lim = np.array([d.limit.get(p, np.inf) for p in d.players])[None, :, None]
        imp_hi, exp_hi = np.minimum(imp_hi, lim), np.minimum(exp_hi, lim)
    imp = blk.columns((s_n, p_n, t_n), 0.0, imp_hi)
    exp = blk.columns((s_n, p_n, t_n), 0.0, exp_hi)

    # _define_soc_dynamics
    if b_n:
        rhs = np.where(np.arange(t_n)[None] == 0, s0[:, None], 0.0)
        r = blk.rows_((b_n, t_n), rhs, rhs)
        blk.add(r, soc, 1.0)
        blk.add(r[:, 1:], soc[:, :-1], -1.0)
        blk.add(r, ch, -eta[:, None])
        blk.add(r, dis, 1.0 / eta[:, None])
        if d.terminal_value is None:
            r = blk.rows_((b_n,), s0, s0)
            blk.add(r, soc[:, -1], 1.0)
    # _define_energy_balance
    r = blk.rows_((s_n, p_n, t_n), net, net)
    blk.add(r, imp, 1.0)
    blk.add(r, exp, -1.0)
    if b_n:
        blk.add(r[:, brow], ch[None], -1.0)
        blk.add(r[:, brow], dis[None], 1.0)
    # _define_physical_caps
    if b_n and d.physical_caps:
        r = blk.rows_((s_n, b_n, t_n), -np.inf, load[:, brow])
        blk.add(r, imp[:, brow], 1.0)
        blk.add(r, ch[None], -1.0)
        r = blk.rows_((s_n, b_n, t_n), -np.inf, pv[:, brow])
        blk.add(r, exp[:, brow], 1.0)
        blk.add(r, dis[None], -1.0)
    # _define_sharing
    shared = None
    if d.incentive > 0:
        per = np.asarray(inputs.periods)  # incentive period of each interval
        shared = blk.columns((s_n, len(d.periods)), 0.0, np.inf)
        for flows in (exp, imp):
            r = blk.rows_((s_n, len(d.periods)), -np.inf, 0.0)
            blk.add(r, shared, 1.0)
            blk.add(r[:, per][:, None, :], flows, -1.0)
    # _define_limits (feeder)
    if d.feeder_cap is not None:
        for sign in (1.0, -1.0):
            r = blk.rows_((s_n, t_n), -np.inf, d.feeder_cap)
            blk.add(r[:, None, :], imp, sign)
            blk.add(r[:, None, :], exp, -sign)
    # _define_netting
    if d.netting_binaries:
        big = np.array(
            [
                d.max_energy[b] + load[:, d.player_index[b]].max() + pv[:, d.player_index[b]].max()
                for b in bats
            ]
        )
        importing = blk.columns((s_n, b_n, t_n), 0.0, 1.0, integer=True)
        r = blk.rows_((s_n, b_n, t_n), -np.inf, 0.0)
        blk.add(r, imp[:, brow], 1.0)
        blk.add(r, importing, -big[None, :, None])
        r = blk.rows_(
            (s_n, b_n, t_n), -np.inf, np.broadcast_to(big[None, :, None], (s_n, b_n, t_n))
        )
        blk.add(r, exp[:, brow], 1.0)
        blk.add(r, importing, big[None, :, None])
    # _define_grid_terms
    ramp = peak = slack = None
    if d.ramp_penalty > 0:
        ramp = blk.columns((s_n, t_n), 0.0, np.inf)
        first_t = 0 if d.prev_net is not None else 1
        for sign in (1.0, -1.0):  # ramp_up: ramp - (net_t - net_t-1) >= 0; ramp_down: +
            rhs = np.zeros((s_n, t_n - first_t))
            if first_t == 0:
                rhs[:, 0] = -sign * d.prev_net
            r = blk.rows_((s_n, t_n - first_t), rhs, np.inf)
            blk.add(r, ramp[:, first_t:], 1.0)
            for flows, v in ((imp, -sign), (exp, sign)):
                blk.add(r[:, None, :], flows[:, :, first_t:], v)
                lag = r[:, 1:] if first_t == 0 else r
                blk.add(lag[:, None, :], flows[:, :, : t_n - 1], -v)
    if d.peak_charge > 0:
        peak = blk.columns((s_n,), 0.0, np.inf)
        r = blk.rows_((s_n, t_n), 0.0, np.inf)
        blk.add(r, peak[:, None], 1.0)
        blk.add(r[:, None, :], imp, -1.0)
    if d.standalone:
        slack = blk.columns((p_n,), 0.0, np.inf)
        r = blk.rows_((p_n,), -np.inf, np.array([d.standalone[p] for p in d.players]))
        w = prob[:, None] * ip
        blk.add(r[None, :, None], imp, w[:, None, :])
        blk.add(r[None, :, None], exp, -(prob[:, None] * ep)[:, None, :])
        blk.add(r, slack, -1.0)

    # _define_objective
    cost = np.concatenate(blk.cost)
    c_imp = prob[:, None] * ip
    c_imp = np.where(np.abs(c_imp) >= COEF_EPS, c_imp, 0.0)
    c_exp = prob[:, None] * ep
    c_exp = np.where(np.abs(c_exp) >= COEF_EPS, c_exp, 0.0)
    cost[imp] += c_imp[:, None, :]  # column indices are unique: no np.add.at needed
    cost[exp] -= c_exp[:, None, :]
    if shared is not None:
        w = prob * d.incentive
        cost[shared] -= np.where(w >= COEF_EPS, w, 0.0)[:, None]
    if d.carbon_cost is not None:
        cc = prob[:, None] * np.asarray(d.carbon_cost, float).reshape(s_n, t_n)
        np.add.at(
            cost, imp, np.broadcast_to(np.where(cc >= COEF_EPS, cc, 0.0)[:, None, :], imp.shape)
        )
    if ramp is not None:
        w = np.broadcast_to((prob * d.ramp_penalty)[:, None], (s_n, t_n)).copy()
        if d.prev_net is None:
            w[:, 0] = 0.0
        cost[ramp] += w
    if peak is not None:
        cost[peak] += prob * d.peak_charge
    if slack is not None:
        cost[slack] += STANDALONE_SLACK_PENALTY
    if b_n and d.terminal_value is not None:
        tv = np.array([d.terminal_value[b] for b in bats], float)
        cost[soc[:, -1]] -= np.where(tv >= COEF_EPS, tv, 0.0)
    if b_n and d.penalty > 0:
        cost[ch] += d.penalty
        cost[dis] += d.penalty

    col_lo, col_hi = np.concatenate(blk.col_lo), np.concatenate(blk.col_hi)
    if first is not None and b_n:
        for idx, x in ((ch[:, 0], first[0]), (dis[:, 0], first[1])):
            col_lo[idx] = col_hi[idx] = np.asarray(x, float)[brow]
    a = sparse.coo_matrix(
        (np.concatenate(blk.vals), (np.concatenate(blk.rows), np.concatenate(blk.cols))),
        shape=(blk.n_row, blk.n_col),
    ).tocsc()
    a.sum_duplicates()
    a.eliminate_zeros()
    return MatrixLP(
        inputs=inputs,
        charge=ch,
        discharge=dis,
        soc=soc,
        battery_rows=brow,
        a=a,
        col_lower=col_lo,
        col_upper=col_hi,
        cost=cost,
        row_lower=np.concatenate(blk.row_lo),
        row_upper=np.concatenate(blk.row_hi),
        integrality=np.concatenate(blk.integer),
        build_time_s=time.perf_counter() - start,
    )


def solve_matrix(
    lp: MatrixLP,
    time_limit_s: float = 30.0,
    options: Mapping[str, object] = HIGHS_OPTIONS,
) -> MatrixLP:
    """Solve ``lp`` with HiGHS (``options``, by default the day-ahead plan's
    :data:`~optimisation.dispatch.HIGHS_OPTIONS`); keep the solver, the column values and the
    objective on it.

    Interior point with crossover, as for the plan: on the 8-week closed-loop benchmark it
    gives the real-time layer the same result as the Pyomo build did (1750.44 against
    1750.36 USD with HiGHS 1.16; 1749.90 with 1.15.1, whose IPX returns other optimal
    vertices on three of the 56 days); dual simplex was 0.2 s a day faster but picked other
    optimal first moves, worth 7.60 USD less over the 8 weeks. IPX is named: with
    ``highspy-extras`` installed "ipm" selects HiPO, 60 % slower on these small LPs.

    An infeasibility the inputs do not explain is re-checked without presolve, as
    :func:`optimisation.dispatch.solve` does.

    Raises
    ------
    DispatchError
        Not solved to optimality (infeasible, time limit, solver error).
    """
    highspy = _highspy()
    infeasible = (TerminationCondition.provenInfeasible, TerminationCondition.infeasibleOrUnbounded)
    conflicts = _soc_conflicts(lp.inputs)
    start = time.perf_counter()
    try:
        if "threads" in options:
            # HiGHS keeps one thread pool per process, sized at its first run: a different
            # size later fails every solve ("noSolution") unless the pool is rebuilt first
            highspy.Highs.resetGlobalScheduler(True)
        highs = quiet_highs(highspy)
        a = lp.a
        status = highs.passModel(
            a.shape[1],
            a.shape[0],
            int(a.nnz),
            highspy.MatrixFormat.kColwise,
            highspy.ObjSense.kMinimize,
            0.0,
            lp.cost,
            lp.col_lower,
            lp.col_upper,
            lp.row_lower,
            lp.row_upper,
            np.ascontiguousarray(a.indptr, dtype=np.int32),
            np.ascontiguousarray(a.indices, dtype=np.int32),
            np.ascontiguousarray(a.data, dtype=np.float64),
            lp.integrality,
        )
        if status == highspy.HighsStatus.kError:
            raise ValueError("HiGHS rejected the dispatch matrices (passModel kError)")
        tc, sol = _run_highs(highs, highspy, time_limit_s, options)
        if tc in infeasible and not conflicts:  # see optimisation.dispatch.solve
            remaining = max(time_limit_s - (time.perf_counter() - start), 0.0)
            tc, sol = _run_highs(highs, highspy, remaining, {**options, "presolve": "off"})
    except Exception as exc:  # any solver failure is a failed dispatch
        raise DispatchError("error", f"HiGHS raised {type(exc).__name__}: {exc}") from exc
    if tc != TerminationCondition.convergenceCriteriaSatisfied or sol != SolutionStatus.optimal:
        raise _not_optimal(tc, sol, conflicts, time_limit_s)
    lp.highs = highs
    lp.col_value = np.asarray(highs.getSolution().col_value, dtype=float)
    lp.objective = float(highs.getInfo().objective_function_value)
    return lp


@functools.cache
def hipo_available() -> bool:
    """Whether this HiGHS has HiPO, its factorisation interior point solver (it needs the
    ``highspy-extras`` package of the same version: METIS, BLAS)."""
    highspy = _highspy()
    h = quiet_highs(highspy)
    h.setOptionValue("solver", "hipo")
    h.addVar(0.0, 1.0)
    h.changeColCost(0, 1.0)
    h.addRow(1.0, 2.0, 1, np.array([0], dtype=np.int32), np.array([1.0]))
    return h.run() != highspy.HighsStatus.kError and h.getModelStatus().name == "kOptimal"


def large_options() -> dict[str, object]:
    """HiGHS options for a large plan: HiPO on every core without crossover, or IPX without
    crossover where HiPO is not installed. No vertex solution: on large plans crossover
    costs more than the interior point solve (see :data:`HIGHS_OPTIONS` for small ones)."""
    solver = "hipo" if hipo_available() else "ipx"
    return {
        "solver": solver,
        "run_crossover": "off",
        "threads": os.cpu_count() or 1,
        "mip_feasibility_tolerance": HIGHS_OPTIONS["mip_feasibility_tolerance"],
    }


def extract_plan(lp: MatrixLP) -> pd.DataFrame:
    """The plan of a solved matrix LP, as :func:`~optimisation.dispatch.extract_results`
    reads it from the Pyomo model: battery moves and state of charge clipped for solver
    noise, import and export re-derived from the energy balance (netted: only for inputs
    where simultaneous import and export cannot pay, which :func:`plan_large` requires).

    Returns
    -------
    pandas.DataFrame
        Rows of :data:`~optimisation.dispatch.PLAN_COLUMNS`, energies [kWh].
    """
    inputs = lp.inputs
    if not inputs.simultaneous_flows_unprofitable:
        raise ValueError("extract_plan nets import and export: gross flows would need the LP's")
    charge, discharge = lp.battery_flows()
    soc = np.zeros_like(charge)
    assert lp.col_value is not None  # battery_flows checked it
    soc[lp.battery_rows] = _clip_noise(
        lp.col_value[lp.soc], lp.col_lower[lp.soc], lp.col_upper[lp.soc], "soc"
    )
    imp, exp = _net_flows(inputs, charge, discharge, np.zeros(inputs.load_kwh.shape))
    return _assemble_plan(inputs, charge, discharge, soc, imp, exp)


def plan_large(
    inputs: DispatchInputs, time_limit_s: float = 600.0
) -> tuple[pd.DataFrame, SolveReport]:
    """Build, solve and extract a large day-ahead plan through the matrices.

    Parameters
    ----------
    inputs : DispatchInputs
        Validated inputs where simultaneous import and export cannot pay (the LP case; the
        netting MILP stays on the Pyomo path).
    time_limit_s : float
        Solver time limit [s].

    Returns
    -------
    (DataFrame, SolveReport)
        The plan (as :func:`~optimisation.dispatch.extract_results`) and the solve report.

    Raises
    ------
    DispatchError
        Not solved to optimality within the time limit.
    """
    lp = build_matrix(inputs)
    start = time.perf_counter()
    options = large_options()
    try:
        solve_matrix(lp, time_limit_s=time_limit_s, options=options)
    except DispatchError as err:
        proven = err.termination_condition in ("provenInfeasible", "maxTimeLimit")
        if proven or options.get("run_crossover") == "on":
            raise
        # HiPO stopped without a verdict (seen on tiny degenerate days, where IPX without
        # crossover stops "imprecise" too): IPX with crossover decides, in the time left
        left = max(time_limit_s - (time.perf_counter() - start), 1.0)
        solve_matrix(
            lp, time_limit_s=left, options={**options, "solver": "ipx", "run_crossover": "on"}
        )
    report = SolveReport(
        termination_condition=TerminationCondition.convergenceCriteriaSatisfied.name,
        objective=float(lp.objective if lp.objective is not None else np.nan),
        build_time_s=lp.build_time_s,
        solve_time_s=time.perf_counter() - start,
        n_variables=int(lp.a.shape[1]),
        n_constraints=int(lp.a.shape[0]),
    )
    return extract_plan(lp), report
