"""Dispatch and allocation assets."""

import datetime as dt
import json
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from dagster import AssetKey

from assets.forecast import scenarios
from assets.ingest import meter_readings, prices
from assets.partitions import daily_partitions, previous_day
from assets.queries import export_prices
from assets.resources import EcmResource
from models.config import Battery, CommunityConfig
from models.features import weather_as_of
from models.ingest import (
    check_readings_complete,
    check_readings_plausible,
    check_readings_unique,
    plausible_kw,
)
from models.ledger import array_digest, frame_digest, policy_document, policy_hash, sha256
from models.master_data import metering_point_index
from models.settlement_store import (
    PolicyNotApproved,
    append_settlement,
    approval_in_force,
    latest_version,
)
from models.timeutil import as_date, day_intervals_utc
from optimisation.allocation import (
    AllocationInputs,
    allocate,
    gini,
    incentive_periods,
    per_period,
)
from optimisation.deferrable import DeferrableSpec
from optimisation.dispatch import (
    BatterySpec,
    DispatchError,
    DispatchInputError,
    DispatchInputs,
    plan_day,
    rule_based_plan,
)
from optimisation.ev import EvSpec
from optimisation.hvac import HvacSpec
from optimisation.settlement import (
    grid_cost,
    price_matrix,
    scenario_cube,
)


def _spec(b: Battery) -> BatterySpec:
    return BatterySpec(
        b.capacity_kwh,
        b.power_kw,
        b.round_trip_efficiency,
        b.initial_soc_fraction,
        b.min_soc_fraction,
    )


def players_and_batteries(cfg: CommunityConfig) -> tuple[list[str], dict[str, BatterySpec]]:
    """Players (members, then the community owner) and their batteries."""
    players = [*cfg.member_ids, cfg.shared_assets.owner_id]
    bats = {m.id: _spec(m.battery) for m in cfg.members if m.battery is not None}
    if cfg.shared_assets.battery is not None:
        bats[cfg.shared_assets.owner_id] = _spec(cfg.shared_assets.battery)
    return players, bats


def _pv_ids(cfg: CommunityConfig) -> dict[str, str]:
    pv = cfg.shared_assets.pv
    return {cfg.shared_assets.owner_id: pv.id} if pv is not None else {}


def plan_dir(ecm: EcmResource, day: dt.date):
    """Folder with the day's plan summary (and a fallback plan if the optimiser failed)."""
    d = ecm.home_path() / "plans" / day.isoformat()
    d.mkdir(parents=True, exist_ok=True)
    return d


def _carried_specs(wh, bats: dict[str, BatterySpec], day: dt.date) -> dict[str, BatterySpec]:
    """Batteries starting the day where ECM's real-time layer left them the day before.

    Without a realised previous day the configured initial SoC stands. The plan ends the day
    where it starts.
    """
    prev = wh.query(
        "SELECT member_id, soc_kwh FROM realised_flows WHERE day = ? AND controller = 'ecm' "
        "AND ts = (SELECT max(ts) FROM realised_flows WHERE day = ? AND controller = 'ecm')",
        [day - dt.timedelta(days=1), day - dt.timedelta(days=1)],
    )
    soc = dict(zip(prev["member_id"], prev["soc_kwh"], strict=True))
    out = {}
    for p, b in bats.items():
        frac = b.initial_soc_fraction
        if p in soc:
            frac = min(max(float(soc[p]) / b.capacity_kwh, b.min_soc_fraction), 1.0)
        out[p] = BatterySpec(
            b.capacity_kwh, b.power_kw, b.round_trip_efficiency, frac, b.min_soc_fraction
        )
    return out


def _interval_index(ts: list[pd.Timestamp], hhmm: str, tz: str, asset: str, field: str) -> int:
    """Index of the first interval of the day starting at or after local ``HH:MM`` (the
    number of intervals for ``24:00``)."""
    if hhmm == "24:00":
        return len(ts)
    h, m = (int(x) for x in hhmm.split(":"))
    local = pd.DatetimeIndex(ts).tz_convert(tz)
    minutes = local.hour * 60 + local.minute
    after = np.flatnonzero(minutes >= h * 60 + m)
    if not len(after):
        raise DispatchInputError(f"flexible_loads {asset}: {field} {hhmm} is after the day's end")
    return int(after[0])


