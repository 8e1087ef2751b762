"""Electric vehicles in the dispatch LP: charging within each stay, to the energy needed by
departure.

An EV is plugged in from interval ``arrival`` to interval ``departure`` (exclusive) and needs
``energy_kwh`` in its battery by then, charging at most ``max_power_kw`` with efficiency
``efficiency`` (grid to battery). Its charging ``ev_charge[e, t]`` [kWh, grid side] is first
stage, like the stationary batteries'. The energy needed is a soft constraint: each kWh
missing at departure costs :data:`SHORTFALL_PENALTY_PER_KWH`, so that a contracted-power limit
that does not leave room gives a plan with the shortfall reported by name instead of no plan;
a need the stay itself cannot meet (more than ``efficiency x max power x hours plugged``) is
refused before solving. Vehicle-to-grid is off: an EV never discharges.

Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyomo.environ as pyo

SHORTFALL_PENALTY_PER_KWH = 10.0
"""Cost of each kWh an EV lacks at departure in the LP [currency/kWh]: far above any price, so
the need binds whenever the connection allows it."""


class EvInputError(ValueError):
    """An EV's parameters are invalid; the member, the EV and the field are named."""


@dataclass(frozen=True)
class EvSpec:
    """One EV's stay on a member's connection.

    Parameters
    ----------
    owner : str
        The player whose connection it charges on.
    arrival, departure : int
        First interval plugged in, and the interval it leaves at (exclusive), 0-based.
    energy_kwh : float
        Energy to add to its battery by departure [kWh], >= 0.
    max_power_kw : float
        Largest charging power [kW], >= 0.
    efficiency : float
        Grid-to-battery efficiency in (0, 1] [-].
    """

    owner: str
    arrival: int
    departure: int
    energy_kwh: float
    max_power_kw: float
    efficiency: float = 0.92

    def check(self, ev_id: str, n_intervals: int, interval_hours: float) -> None:
        """Refuse a stay outside the day, bad numbers, or a need the stay cannot meet.

        Raises
        ------
        EvInputError
            Naming the member, the EV and the field.
        """
        where = f"member {self.owner!r}, EV {ev_id!r}"
        if not 0 <= self.arrival < self.departure <= n_intervals:
            raise EvInputError(
                f"{where}, field 'departure': the stay must satisfy 0 <= arrival < departure "
                f"<= {n_intervals}, got {self.arrival} to {self.departure}"
            )
        for name in ("energy_kwh", "max_power_kw"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise EvInputError(f"{where}, field {name!r}: must be >= 0, got {v!r}")
        if not 0 < self.efficiency <= 1:
            raise EvInputError(f"{where}, field 'efficiency': must be in (0, 1]")
        most = (
            self.efficiency * self.max_power_kw * interval_hours * (self.departure - self.arrival)
        )
        if self.energy_kwh > most + 1e-9:
            raise EvInputError(
                f"{where}, field 'energy_kwh': needs {self.energy_kwh:.2f} kWh but its stay allows "
                f"at most {most:.2f} kWh ({self.departure - self.arrival} intervals at "
                f"{self.max_power_kw} kW)"
            )


def define_ev(m: pyo.ConcreteModel, evs: Mapping[str, EvSpec], interval_hours: float) -> None:
    """The ``_define_ev`` step: ``ev_charge[e, t]`` in [0, max power x dt] inside the stay and 0
    outside [kWh], ``ev_short[e]`` >= 0 [kWh] and ``ev_need``: efficiency x sum of charging +
    shortfall >= energy needed."""
    if not evs:
        return
    m.EV = pyo.Set(initialize=list(evs), ordered=True, doc="EV stays")

    def bounds(_m: pyo.ConcreteModel, e: str, t: int) -> tuple[float, float]:
        s = evs[e]
        return (0.0, s.max_power_kw * interval_hours if s.arrival <= t < s.departure else 0.0)

    m.ev_charge = pyo.Var(
        m.EV, m.T, domain=pyo.NonNegativeReals, bounds=bounds, doc="EV charging, grid side [kWh]"
    )
    m.ev_short = pyo.Var(m.EV, domain=pyo.NonNegativeReals, doc="energy missing at departure [kWh]")
    m.ev_need = pyo.Constraint(
        m.EV,
        rule=lambda m, e: (
            evs[e].efficiency * pyo.quicksum(m.ev_charge[e, t] for t in m.T) + m.ev_short[e]
            >= evs[e].energy_kwh
        ),
        doc="efficiency x charged + shortfall >= energy needed by departure [kWh]",
    )


def shortfall_cost(m: pyo.ConcreteModel) -> object:
    """The objective's term for energy missing at departure [currency]."""
    if not hasattr(m, "EV"):
        return 0.0
    return SHORTFALL_PENALTY_PER_KWH * pyo.quicksum(m.ev_short[e] for e in m.EV)


def ev_frame(evs: Mapping[str, EvSpec], charge: np.ndarray, ts: pd.DatetimeIndex) -> pd.DataFrame:
    """``ev_id, member_id, ts, charge_kwh`` per EV and interval, with ``delivered_kwh`` and
    ``shortfall_kwh`` of the stay on every row [kWh]. ``charge`` is (E, T) in ``evs`` order."""
    rows = []
    for k, (e, s) in enumerate(evs.items()):
        delivered = s.efficiency * float(charge[k].sum())
        rows.append(
            pd.DataFrame(
                {
                    "ev_id": e,
                    "member_id": s.owner,
                    "ts": ts,
                    "charge_kwh": charge[k],
                    "delivered_kwh": delivered,
                    "shortfall_kwh": max(s.energy_kwh - delivered, 0.0),
                }
            )
        )
    cols = ["ev_id", "member_id", "ts", "charge_kwh", "delivered_kwh", "shortfall_kwh"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)
