"""Closed-loop evaluation: every controller replayed on the same metered day, and its totals.

:func:`evaluate_day` runs the controllers of :mod:`optimisation.control` side by side from
their own carried state of charge; :func:`flows_frame` and :func:`day_totals` turn the result
into the ``realised_flows`` and ``evaluation`` contracts; :func:`period_kpis` gives the public
CityLearn 2022 KPI set over a period as ratios to ``no_battery``.

Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimisation.allocation import per_period
from optimisation.control import (
    CONTROLLERS,
    DayFlows,
    Fleet,
    Forecaster,
    Horizon,
    ObjectiveSettings,
    run_ecm,
    run_no_battery,
    run_perfect_foresight,
    run_self_consumption,
)


@dataclass(frozen=True)
class DayData:
    """The metered day and what surrounds it.

    Parameters
    ----------
    day : datetime.date
        Local day.
    load_kwh, pv_kwh : ndarray (P, T)
        Metered load and PV of the day [kWh].
    lookahead_load_kwh, lookahead_pv_kwh : ndarray (P, L)
        Intervals after the day, for the perfect-foresight bound only [kWh] (the daily
        evaluation passes the intraday forecast issued at the day's end).
    horizon : Horizon
        Interval grid (history, day, look-ahead) and prices on it.
    forecast : Forecaster
        Intraday forecasts on the grid, using only data before each issue interval.
    carbon_intensity : ndarray (T,), optional
        Grid carbon intensity of the day [kg/kWh].
    """

    day: object
    load_kwh: np.ndarray
    pv_kwh: np.ndarray
    lookahead_load_kwh: np.ndarray
    lookahead_pv_kwh: np.ndarray
    horizon: Horizon
    forecast: Forecaster
    carbon_intensity: np.ndarray | None = None

    @property
    def ts(self) -> list[pd.Timestamp]:
        """Interval starts of the day (UTC)."""
        h = self.horizon
        return list(h.ts[h.day_start : h.day_start + h.day_len])

    def prices(self) -> tuple[np.ndarray, np.ndarray]:
        """Import and export price of the day [currency/kWh]."""
        t = self.horizon.tariff_slice(self.horizon.day_start, self.horizon.day_len)
        return np.asarray(t.import_price, float), np.asarray(t.export_price, float)


def evaluate_day(
    data: DayData,
    fleet: Fleet,
    soc0_kwh: Mapping[str, np.ndarray],
    settings: ObjectiveSettings,
    previous_net_kwh: Mapping[str, float | None] | None = None,
    controllers: Sequence[str] = CONTROLLERS,
) -> tuple[dict[str, DayFlows], dict[str, float]]:
    """Replay the day under each controller from its own carried state of charge.

    Parameters
    ----------
    data : DayData
        The metered day.
    fleet : Fleet
        Batteries.
    soc0_kwh : Mapping[str, ndarray (P,)]
        SoC at the start of the day per controller [kWh] (the previous day's end).
    settings : ObjectiveSettings
        Objective terms of the optimising controllers.
    previous_net_kwh : Mapping[str, float], optional
        Community net exchange of the interval before the day, per controller [kWh].
    controllers : sequence of str
        Which of :data:`CONTROLLERS` to run.

    Returns
    -------
    flows : dict of str to DayFlows
    seconds : dict of str to float
        Wall time per controller [s].
    """
    prev = previous_net_kwh or {}
    out: dict[str, DayFlows] = {}
    secs: dict[str, float] = {}
    for c in controllers:
        start = time.perf_counter()
        soc0 = np.asarray(soc0_kwh[c], float)
        if c == "no_battery":
            out[c] = run_no_battery(data.load_kwh, data.pv_kwh, fleet, soc0)
        elif c == "self_consumption":
            out[c] = run_self_consumption(data.load_kwh, data.pv_kwh, fleet, soc0)
        elif c == "ecm":
            out[c] = run_ecm(
                data.load_kwh,
                data.pv_kwh,
                fleet,
                soc0,
                data.horizon,
                data.forecast,
                settings,
                prev.get(c),
            )
        elif c == "perfect_foresight":
            out[c] = run_perfect_foresight(
                data.load_kwh,
                data.pv_kwh,
                fleet,
                soc0,
                data.horizon,
                data.lookahead_load_kwh,
                data.lookahead_pv_kwh,
                settings,
                prev.get(c),
            )
        else:
            raise ValueError(f"unknown controller {c!r}; known: {', '.join(CONTROLLERS)}")
        secs[c] = time.perf_counter() - start
    return out, secs


def player_bills(flows: DayFlows, import_price: np.ndarray, export_price: np.ndarray) -> np.ndarray:
    """Grid bill per player [currency]: imports x price - exports x export price."""
    return (flows.import_kwh * import_price - flows.export_kwh * export_price).sum(axis=1)


def standalone_cost(
    rule: DayFlows,
    idle: DayFlows,
    import_price: np.ndarray,
    export_price: np.ndarray,
    shared_index: int | None,
) -> np.ndarray:
    """Bill per player acting alone [currency]: members run their own battery by the greedy
    rule (``rule``); the community owner, with a plant and no load, exports with its battery
    idle (``idle``). Both carry their state of charge across days."""
    out = player_bills(rule, import_price, export_price)
    if shared_index is not None:
        out[shared_index] = player_bills(idle, import_price, export_price)[shared_index]
    return out


def day_totals(
    flows: DayFlows,
    import_price: np.ndarray,
    export_price: np.ndarray,
    incentive_per_kwh: float,
    carbon_intensity: np.ndarray | None,
    standalone_total: float,
    periods: np.ndarray | None = None,
) -> dict[str, float]:
    """Community totals of one controller's day (the ``evaluation`` columns).

    Parameters
    ----------
    periods : ndarray of int (T,), optional
        Incentive period of each interval (:func:`optimisation.allocation.incentive_periods`):
        shared energy is the minimum of each period's sums, as settled. Default: per interval.

    Returns
    -------
    dict
        ``grid_cost, incentive, net_cost, benefit, standalone_cost`` [currency], ``co2_kg``
        [kg], ``peak_import_kwh, ramping_kwh, shared_kwh, end_soc_kwh`` [kWh],
        ``fallback_intervals``.
    """
    grid_cost = float(player_bills(flows, import_price, export_price).sum())
    imp, exp = flows.import_kwh.sum(axis=0), flows.export_kwh.sum(axis=0)
    per_imp, per_exp = (imp, exp) if periods is None else per_period(np.vstack([imp, exp]), periods)
    shared = float(np.minimum(per_imp, per_exp).sum())
    net = imp - exp
    incentive = incentive_per_kwh * shared
    ci = np.zeros_like(imp) if carbon_intensity is None else np.asarray(carbon_intensity)
    return {
        "grid_cost": grid_cost,
        "incentive": incentive,
        "net_cost": grid_cost - incentive,
        "co2_kg": float((np.clip(net, 0.0, None) * ci).sum()),
        "peak_import_kwh": float(np.clip(net, 0.0, None).max(initial=0.0)),
        "ramping_kwh": float(np.abs(np.diff(net)).sum()),
        "shared_kwh": shared,
        "standalone_cost": standalone_total,
        "benefit": standalone_total - (grid_cost - incentive),
        "end_soc_kwh": float(flows.end_soc.sum()),
        "fallback_intervals": int((flows.mode == "fallback_rule").sum()),
    }


def flows_frame(
    day: object,
    players: Sequence[str],
    ts: Sequence[pd.Timestamp],
    controller: str,
    flows: DayFlows,
    load_kwh: np.ndarray,
    pv_kwh: np.ndarray,
) -> pd.DataFrame:
    """Rows of ``realised_flows`` for one controller's day."""
    p_n, t_n = load_kwh.shape
    return pd.DataFrame(
        {
            "day": day,
            "member_id": np.repeat(np.array(players, dtype=object), t_n),
            "ts": pd.DatetimeIndex(ts)[np.tile(np.arange(t_n), p_n)],
            "controller": controller,
            "load_kwh": load_kwh.reshape(-1),
            "pv_kwh": pv_kwh.reshape(-1),
            "charge_kwh": flows.charge.reshape(-1),
            "discharge_kwh": flows.discharge.reshape(-1),
            "soc_kwh": flows.soc.reshape(-1),
            "import_kwh": flows.import_kwh.reshape(-1),
            "export_kwh": flows.export_kwh.reshape(-1),
            "mode": np.tile(flows.mode, p_n),
        }
    )


def period_kpis(realised: pd.DataFrame, carbon: pd.Series | None = None) -> pd.DataFrame:
    """The CityLearn 2022 KPI set over a period, per controller, as ratios to ``no_battery``.

    District net consumption ``e_t = sum_p (import - export)``; with price ``c_t`` and
    carbon intensity ``g_t``:

    * cost = ``sum_t max(e_t, 0) c_t``; emissions = ``sum_t max(e_t, 0) g_t``;
    * ramping = ``sum_t |e_t - e_{t-1}|``;
    * 1 - load factor = ``1 - mean over days of (mean_t e_t / max_t e_t)`` (CityLearn uses
      730-hour windows; days here, so that a short period has several windows).

    Parameters
    ----------
    realised : DataFrame
        ``realised_flows`` rows joined with ``import_price`` [currency/kWh] per row.
    carbon : Series, optional
        Carbon intensity by ``ts`` [kg/kWh].

    Returns
    -------
    DataFrame
        Index controller; columns ``cost, emissions, ramping, one_minus_load_factor`` (ratios
        to no_battery, lower is better) and the same as absolute values with suffix ``_abs``.
    """
    g = (
        realised.assign(e=realised["import_kwh"] - realised["export_kwh"])
        .groupby(["controller", "ts"], as_index=False)
        .agg(e=("e", "sum"), price=("import_price", "first"), day=("day", "first"))
        .sort_values(["controller", "ts"])
    )
    if carbon is not None:
        g["g"] = g["ts"].map(carbon).fillna(0.0)
    else:
        g["g"] = 0.0
    rows = {}
    for c, x in g.groupby("controller"):
        pos = x["e"].clip(lower=0)
        daily = x.groupby("day")["e"].agg(["mean", "max"])
        daily = daily[daily["max"] > 0]
        rows[c] = {
            "cost_abs": float((pos * x["price"]).sum()),
            "emissions_abs": float((pos * x["g"]).sum()),
            "ramping_abs": float(x["e"].diff().abs().sum()),
            "one_minus_load_factor_abs": float(1 - (daily["mean"] / daily["max"]).mean())
            if len(daily)
            else float("nan"),
        }
    df = pd.DataFrame.from_dict(rows, orient="index")
    if "no_battery" in df.index:
        for k in ("cost", "emissions", "ramping", "one_minus_load_factor"):
            base = df.loc["no_battery", f"{k}_abs"]
            df[k] = df[f"{k}_abs"] / base if base else np.nan
    order = [c for c in CONTROLLERS if c in df.index]
    return df.loc[order]