def outdoor_temperature(cfg: CommunityConfig, wh, day: dt.date, ts: list) -> np.ndarray:
    """The outdoor temperature forecast of the day's intervals [degC]: the freshest weather
    forecast issued by the day's issue time, held over each hour's quarter-hours.

    Raises
    ------
    DispatchInputError
        No forecast covers an interval (air conditioners cannot be planned without one).
    """
    tz = cfg.community.timezone
    w = weather_as_of(wh.read_day("weather", day), [day], tz)
    temp = pd.Series(
        w["temperature_2m"].to_numpy(dtype=float), index=pd.DatetimeIndex(w["ts"]).tz_convert("UTC")
    )
    idx = pd.DatetimeIndex(ts).tz_convert("UTC")
    out = temp.reindex(idx.floor("h")).to_numpy()
    if np.isnan(out).any():
        first = idx[np.flatnonzero(np.isnan(out))[0]]
        raise DispatchInputError(
            f"air conditioners need the outdoor temperature forecast of {day}: none issued by "
            f"the day's issue time covers {first.isoformat()} (weather table)"
        )
    return out


def flexible_inputs(cfg: CommunityConfig, wh, day: dt.date, ts: list) -> dict[str, Any]:
    """The configured flexible loads (``flexible_loads``) as the dispatch LP's inputs: air
    conditioners per member with the outdoor temperature, EVs and deferrable loads by id.
    Times are local; an EV or a cycle whose window misses the day is refused by name."""
    fl = cfg.flexible_loads
    if not fl:
        return {}
    tz = cfg.community.timezone
    out: dict[str, Any] = {}
    if fl.air_conditioners:
        hours = list(pd.DatetimeIndex(ts).tz_convert(tz).hour)
        out["hvac"] = {}
        for a in fl.air_conditioners:
            lo, hi = a.band(hours)
            out["hvac"][a.member] = HvacSpec(
                r_k_per_kw=a.r_k_per_kw,
                c_kwh_per_k=a.c_kwh_per_k,
                cop=a.cop,
                max_power_kw=a.max_power_kw,
                t_min_c=lo,
                t_max_c=hi,
                t_initial_c=a.initial_temp_c,
                mode=a.mode,
            )
        out["outdoor_temp_c"] = outdoor_temperature(cfg, wh, day, ts)
    if fl.evs:
        out["evs"] = {
            e.id: EvSpec(
                owner=e.member,
                arrival=_interval_index(ts, e.arrival, tz, e.id, "arrival"),
                departure=_interval_index(ts, e.departure, tz, e.id, "departure"),
                energy_kwh=e.energy_kwh,
                max_power_kw=e.max_power_kw,
                efficiency=e.efficiency,
            )
            for e in fl.evs
        }
    if fl.deferrable:
        out["deferrable"] = {
            d.id: DeferrableSpec(
                owner=d.member,
                profile_kwh=d.profile_kwh,
                earliest=_interval_index(ts, d.earliest, tz, d.id, "earliest"),
                latest_end=_interval_index(ts, d.latest_end, tz, d.id, "latest_end"),
            )
            for d in fl.deferrable
        }
    return out


