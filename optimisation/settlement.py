"""From scenarios to optimisation inputs, and from flows to bills.

Realised flows come from the real-time layer (:mod:`optimisation.control`), not from here.

Pure array code shared by the dispatch and allocation assets:

- :func:`scenario_cube` turns the long ``scenarios`` table into the (S, P, T) arrays of the
  dispatch model;
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


def grid_cost(
    import_kwh: np.ndarray,
    export_kwh: np.ndarray,
    import_price: np.ndarray,
    export_price: np.ndarray,
) -> np.ndarray:
    """Grid cost per player [currency]: imports x price - exports x export price, over T."""
    return (import_kwh * import_price - export_kwh * export_price).sum(axis=-1)
