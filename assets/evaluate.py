"""Closed-loop evaluation assets: every controller replayed on the metered day.

``realised_flows`` replays the day for the four controllers of :mod:`optimisation.control`
(each from its own state of charge at the end of the previous evaluated day) and
``evaluation`` totals them per controller. Settlement (``allocations``) bills the ``ecm``
controller's flows against members acting alone with the SoC carried the same way.
"""

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd

from assets.ingest import meter_readings, prices
from assets.partitions import daily_partitions, previous_day
from assets.queries import series_map
from assets.resources import EcmResource
from models.config import CommunityConfig
from models.intraday import IntradayForecaster
from models.master_data import metering_point_index
from models.prices import carbon_intensity, tariff_rows
from models.timeutil import as_date, day_bounds_utc, day_intervals_utc
from models.warehouse import Warehouse
from optimisation.allocation import incentive_periods
from optimisation.control import CONTROLLERS, Fleet, Horizon, ObjectiveSettings, Tariff
from optimisation.evaluation import (
    DayData,
    day_totals,
    evaluate_day,
    flows_frame,
    standalone_cost,
)


class MissingMeterData(ValueError):
    """Meter data needed for an evaluation is missing; names the days and metering points."""


def fleet_of(cfg: CommunityConfig) -> Fleet:
    """Players (members, then the community owner) and their batteries as a :class:`Fleet`."""
    from assets.dispatch import players_and_batteries

    players, bats = players_and_batteries(cfg)
    return Fleet(
        tuple(players),
        bats,
        cfg.community.interval_minutes / 60,
        cfg.shared_assets.owner_id if cfg.shared_assets.battery is not None else None,
    )


def objective_settings(cfg: CommunityConfig) -> ObjectiveSettings:
    """The real-time layer's objective terms from the configuration."""
    c = cfg.control
    hours = cfg.community.interval_minutes / 60
    limits = np.array(
        [m.contracted_power_kw * hours if m.contracted_power_kw else np.inf for m in cfg.members]
        + [np.inf]
    )
    return ObjectiveSettings(
        horizon_intervals=int(round(c.horizon_hours / hours)),
        terminal_value_fraction=c.terminal_value_fraction,
        ramping_penalty_per_kwh=c.ramping_penalty_per_kwh or 0.0,
        ramping_penalty_fraction=0.0
        if c.ramping_penalty_per_kwh is not None
        else c.ramping_penalty_fraction,
        deviation_margin_fraction=c.deviation_margin_fraction,
        peak_charge_per_kwh=c.peak_charge_per_kwh,
        carbon_price_per_kg=c.carbon_price_per_kg,
        import_limit_kwh=limits if np.isfinite(limits).any() else None,
        feeder_cap_kwh=None if c.feeder_cap_kw is None else c.feeder_cap_kw * hours,
        cycling_penalty_per_kwh=cfg.dispatch.cycling_penalty_per_kwh,
        share_period_minutes=60 if cfg.community.interval_minutes < 60 else None,
    )


def missing_meter_data(
    wh: Warehouse, cfg: CommunityConfig, first: dt.date, last: dt.date
) -> dict[dt.date, list[str]]:
    """Metering points with missing intervals per local day in [first, last].

    Returns
    -------
    dict
        Day -> ``["MP-01-C (3 of 24 missing, first 2017-06-08T07:00Z)", ...]``; empty if complete.
    """
    tz = cfg.community.timezone
    start, end = day_bounds_utc(first, tz)[0], day_bounds_utc(last, tz)[1]
    have = wh.query(
        "SELECT metering_point_id, ts FROM meter_readings WHERE ts >= ? AND ts < ?", [start, end]
    )
    have_set = set(zip(have["metering_point_id"], pd.DatetimeIndex(have["ts"]), strict=True))
    out: dict[dt.date, list[str]] = {}
    mps = metering_point_index(cfg)
    day = first
    while day <= last:
        problems = []
        for mp, info in sorted(mps.items()):
            if day < info.valid_from or (info.valid_to is not None and day > info.valid_to):
                continue
            expected = day_intervals_utc(day, tz, info.interval_minutes)
            miss = [t for t in expected if (mp, t) not in have_set]
            if miss:
                problems.append(
                    f"{mp} ({len(miss)} of {len(expected)} missing, first "
                    f"{miss[0].strftime('%Y-%m-%dT%H:%MZ')})"
                )
        if problems:
            out[day] = problems
        day += dt.timedelta(days=1)
    return out