def flexible_rows(result: Any, cfg: CommunityConfig, day: dt.date) -> pd.DataFrame:
    """The ``flexible_plan`` rows of a solved day: per asset and interval its planned energy
    and power, the dwelling's indoor temperature (air conditioners), the EV's delivered energy
    and shortfall, a cycle's start."""
    hours = cfg.community.interval_minutes / 60
    frames = []
    ids = {a.member: a.id for a in cfg.flexible_loads.air_conditioners}
    if result.hvac is not None and len(result.hvac):
        h = result.hvac
        frames.append(
            pd.DataFrame(
                {
                    "asset_id": h["member_id"].map(ids),
                    "kind": "air_conditioner",
                    "member_id": h["member_id"],
                    "ts": h["ts"],
                    "energy_kwh": h["hvac_kwh"].astype(float),
                    "indoor_temp_c": h["indoor_temp_c"].astype(float),
                    "outside_band_k": h["outside_band_k"].astype(float),
                }
            )
        )
    if result.ev is not None and len(result.ev):
        e = result.ev
        frames.append(
            pd.DataFrame(
                {
                    "asset_id": e["ev_id"],
                    "kind": "ev",
                    "member_id": e["member_id"],
                    "ts": e["ts"],
                    "energy_kwh": e["charge_kwh"].astype(float),
                    "delivered_kwh": e["delivered_kwh"].astype(float),
                    "shortfall_kwh": e["shortfall_kwh"].astype(float),
                }
            )
        )
    if result.deferrable is not None and len(result.deferrable):
        specs = {d.id: d for d in cfg.flexible_loads.deferrable}
        step = pd.Timedelta(minutes=cfg.community.interval_minutes)
        for r in result.deferrable.itertuples(index=False):
            prof = specs[r.load_id].profile_kwh
            frames.append(
                pd.DataFrame(
                    {
                        "asset_id": r.load_id,
                        "kind": "deferrable",
                        "member_id": r.member_id,
                        "ts": [pd.Timestamp(r.start_ts) + k * step for k in range(len(prof))],
                        "energy_kwh": [float(x) for x in prof],
                        "starts": [k == 0 for k in range(len(prof))],
                    }
                )
            )
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    for col in ("indoor_temp_c", "outside_band_k", "delivered_kwh", "shortfall_kwh"):
        if col not in df:
            df[col] = np.nan
    if "starts" not in df:
        df["starts"] = False
    df["starts"] = df["starts"].fillna(False).astype(bool)
    return df.assign(day=day, power_kw=df["energy_kwh"] / hours)


def dispatch_inputs(cfg: CommunityConfig, wh, day: dt.date) -> DispatchInputs:
    """The dispatch LP's inputs for a day, from the scenarios and prices tables (and the
    configured flexible loads)."""
    scen = wh.read_day("scenarios", day)
    ts = list(day_intervals_utc(day, cfg.community.timezone, cfg.community.interval_minutes))
    players, bats = players_and_batteries(cfg)
    bats = _carried_specs(wh, bats, day)
    probs = scen.groupby("scenario")["probability"].first().sort_index().to_numpy()
    imp = price_matrix(scen, ts)
    exp = np.broadcast_to(export_prices(wh, day)["price_per_kwh"].to_numpy(), imp.shape).copy()
    return DispatchInputs(
        ts=tuple(ts),
        interval_hours=cfg.community.interval_minutes / 60,
        players=tuple(players),
        batteries=bats,
        load_kwh=scenario_cube(scen, players, ts, "load"),
        pv_kwh=scenario_cube(scen, players, ts, "pv", _pv_ids(cfg)),
        import_price=imp,
        export_price=exp,
        probabilities=probs / probs.sum(),
        incentive_per_kwh=cfg.incentive.rate_per_kwh,
        cycling_penalty_per_kwh=cfg.dispatch.cycling_penalty_per_kwh,
        # shared energy valued per local hour, as settled (quarter-hour meters)
        share_periods=incentive_periods(ts, cfg.community.timezone)
        if cfg.community.interval_minutes < 60
        else None,
        **flexible_inputs(cfg, wh, day, ts),
    )


