"""From plans and scenarios to optimisation inputs, and from plans and actuals to settlement.

Pure array code shared by the dispatch and allocation assets:

- :func:`scenario_cube` turns the long ``scenarios`` table into the (S, P, T) arrays of the
  dispatch model;
- :func:`realised_flows` replays the plan's battery schedule (the first-stage decision, the
  same in every scenario, hence feasible whatever the weather) against metered load and PV,
  giving each player's real grid import and export;
- :func:`grid_cost` prices flows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def scenario_cube(
    scen: pd.DataFrame,
    players: Sequence[str],
    ts: Sequence[pd.Timestamp],
    target: str,
    ids: dict[str, str] | None = None,
) -> np.ndarray:
    """(S, P, T) array of one target from the long scenarios table.

    Parameters
    ----------
    scen : DataFrame
        ``scenario, target, unique_id, ts, value``.
    players : sequence of str
        Player order; ``ids`` maps a player to its series id (default: itself). Players
        without a series get zeros.
    ts : sequence of Timestamp
        Interval order.
    """
    ids = ids or {}
    g = scen[scen["target"] == target]
    n_s = int(scen["scenario"].max()) + 1
    out = np.zeros((n_s, len(players), len(ts)))
    pivot = g.pivot_table(index=["scenario", "unique_id"], columns="ts", values="value")
    pivot = pivot.reindex(columns=list(ts))
    for j, p in enumerate(players):
        uid = ids.get(p, p)
        for s in range(n_s):
            if (s, uid) in pivot.index:
                out[s, j, :] = pivot.loc[(s, uid)].to_numpy(dtype=float)
    return np.nan_to_num(out, nan=0.0)


def price_matrix(scen: pd.DataFrame, ts: Sequence[pd.Timestamp]) -> np.ndarray:
    """(S, T) import price [currency/kWh] from the scenarios table."""
    return scenario_cube(scen, ["import"], ts, "price")[:, 0, :]


def realised_flows(
    load_kwh: np.ndarray, pv_kwh: np.ndarray, charge_kwh: np.ndarray, discharge_kwh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Grid import and export when the planned battery schedule meets the actual day.

    Parameters
    ----------
    load_kwh, pv_kwh : ndarray (P, T)
        Metered consumption and generation [kWh].
    charge_kwh, discharge_kwh : ndarray (P, T)
        The plan's battery schedule [kWh].

    Returns
    -------
    import_kwh, export_kwh : ndarray (P, T)
        Net grid flows per interval [kWh] (load - pv + charge - discharge split by sign).
    """
    net = load_kwh - pv_kwh + charge_kwh - discharge_kwh
    return np.clip(net, 0, None), np.clip(-net, 0, None)


def grid_cost(
    import_kwh: np.ndarray,
    export_kwh: np.ndarray,
    import_price: np.ndarray,
    export_price: np.ndarray,
) -> np.ndarray:
    """Grid cost per player [currency]: imports x price - exports x export price, over T."""
    return (import_kwh * import_price - export_kwh * export_price).sum(axis=-1)


def follow_plan(
    load_kwh: np.ndarray,
    pv_kwh: np.ndarray,
    planned_net_kwh: np.ndarray,
    forecast_net_load_kwh: np.ndarray,
    capacity_kwh: np.ndarray,
    power_kwh: np.ndarray,
    efficiency: np.ndarray,
    initial_soc_kwh: np.ndarray,
    min_soc_kwh: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Real-time battery operation: follow the plan, absorb the forecast error.

    Each interval the battery aims at the planned net charge plus the deviation of the actual
    surplus from the forecast one (more sun than forecast: charge more), within power and SoC
    limits. This is how a home battery in "schedule + self-consumption" mode behaves, and it
    gives the realised flows that are settled.

    Parameters
    ----------
    load_kwh, pv_kwh : ndarray (P, T)
        Metered consumption and generation [kWh].
    planned_net_kwh : ndarray (P, T)
        Planned charge minus discharge [kWh] (grid side).
    forecast_net_load_kwh : ndarray (P, T)
        Expected load minus PV the plan was made for [kWh].
    capacity_kwh, power_kwh, efficiency, initial_soc_kwh, min_soc_kwh : ndarray (P,)
        Battery limits (power per interval [kWh]; zero capacity for players without one) and
        one-way efficiency [-].

    Returns
    -------
    charge_kwh, discharge_kwh : ndarray (P, T)
    """
    n_p, n_t = load_kwh.shape
    min_soc = np.zeros(n_p) if min_soc_kwh is None else min_soc_kwh
    soc = initial_soc_kwh.astype(float).copy()
    ch = np.zeros((n_p, n_t))
    dis = np.zeros((n_p, n_t))
    eta = np.where(efficiency > 0, efficiency, 1.0)
    deviation = forecast_net_load_kwh - (load_kwh - pv_kwh)
    for t in range(n_t):
        want = np.clip(planned_net_kwh[:, t] + deviation[:, t], -power_kwh, power_kwh)
        c = np.clip(want, 0, None)
        d = np.clip(-want, 0, None)
        c = np.minimum(c, np.clip(capacity_kwh - soc, 0, None) / eta)
        d = np.minimum(d, np.clip(soc - min_soc, 0, None) * eta)
        soc = soc + eta * c - d / eta
        ch[:, t], dis[:, t] = c, d
    return ch, dis