def _matrix(
    wh: Warehouse, cfg: CommunityConfig, players: list[str], grid: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray]:
    """Metered load and PV (P, N) on the grid [kWh], NaN where not stored."""
    smap = series_map(cfg)
    r = wh.query(
        "SELECT metering_point_id, ts, kwh FROM meter_readings WHERE ts >= ? AND ts <= ?",
        [grid[0], grid[-1]],
    )
    r = r[r["metering_point_id"].isin(smap)]
    r["target"] = r["metering_point_id"].map(lambda m: smap[m][0])
    r["uid"] = r["metering_point_id"].map(lambda m: smap[m][1])
    pv_ids = {cfg.shared_assets.pv.id: cfg.shared_assets.owner_id} if cfg.shared_assets.pv else {}
    r["player"] = r["uid"].map(lambda u: pv_ids.get(u, u))
    r["ts"] = pd.DatetimeIndex(r["ts"]).tz_convert("UTC")

    def pivot(target: str) -> np.ndarray:
        g = r[r["target"] == target].pivot_table(index="player", columns="ts", values="kwh")
        return g.reindex(index=players, columns=grid).to_numpy(dtype=float, copy=True)

    load, pv = pivot("load"), pivot("pv")
    no_load = [i for i, p in enumerate(players) if p not in cfg.member_ids]
    load[no_load, :] = 0.0  # the community owner has no consumption
    has_pv = {p for p in players if p == cfg.shared_assets.owner_id and cfg.shared_assets.pv}
    has_pv |= {m.id for m in cfg.members if m.pv_kwp > 0}
    pv[[i for i, p in enumerate(players) if p not in has_pv], :] = 0.0
    return load, pv


def _price_series(wh: Warehouse, kind: str, grid: pd.DatetimeIndex) -> np.ndarray:
    p = wh.query(
        "SELECT ts, price_per_kwh FROM prices WHERE price_type = ? AND ts >= ? AND ts <= ?",
        [kind, grid[0], grid[-1]],
    )
    s = pd.Series(
        p["price_per_kwh"].to_numpy(float), index=pd.DatetimeIndex(p["ts"]).tz_convert("UTC")
    )
    return s.reindex(grid).to_numpy(dtype=float, copy=True)


