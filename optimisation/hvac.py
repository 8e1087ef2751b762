"""Air conditioners as thermal storage: the first-order RC model of a dwelling in the dispatch
LP, and the thermostat that runs them without optimisation.

The indoor air temperature of a dwelling with an air conditioner of coefficient of performance
``COP`` drawing ``P[t]`` kWh of electricity in interval ``t`` of length ``dt`` hours follows
(the Italian case study's model, ``../shared/domain/energy-communities.md``)::

    T[t] = T[t-1] + (dt * (T_out[t] - T[t-1]) / R  -  s * COP * P[t]) / C

with ``R`` the thermal resistance of the envelope [K/kW], ``C`` the thermal capacitance of the
air and furniture [kWh/K], ``s = +1`` when cooling and ``-1`` when heating, and ``T[-1]`` the
measured temperature at the start of the day. Comfort asks ``T_min[t] <= T[t] <= T_max[t]``;
a band the unit cannot hold is refused before solving (:func:`check_feasible`, exact for
this monotone model). In the LP the band is soft (each kelvin-hour outside it costs
:data:`COMFORT_PENALTY_PER_KELVIN_HOUR`, far above the energy that avoids it), so that a
contracted-power limit that stops the unit gives a plan with its violation reported instead of
no plan. The electrical power is first stage (one
schedule for every scenario, like the batteries'), since the outdoor temperature is one
forecast.

Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyomo.environ as pyo

COMFORT_PENALTY_PER_KELVIN_HOUR = 100.0
"""Cost of one kelvin-hour outside a dwelling's comfort band in the LP [currency/(K h)]. Far
above what holding the band costs: at 5, a leaky dwelling with a small unit (R 3.4 K/kW,
C 0.5 kWh/K, 0.5 kW) let the afternoon peak out by 0.013 K rather than pre-cool for hours
(found by the property test); at 100 the band binds whenever the unit can hold it."""


class HvacInputError(ValueError):
    """An air conditioner's parameters are invalid; the field is named."""


