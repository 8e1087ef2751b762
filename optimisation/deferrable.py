"""Deferrable loads in the dispatch LP: a cycle of fixed shape that must run once inside a
window (a washing machine, a dishwasher, a heat-pump boiler's reheat).

A deferrable load has a power profile ``profile_kwh`` of ``L`` intervals (its minimum run: it
runs them back to back, uninterrupted) and a window ``[earliest, latest_end)`` in which the
whole cycle must fit. Its start is a binary ``start[d, t]``, one of them 1, so the plan is a
MILP solved by HiGHS (the netting binaries' solver options); its electricity in interval ``t``
is ``sum_k profile[k] start[d, t - k]``, first stage like the batteries'. A cycle that does not
fit its window is refused before solving, naming the member, the load and the field.

Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyomo.environ as pyo


class DeferrableInputError(ValueError):
    """A deferrable load's parameters are invalid; the member, the load and the field are
    named."""


@dataclass(frozen=True)
class DeferrableSpec:
    """One cycle to run.

    Parameters
    ----------
    owner : str
        The player whose connection it runs on.
    profile_kwh : sequence of float
        Energy per interval of the cycle, in order [kWh], >= 0, at least one interval.
    earliest : int
        First interval it may start in (0-based).
    latest_end : int
        Interval by which it must have finished (exclusive).
    """

    owner: str
    profile_kwh: Sequence[float]
    earliest: int
    latest_end: int

    def check(self, load_id: str, n_intervals: int) -> None:
        """Refuse a cycle that does not fit its window or the day.

        Raises
        ------
        DeferrableInputError
        """
        where = f"member {self.owner!r}, deferrable load {load_id!r}"
        prof = list(self.profile_kwh)
        if not prof or not all(math.isfinite(x) and x >= 0 for x in prof):
            raise DeferrableInputError(
                f"{where}, field 'profile_kwh': at least one interval, each >= 0 [kWh]"
            )
        if not 0 <= self.earliest < self.latest_end <= n_intervals:
            raise DeferrableInputError(
                f"{where}, field 'latest_end': the window must satisfy 0 <= earliest < "
                f"latest_end <= {n_intervals}, got {self.earliest} to {self.latest_end}"
            )
        if self.latest_end - self.earliest < len(prof):
            raise DeferrableInputError(
                f"{where}, field 'latest_end': its {len(prof)}-interval cycle does not fit the "
                f"{self.latest_end - self.earliest}-interval window"
            )

    @property
    def starts(self) -> range:
        """Intervals it may start in."""
        return range(self.earliest, self.latest_end - len(self.profile_kwh) + 1)


def define_deferrable(m: pyo.ConcreteModel, loads: Mapping[str, DeferrableSpec]) -> None:
    """The ``_define_deferrable`` step: binaries ``start[d, t]`` over each load's possible
    starts, ``one_start``: exactly one, and ``deferred_power[d, t]`` [kWh] the profile placed at
    the chosen start."""
    if not loads:
        return
    m.DL = pyo.Set(initialize=list(loads), ordered=True, doc="deferrable loads")
    m.DLS = pyo.Set(
        dimen=2,
        initialize=[(d, t) for d, s in loads.items() for t in s.starts],
        doc="possible starts",
    )
    m.start = pyo.Var(m.DLS, domain=pyo.Binary, doc="1 if the load starts in the interval")
    m.one_start = pyo.Constraint(
        m.DL,
        rule=lambda m, d: pyo.quicksum(m.start[d, t] for t in loads[d].starts) == 1,
        doc="each deferrable load runs exactly once in its window",
    )

    def power(m: pyo.ConcreteModel, d: str, t: int) -> object:
        s = loads[d]
        prof = list(s.profile_kwh)
        terms = [prof[t - t0] * m.start[d, t0] for t0 in s.starts if 0 <= t - t0 < len(prof)]
        return pyo.quicksum(terms) if terms else 0.0

    m.deferred_power = pyo.Expression(
        m.DL, m.T, rule=power, doc="deferrable load's electricity per interval [kWh]"
    )


def deferrable_schedule(
    m: pyo.ConcreteModel, loads: Mapping[str, DeferrableSpec], n_intervals: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Electricity per load and interval, (D, T) [kWh], in ``loads`` order, and each load's
    start interval, from a solved model (binaries rounded)."""
    out = np.zeros((len(loads), n_intervals))
    starts = {}
    for k, (d, s) in enumerate(loads.items()):
        t0 = max(s.starts, key=lambda t: pyo.value(m.start[d, t]))
        starts[d] = t0
        prof = np.asarray(s.profile_kwh, dtype=float)
        out[k, t0 : t0 + len(prof)] = prof
    return out, starts


def deferrable_frame(
    loads: Mapping[str, DeferrableSpec], starts: Mapping[str, int], ts: pd.DatetimeIndex
) -> pd.DataFrame:
    """``load_id, member_id, start_ts, end_ts, energy_kwh`` per deferrable load."""
    step = ts[1] - ts[0] if len(ts) > 1 else pd.Timedelta(hours=1)
    return pd.DataFrame(
        [
            {
                "load_id": d,
                "member_id": s.owner,
                "start_ts": ts[starts[d]],
                "end_ts": ts[starts[d]] + step * len(s.profile_kwh),
                "energy_kwh": float(sum(s.profile_kwh)),
            }
            for d, s in loads.items()
        ],
        columns=["load_id", "member_id", "start_ts", "end_ts", "energy_kwh"],
    )