def day_data(wh: Warehouse, cfg: CommunityConfig, day: dt.date, fleet: Fleet) -> DayData:
    """Everything the controllers need for a day, read from the warehouse.

    The grid runs from ``control.history_days`` before the day to the end of the next day.
    ECM's real-time layer sees only intervals before each decision; prices beyond the day are
    the day's own time-of-use prices 24 h later (the tariff, deterministic whatever has been
    ingested). The perfect-foresight bound also sees the next day's metered data where stored.

    Raises
    ------
    MissingMeterData
        The day itself is not completely metered (days and metering points named).
    """
    missing = missing_meter_data(wh, cfg, day, day)
    if missing:
        raise MissingMeterData(
            f"{day}: meter data missing, nothing evaluated: " + "; ".join(missing[day][:10])
        )
    tz, minutes = cfg.community.timezone, cfg.community.interval_minutes
    per_day = int(24 * 60 / minutes)
    ts_day = day_intervals_utc(day, tz, minutes)
    step = pd.Timedelta(minutes=minutes)
    hist = cfg.control.history_days * per_day
    grid = pd.date_range(ts_day[0] - hist * step, ts_day[-1] + per_day * step, freq=step)
    players = list(fleet.players)
    load, pv = _matrix(wh, cfg, players, grid)
    i0, t_n = hist, len(ts_day)
    imp = _price_series(wh, "import", grid)
    exp = _price_series(wh, "export", grid)
    specs = (cfg.tariffs.import_price, cfg.tariffs.export_price)
    for kind, arr, spec in (("import", imp, specs[0]), ("export", exp, specs[1])):
        # the look-ahead: a configured tariff is known in advance (the next day priced by it,
        # weekends and holidays included); prices from files repeat the day's (24 h later)
        la = slice(i0 + t_n, len(grid))
        src = np.arange(i0 + t_n, len(grid)) - per_day
        arr[la] = arr[src]
        if not spec.inbox:
            nxt = tariff_rows(
                spec,
                kind,
                [day + dt.timedelta(days=1), day + dt.timedelta(days=2)],
                tz=tz,
                currency=cfg.community.currency,
                interval_minutes=minutes,
                holidays=cfg.tariffs.holidays,
            )
            known_ahead = pd.Series(
                nxt["price_per_kwh"].to_numpy(float), index=pd.DatetimeIndex(nxt["ts"])
            ).reindex(grid[la])
            arr[la] = np.where(known_ahead.notna(), known_ahead.to_numpy(), arr[la])
        if np.isnan(arr[i0 : i0 + t_n]).any():
            raise MissingMeterData(f"{day}: prices missing in the prices table; nothing evaluated")
        arr[:i0] = np.nan_to_num(arr[:i0], nan=float(np.nanmean(arr[i0 : i0 + t_n])))
    ci = None
    if cfg.tariffs.carbon_intensity_source:
        s = carbon_intensity(
            cfg.resolve(cfg.tariffs.carbon_intensity_source), grid[0], grid[-1] + step
        )
        ci = s.reindex(grid).ffill().bfill().fillna(0.0).to_numpy(dtype=float)
    fc = IntradayForecaster(
        load,
        pv,
        intervals_per_day=per_day,
        load_days=cfg.control.history_days,
        load_decay=cfg.control.load_decay,
        pv_decay=cfg.control.pv_decay,
    )
    # Beyond the day, perfect foresight knows what the real-time layer knows at the day's end
    # (the intraday forecast issued then), not the next day's readings: whether those are
    # stored yet depends on the order days were run, and a day's evaluation must not.
    la_load, la_pv = fc(i0 + t_n, len(grid) - (i0 + t_n))
    return DayData(
        day=day,
        load_kwh=load[:, i0 : i0 + t_n],
        pv_kwh=pv[:, i0 : i0 + t_n],
        lookahead_load_kwh=la_load,
        lookahead_pv_kwh=la_pv,
        horizon=Horizon(list(grid), i0, t_n, Tariff(imp, exp, cfg.incentive.rate_per_kwh, ci)),
        forecast=fc,
        carbon_intensity=None if ci is None else ci[i0 : i0 + t_n],
    )