@dg.asset(
    partitions_def=daily_partitions,
    kinds={"pyomo", "highs", "duckdb"},
    group_name="plan",
    deps=[scenarios, prices, previous_day("realised_flows")],
)
def dispatch_plan(context: dg.AssetExecutionContext, ecm: EcmResource) -> dg.MaterializeResult:
    """Two-stage stochastic battery plan (Pyomo + HiGHS): batteries decided once, grid flows
    per scenario; minimises expected grid cost minus the shared-energy incentive."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    inputs = dispatch_inputs(cfg, wh, day)
    probs = inputs.probabilities
    out = plan_dir(ecm, day)
    try:
        result = plan_day(inputs, time_limit_s=cfg.dispatch.time_limit_s)
    except DispatchError as err:
        fallback = rule_based_plan(inputs).assign(plan_kind="fallback")
        fallback.to_csv(out / "fallback_plan.csv", index=False)
        raise dg.Failure(
            description=f"No plan published: the optimiser failed ({err.termination_condition}):"
            f" {err.reason}. A rule-based fallback plan, labelled as such, is at "
            f"{out / 'fallback_plan.csv'} for the operator to review.",
            metadata={"termination_condition": err.termination_condition, "reason": err.reason},
        ) from err
    plan = result.plan.assign(day=day, plan_kind="optimal")
    flex = flexible_rows(result, cfg, day)
    if cfg.flexible_loads:
        n = wh.replace_many([("dispatch_plan", plan), ("flexible_plan", flex)], {"day": day})[0]
    else:
        n = wh.replace("dispatch_plan", plan, {"day": day})
    rep = result.report
    solve_info = {
        "termination_condition": rep.termination_condition,
        "build_time_s": rep.build_time_s,
        "solve_time_s": rep.solve_time_s,
        "n_variables": rep.n_variables,
        "n_constraints": rep.n_constraints,
    }
    (out / "summary.json").write_text(
        json.dumps({"summary": result.summary, "solve_info": solve_info}, indent=2)
    )
    return dg.MaterializeResult(
        metadata={
            "rows_written": n,
            **{k: float(round(v, 4)) for k, v in result.summary.items()},
            **solve_info,
            "scenarios": len(probs),
            **_flexible_metadata(flex),
        }
    )


def _flexible_metadata(flex: pd.DataFrame) -> dict[str, Any]:
    """What the operator checks first: energy planned per kind, comfort and EV needs."""
    if flex.empty:
        return {}
    out: dict[str, Any] = {
        f"{k}_kwh": float(round(g["energy_kwh"].sum(), 3)) for k, g in flex.groupby("kind")
    }
    if (flex["kind"] == "air_conditioner").any():
        out["comfort_violation_k_max"] = float(round(flex["outside_band_k"].max(), 4))
    if (flex["kind"] == "ev").any():
        ev = flex[flex["kind"] == "ev"].groupby("asset_id")["shortfall_kwh"].first()
        out["ev_shortfall_kwh"] = float(round(ev.sum(), 3))
    return out


@dg.asset(
    partitions_def=daily_partitions,
    kinds={"duckdb"},
    group_name="settle",
    deps=[dispatch_plan, meter_readings, AssetKey("realised_flows")],
)
def allocations(context: dg.AssetExecutionContext, ecm: EcmResource) -> dg.MaterializeResult:
    """The day's community benefit (incentive + savings vs acting alone, on the realised flows of
    ECM's real-time layer) allocated under every approved fairness rule, to the cent."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    _require_checks_passed(ecm, cfg, day)
    ts = list(day_intervals_utc(day, cfg.community.timezone, cfg.community.interval_minutes))
    players, _ = players_and_batteries(cfg)
    flows = wh.query("SELECT * FROM realised_flows WHERE day = ?", [day])
    if not {"ecm", "self_consumption", "no_battery"} <= set(flows["controller"]):
        raise dg.Failure(
            description=f"Settlement of {day} refused: the day has no realised flows "
            "(materialise realised_flows first)."
        )

    def matrix(controller: str, col: str) -> np.ndarray:
        g = flows[flows["controller"] == controller]
        g = g.pivot(index="member_id", columns="ts", values=col)
        g = g.reindex(index=players, columns=ts)
        gaps = g.isna().any(axis=1)
        if gaps.any():
            raise dg.Failure(
                description=f"Settlement of {day} refused: {controller} {col} missing for "
                f"{', '.join(g.index[gaps])}; nothing was written"
            )
        return g.to_numpy(dtype=float, copy=True)

    price = wh.query(
        "SELECT ts, price_per_kwh FROM prices WHERE price_type = 'import' AND day = ? ORDER BY ts",
        [day],
    )["price_per_kwh"].to_numpy()
    exp_price = export_prices(wh, day)["price_per_kwh"].to_numpy()
    imp, exp = matrix("ecm", "import_kwh"), matrix("ecm", "export_kwh")
    # acting alone: members run their own battery by the greedy rule, the community's plant
    # exports with its battery idle; both with the state of charge carried across days
    a_imp, a_exp = (
        matrix("self_consumption", "import_kwh"),
        matrix("self_consumption", "export_kwh"),
    )
    owner = players.index(cfg.shared_assets.owner_id)
    a_imp[owner] = matrix("no_battery", "import_kwh")[owner]
    a_exp[owner] = matrix("no_battery", "export_kwh")[owner]
    doc = policy_document(cfg)
    p_hash = policy_hash(doc)
    try:
        approval = approval_in_force(wh, cfg, doc, p_hash)
    except PolicyNotApproved as err:
        raise dg.Failure(description=f"Settlement of {day} refused: {err}") from None
    load = matrix("ecm", "load_kwh")
    # bills at the meters' resolution; shared energy (and everything keyed by it) per hour:
    # the incentive is paid on the minimum of the hour's sums, not the sum of quarter-hour minima
    hours = incentive_periods(ts, cfg.community.timezone)
    inputs = AllocationInputs(
        players=tuple(players),
        consumption_kwh=per_period(load, hours),
        import_kwh=per_period(imp, hours),
        export_kwh=per_period(exp, hours),
        standalone_cost=grid_cost(a_imp, a_exp, price, exp_price),
        community_cost=grid_cost(imp, exp, price, exp_price),
        incentive_per_kwh=cfg.incentive.rate_per_kwh,
        currency=cfg.community.currency,
        alone_import_kwh=per_period(a_imp, hours),
        alone_export_kwh=per_period(a_exp, hours),
        loss_sharing=cfg.fairness.loss_sharing,
    )
    df = allocate(inputs, cfg.fairness.rules).assign(day=day, currency=cfg.community.currency)
    df["is_settlement"] = df["rule"] == cfg.fairness.settlement_rule
    game = df.attrs.get("game", {})
    readings = wh.read_day("meter_readings", day)
    meter_hash = frame_digest(readings, ["metering_point_id", "ts", "kwh", "quality"])
    digest = array_digest(load, imp, exp, a_imp, a_exp, price, exp_price)
    per_interval_hash = sha256(meter_hash + digest)  # also the hash of versions before hours
    sub_hourly = bool(np.bincount(hours).max() > 1)
    input_hash = (
        sha256(meter_hash + digest + array_digest(hours) + HOURLY_SHARED)
        if sub_hourly
        else per_interval_hash
    )
    latest = latest_version(wh, day)
    unchanged = bool(
        latest and latest["input_hash"] == input_hash and latest["policy_hash"] == p_hash
    )
    if unchanged:
        version, reason = latest, "unchanged inputs: no new version"
    elif latest and sub_hourly and latest["input_hash"] == per_interval_hash:
        reason = (
            "settlement method changed: shared energy of quarter-hour meters is now the "
            "minimum of each hour's sums (the incentive's hourly rule), not the sum of the "
            "quarter-hours' minima"
        )
    else:
        reason = _reason(wh, day, latest, meter_hash, p_hash)
    if not unchanged:
        total = df.loc[df["is_settlement"], "amount"].sum()
        version = append_settlement(
            wh,
            day,
            df,
            {
                "reason": reason,
                "input_hash": input_hash,
                "meter_hash": meter_hash,
                "policy_hash": p_hash,
                "approval_reference": f"{approval['reference']} by {approval['approved_by']} "
                f"on {pd.Timestamp(approval['approved_on']).date()}",
                "settlement_rule": cfg.fairness.settlement_rule,
                "total": total,
                "method": game.get("method", "n/a"),
                "in_core": bool(game.get("in_core", True)),
                "core_max_violation": float(game.get("core_max_violation", 0.0)),
                "core_method": game.get("core_method", "n/a"),
                "settled_by": settled_by(),
                "settled_in_run": context.run_id,
                "input_files": input_files(readings),
            },
        )
    n = len(df)
    return dg.MaterializeResult(
        metadata={
            "rows_written": n,
            "version": int(version["version"]),
            "reason": reason,
            "in_core": bool(version["in_core"]),
            "core_max_violation": float(version["core_max_violation"]),
            "settlement_rule": cfg.fairness.settlement_rule,
            "policy_approval": str(version["approval_reference"]),
            **{f"total_{r}": float(g["amount"].sum()) for r, g in df.groupby("rule")},
            **{
                f"gini_{r}": round(gini(g["amount"].astype(float).to_numpy()), 4)
                for r, g in df.groupby("rule")
                if g["amount"].astype(float).mean() > 0
            },
            "preview": dg.MetadataValue.md(
                df.pivot(index="member_id", columns="rule", values="amount").to_markdown()
            ),
        }
    )