@dataclass(frozen=True)
class HvacSpec:
    """An air conditioner and the dwelling it conditions.

    Parameters
    ----------
    r_k_per_kw : float
        Thermal resistance of the envelope [K/kW], > 0.
    c_kwh_per_k : float
        Thermal capacitance of the indoor air and furniture [kWh/K], > 0.
    cop : float
        Coefficient of performance: thermal over electrical power [-], > 0.
    max_power_kw : float
        Largest electrical power [kW], >= 0.
    t_min_c, t_max_c : float or sequence of float
        Comfort band [degC], one value or one per interval of the day; ``t_min <= t_max``.
    t_initial_c : float
        Indoor temperature at the start of the day [degC].
    mode : {"cooling", "heating"}
        What the unit does.
    """

    r_k_per_kw: float
    c_kwh_per_k: float
    cop: float
    max_power_kw: float
    t_min_c: float | Sequence[float]
    t_max_c: float | Sequence[float]
    t_initial_c: float
    mode: Literal["cooling", "heating"] = "cooling"

    def __post_init__(self) -> None:
        for name in ("r_k_per_kw", "c_kwh_per_k", "cop"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise HvacInputError(f"HvacSpec.{name} must be a finite number > 0, got {v!r}")
        if not (math.isfinite(self.max_power_kw) and self.max_power_kw >= 0):
            raise HvacInputError(f"HvacSpec.max_power_kw must be >= 0, got {self.max_power_kw!r}")
        if not math.isfinite(self.t_initial_c):
            raise HvacInputError(f"HvacSpec.t_initial_c must be finite, got {self.t_initial_c!r}")
        if self.mode not in ("cooling", "heating"):
            raise HvacInputError(f"HvacSpec.mode must be cooling or heating, got {self.mode!r}")

    @property
    def sign(self) -> float:
        """+1 when cooling (thermal power removes heat), -1 when heating."""
        return 1.0 if self.mode == "cooling" else -1.0

    def band(self, n_intervals: int) -> tuple[np.ndarray, np.ndarray]:
        """The comfort band per interval, ``(t_min, t_max)``, each shape (T,) [degC].

        Raises
        ------
        HvacInputError
            A band of the wrong length, not finite, or with ``t_min > t_max``.
        """
        out = []
        for name in ("t_min_c", "t_max_c"):
            v = np.broadcast_to(np.asarray(getattr(self, name), dtype=float), (n_intervals,))
            if v.shape != (n_intervals,) or not np.isfinite(v).all():
                raise HvacInputError(f"HvacSpec.{name}: one value or {n_intervals} finite values")
            out.append(v.copy())
        if (out[0] > out[1]).any():
            raise HvacInputError("HvacSpec: t_min_c above t_max_c in some interval")
        return out[0], out[1]


def check_feasible(name: str, spec: HvacSpec, outdoor_c: np.ndarray, interval_hours: float) -> None:
    """Refuse a comfort band the unit cannot hold, before any solve.

    Exact for the RC model: the temperatures the dwelling can be in at the end of interval
    ``t``, having stayed inside the band so far, form an interval, the image of the previous
    one under the model with the power anywhere between off and full, cut to the band. The
    band can be held all day if and only if that interval is never empty.

    Raises
    ------
    HvacInputError
        Naming the member, the asset and the field, with the first interval that fails.
    """
    n = len(outdoor_c)
    lo, hi = spec.band(n)
    dt, r, c = interval_hours, spec.r_k_per_kw, spec.c_kwh_per_k
    a = 1.0 - dt / (r * c)
    swing = spec.cop * spec.max_power_kw * dt / c  # temperature change of full power [K]
    low = high = spec.t_initial_c
    tol = 1e-6
    for k in range(n):
        drift = dt * outdoor_c[k] / (r * c)
        ends = (a * low + drift, a * high + drift)
        free_lo, free_hi = min(ends), max(ends)  # with the unit off
        if spec.mode == "cooling":
            reach_lo, reach_hi = free_lo - swing, free_hi
        else:
            reach_lo, reach_hi = free_lo, free_hi + swing
        low, high = max(reach_lo, lo[k]), min(reach_hi, hi[k])
        if low > high + tol:
            if reach_lo > hi[k]:
                field, what = "t_max_c", f"cannot be kept below {hi[k]:.2f} degC"
                hint = "raise max_power_kw or t_max_c"
            else:
                field, what = "t_min_c", f"cannot be kept above {lo[k]:.2f} degC"
                hint = "lower t_min_c" if spec.mode == "cooling" else "raise max_power_kw"
            raise HvacInputError(
                f"member {name!r}, air conditioner, field {field!r}: the band cannot be held; "
                f"in interval {k} the dwelling {what} by any schedule; {hint}"
            )
        high = max(high, low)  # within tolerance


def simulate(
    spec: HvacSpec, outdoor_c: np.ndarray, interval_hours: float, power_kwh: np.ndarray
) -> np.ndarray:
    """Indoor temperature at the end of each interval under a given schedule [degC].

    Parameters
    ----------
    spec : HvacSpec
    outdoor_c : ndarray (T,)
        Outdoor temperature per interval [degC].
    interval_hours : float
        Interval length [h].
    power_kwh : ndarray (T,)
        Electricity drawn per interval [kWh].
    """
    temps = np.empty(len(outdoor_c))
    t = spec.t_initial_c
    for k, (out, p) in enumerate(zip(outdoor_c, power_kwh, strict=True)):
        t = t + (interval_hours * (out - t) / spec.r_k_per_kw - spec.sign * spec.cop * p) / (
            spec.c_kwh_per_k
        )
        temps[k] = t
    return temps


def thermostat(
    spec: HvacSpec,
    outdoor_c: np.ndarray,
    interval_hours: float,
    setpoint_c: float,
    gain_kw_per_k: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The unit without optimisation: a proportional controller around a set-point (the case
    study's baseline), thermal power ``gain * (T - setpoint)`` when cooling (``gain *
    (setpoint - T)`` when heating), clipped to the unit's range, from the temperature at the
    start of each interval.

    Returns
    -------
    (ndarray, ndarray)
        Electricity per interval [kWh] and indoor temperature at each interval's end [degC].
    """
    power = np.empty(len(outdoor_c))
    temps = np.empty(len(outdoor_c))
    t = spec.t_initial_c
    for k, out in enumerate(outdoor_c):
        thermal_kw = max(gain_kw_per_k * spec.sign * (t - setpoint_c), 0.0)
        p = min(thermal_kw / spec.cop, spec.max_power_kw) * interval_hours
        t = t + (interval_hours * (out - t) / spec.r_k_per_kw - spec.sign * spec.cop * p) / (
            spec.c_kwh_per_k
        )
        power[k], temps[k] = p, t
    return power, temps


def comfort_violation_kh(spec: HvacSpec, temps: np.ndarray, interval_hours: float) -> float:
    """Kelvin-hours outside the comfort band [K h]."""
    lo, hi = spec.band(len(temps))
    return float((np.maximum(lo - temps, 0) + np.maximum(temps - hi, 0)).sum() * interval_hours)


@dataclass(frozen=True)
class RcFit:
    """Result of :func:`fit_rc`."""

    r_k_per_kw: float
    c_kwh_per_k: float
    rmse_k: float
    """one-step-ahead error of the fitted model on the data [K]"""
    n: int
    """intervals used"""


def fit_rc(
    indoor_c: np.ndarray,
    outdoor_c: np.ndarray,
    power_kwh: np.ndarray,
    interval_hours: float,
    cop: float,
    mode: Literal["cooling", "heating"] = "cooling",
) -> RcFit:
    """Fit a dwelling's R and C from metered indoor temperature and air-conditioner power.

    The RC model is linear in ``a = dt / (R C)`` and ``b = COP / C``:
    ``T[t] - T[t-1] = a (T_out[t] - T[t-1]) - s b P[t]``; least squares on the one-step
    changes gives them, and ``C = COP / b``, ``R = dt / (a C)``. Intervals with a missing value
    are left out. Sensor noise on the indoor temperature biases the one-step regression
    towards smaller steps: with 0.02 K of noise on quarter-hours, three days identify R and C
    within 10 % while the time constant R C stays below about a day and a half (half the
    record); a slower dwelling needs a longer record.

    Parameters
    ----------
    indoor_c : ndarray (N + 1,)
        Indoor temperature at the start of the first interval, then at the end of each
        [degC].
    outdoor_c, power_kwh : ndarray (N,)
        Outdoor temperature [degC] and the unit's electricity [kWh] per interval.
    interval_hours : float
        Interval length [h].
    cop : float
        The unit's coefficient of performance (from its data sheet) [-].
    mode : {"cooling", "heating"}

    Returns
    -------
    RcFit

    Raises
    ------
    ValueError
        Fewer than 8 usable intervals, or data that do not identify a positive R and C (the
        unit never ran, or the indoor temperature never moved with the outdoor one).
    """
    t = np.asarray(indoor_c, dtype=float)
    out, p = np.asarray(outdoor_c, dtype=float), np.asarray(power_kwh, dtype=float)
    if len(t) != len(out) + 1 or len(p) != len(out):
        raise ValueError("indoor_c needs one value more than outdoor_c and power_kwh")
    sign = 1.0 if mode == "cooling" else -1.0
    y = np.diff(t)
    x = np.column_stack([out - t[:-1], -sign * p])
    ok = np.isfinite(y) & np.isfinite(x).all(axis=1)
    if ok.sum() < 8:
        raise ValueError(f"fit_rc: {int(ok.sum())} usable intervals, at least 8 needed")
    (a, b), *_ = np.linalg.lstsq(x[ok], y[ok], rcond=None)
    if not (a > 0 and b > 0):
        raise ValueError(
            "fit_rc: the data do not identify a positive R and C (does the unit run, and does "
            "the indoor temperature follow the outdoor one?)"
        )
    c = cop / b
    r = interval_hours / (a * c)
    rmse = float(np.sqrt(np.mean((y[ok] - x[ok] @ np.array([a, b])) ** 2)))
    return RcFit(r_k_per_kw=float(r), c_kwh_per_k=float(c), rmse_k=rmse, n=int(ok.sum()))


def define_hvac(
    m: pyo.ConcreteModel,
    hvac: Mapping[str, HvacSpec],
    outdoor_c: Sequence[float],
    interval_hours: float,
) -> None:
    """The ``_define_hvac`` step of the dispatch LP: per dwelling with an air conditioner,
    electricity ``hvac_power[h, t]`` in [0, max power x dt] [kWh], indoor temperature
    ``indoor_temp[h, t]`` [degC] by the RC model, and the soft comfort band with slacks
    ``too_cold``, ``too_warm`` [K] (priced in the objective by :func:`comfort_cost`)."""
    if not hvac:
        return
    t_n = len(m.T)
    dt = interval_hours
    bands = {h: spec.band(t_n) for h, spec in hvac.items()}
    m.HV = pyo.Set(initialize=list(hvac), ordered=True, doc="players with an air conditioner")
    m.hvac_power = pyo.Var(
        m.HV,
        m.T,
        domain=pyo.NonNegativeReals,
        bounds=lambda _m, h, _t: (0.0, hvac[h].max_power_kw * dt),
        doc="first stage: air conditioner electricity per interval [kWh]",
    )
    m.indoor_temp = pyo.Var(m.HV, m.T, doc="indoor air temperature at the interval's end [degC]")
    m.too_cold = pyo.Var(m.HV, m.T, domain=pyo.NonNegativeReals, doc="below the band [K]")
    m.too_warm = pyo.Var(m.HV, m.T, domain=pyo.NonNegativeReals, doc="above the band [K]")

    def rc(m: pyo.ConcreteModel, h: str, t: int) -> object:
        s = hvac[h]
        prev = s.t_initial_c if t == 0 else m.indoor_temp[h, t - 1]
        return (
            s.c_kwh_per_k * (m.indoor_temp[h, t] - prev)
            == dt * (outdoor_c[t] - prev) / s.r_k_per_kw - s.sign * s.cop * m.hvac_power[h, t]
        )

    m.thermal = pyo.Constraint(
        m.HV,
        m.T,
        rule=rc,
        doc="C (T[t] - T[t-1]) = dt (T_out[t] - T[t-1]) / R -/+ COP P[t]: first-order RC [kWh]",
    )
    m.comfort_low = pyo.Constraint(
        m.HV,
        m.T,
        rule=lambda m, h, t: m.indoor_temp[h, t] + m.too_cold[h, t] >= float(bands[h][0][t]),
        doc="T + too_cold >= T_min [degC]",
    )
    m.comfort_high = pyo.Constraint(
        m.HV,
        m.T,
        rule=lambda m, h, t: m.indoor_temp[h, t] - m.too_warm[h, t] <= float(bands[h][1][t]),
        doc="T - too_warm <= T_max [degC]",
    )


def comfort_cost(m: pyo.ConcreteModel, interval_hours: float) -> object:
    """The objective's comfort term: :data:`COMFORT_PENALTY_PER_KELVIN_HOUR` per kelvin-hour
    outside a band [currency] (0 without air conditioners)."""
    if not hasattr(m, "HV"):
        return 0.0
    w = COMFORT_PENALTY_PER_KELVIN_HOUR * interval_hours
    return w * pyo.quicksum(m.too_cold[h, t] + m.too_warm[h, t] for h in m.HV for t in m.T)