def carried_state(
    wh: Warehouse, fleet: Fleet, day: dt.date
) -> tuple[dict[str, np.ndarray], dict[str, float | None], bool]:
    """SoC at the start of ``day`` and the last community net exchange, per controller.

    Taken from the previous day's ``realised_flows``; where that day was not evaluated, every
    controller starts from the configured initial SoC (the same for all, so no controller gains).

    Returns
    -------
    soc0 : dict of controller to ndarray (P,) [kWh]
    previous_net : dict of controller to float or None [kWh]
    carried : bool
        Whether the state came from the previous day.
    """
    prev = wh.query(
        "SELECT controller, member_id, ts, soc_kwh, import_kwh - export_kwh AS net "
        "FROM realised_flows WHERE day = ?",
        [day - dt.timedelta(days=1)],
    )
    init = fleet.initial_soc()
    if prev.empty or set(prev["controller"]) < set(CONTROLLERS):
        return {c: init.copy() for c in CONTROLLERS}, dict.fromkeys(CONTROLLERS), False
    soc0, net = {}, {}
    last_ts = prev["ts"].max()
    for c in CONTROLLERS:
        g = prev[(prev["controller"] == c) & (prev["ts"] == last_ts)].set_index("member_id")
        soc0[c] = g["soc_kwh"].reindex(list(fleet.players)).fillna(0.0).to_numpy(dtype=float)
        net[c] = float(g["net"].sum())
    return soc0, net, True


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "realised_flows",
            deps=[meter_readings, prices, previous_day("realised_flows")],
            group_name="evaluate",
            kinds={"pyomo", "highs", "duckdb"},
            description="The metered day replayed under no battery, the self-consumption rule, "
            "ECM's real-time layer (re-plan every interval, rule plus the plan's deliberate "
            "deviations) and perfect foresight, each from its own SoC carried from the previous "
            "day.",
        ),
        dg.AssetSpec(
            "evaluation",
            deps=["realised_flows"],
            group_name="evaluate",
            kinds={"duckdb"},
            description="Community totals per controller on the metered day: grid cost, "
            "incentive, net cost, CO2, peak, ramping, shared energy and the benefit against "
            "members acting alone.",
        ),
    ],
    partitions_def=daily_partitions,
)
def closed_loop_evaluation(context: dg.AssetExecutionContext, ecm: EcmResource):
    """Replay the day under every controller and total it (two tables, one computation)."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    fleet = fleet_of(cfg)
    try:
        data = day_data(wh, cfg, day, fleet)
    except MissingMeterData as err:
        raise dg.Failure(description=str(err)) from err
    soc0, prev_net, carried = carried_state(wh, fleet, day)
    flows, secs = evaluate_day(data, fleet, soc0, objective_settings(cfg), prev_net)
    frames = [
        flows_frame(day, fleet.players, data.ts, c, f, data.load_kwh, data.pv_kwh)
        for c, f in flows.items()
    ]
    imp, exp = data.prices()
    hours = incentive_periods(data.ts, cfg.community.timezone)  # as settled: hourly shared
    alone = standalone_cost(
        flows["self_consumption"], flows["no_battery"], imp, exp, fleet.shared_index
    )
    totals = pd.DataFrame(
        [
            {
                "day": day,
                "controller": c,
                **day_totals(
                    flows[c],
                    imp,
                    exp,
                    cfg.incentive.rate_per_kwh,
                    data.carbon_intensity,
                    float(alone.sum()),
                    hours,
                ),
                "seconds": secs[c],
            }
            for c in CONTROLLERS
        ]
    )
    n_flows, n_eval = wh.replace_many(
        [
            ("realised_flows", pd.concat(frames, ignore_index=True)),
            ("evaluation", totals),
        ],
        {"day": day},
    )
    by = totals.set_index("controller")
    yield dg.MaterializeResult(
        asset_key="realised_flows",
        metadata={
            "rows_written": n_flows,
            "soc_carried_from_previous_day": carried,
            **{f"seconds_{c}": round(s, 2) for c, s in secs.items()},
            "ecm_fallback_intervals": int((flows["ecm"].mode == "fallback_rule").sum()),
        },
    )
    yield dg.MaterializeResult(
        asset_key="evaluation",
        metadata={
            "rows_written": n_eval,
            **{f"net_cost_{c}": round(float(by.loc[c, "net_cost"]), 2) for c in CONTROLLERS},
            "benefit_ecm": round(float(by.loc["ecm", "benefit"]), 2),
            "ramping_ecm_vs_rule": round(
                float(by.loc["ecm", "ramping_kwh"])
                / max(float(by.loc["self_consumption", "ramping_kwh"]), 1e-9),
                3,
            ),
        },
    )