def settled_by() -> str:
    """Who settles: ``$ECM_ACTOR`` (the operator or service account a deployment names), else
    the operating-system user."""
    import getpass
    import os

    try:
        return os.environ.get("ECM_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid {os.getuid()}"


def input_files(readings: pd.DataFrame) -> str:
    """The files the day's readings came from, with their SHA-256 and reading counts, as JSON
    (estimates name their rule as the source and have no file hash)."""
    if readings.empty:
        return "[]"
    g = (
        readings.assign(source_sha256=readings["source_sha256"].fillna(""))
        .groupby(["source", "source_sha256"])
        .size()
        .reset_index(name="readings")
        .sort_values(["source", "source_sha256"])
    )
    return json.dumps(
        [
            {"file": f, "sha256": h or None, "readings": int(n)}
            for f, h, n in g.itertuples(index=False)
        ]
    )


HOURLY_SHARED = "shared energy per local hour"
"""Part of the input hash of sub-hourly settlements (the method since quarter-hour flows are
summed per hour before sharing), so that a day settled the earlier way is restated."""


def _reason(wh: Any, day: dt.date, latest: dict | None, meter_hash: str, p_hash: str) -> str:
    """Why a new settlement version is made."""
    if latest is None:
        return "first settlement"
    if latest["meter_hash"] != meter_hash:
        files = wh.query(
            "SELECT file_name FROM inbox_files WHERE status = 'processed' AND received_at > ? "
            "AND contains(corrected_days, ?) ORDER BY received_at",
            [latest["created_at"], day.isoformat()],
        )["file_name"].tolist()
        return "meter data corrected" + (f" ({', '.join(files)})" if files else "")
    if latest["policy_hash"] != p_hash:
        return "fairness policy changed (new approval)"
    return (
        "realised operation changed (the state of charge carried from a restated previous "
        "day, or a re-run)"
    )


def _require_checks_passed(ecm: EcmResource, cfg: CommunityConfig, day: dt.date) -> None:
    """Settlement re-checks its own preconditions: a blocking check only stops downstream
    assets in the same run, so a separately started run must not settle unchecked data."""
    rows = ecm.warehouse().read_day("meter_readings", day)
    results = [
        check_readings_complete(rows, day, cfg.community.timezone, metering_point_index(cfg)),
        check_readings_unique(rows),
        check_readings_plausible(rows, cfg.community.interval_minutes, plausible_kw(cfg)),
    ]
    failed = [r for r in results if not r.passed]
    if failed:
        raise dg.Failure(
            description=f"Settlement of {day} refused: meter data fails "
            + "; ".join(f"{r.description} ({r.metadata})" for r in failed),
            metadata={"failed_checks": len(failed)},
        )
