"""Anomaly and report assets: what looks wrong, and what the operator and members read."""

import datetime as dt
import json
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from assets.dispatch import allocations, dispatch_plan, plan_dir
from assets.forecast import forecasts
from assets.ingest import meter_readings
from assets.partitions import daily_partitions, with_days_before
from assets.queries import actuals
from assets.resources import EcmResource
from models.anomalies import (
    drift_anomalies,
    forecast_anomalies,
    meter_anomalies,
    quarantine_anomalies,
    settlement_anomalies,
)
from models.plan_store import approval_state, record_decision
from models.reports import key_figures, render_member_statements, render_plan_report
from models.settlement_store import latest_version, settled_allocations
from models.timeutil import as_date, day_bounds_utc, day_intervals_utc
from models.triage import cases_of_day, update_cases


@dg.asset(
    partitions_def=daily_partitions,
    kinds={"duckdb"},
    group_name="review",
    deps=[
        meter_readings,
        with_days_before(forecasts.key, 7),  # the previous day's misses, a week's drift
        allocations,
        dg.AssetKey("evaluation"),
    ],
)
def anomalies(context: dg.AssetExecutionContext, ecm: EcmResource) -> dg.MaterializeResult:
    """Flags on the day's meter data (gaps, spikes, flat-lines, negatives, intervals held back
    as conflicting duplicates) and on the previous day's forecasts where actuals fell well
    outside their own interval."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh, tz = ecm.warehouse(), cfg.community.timezone
    rows = wh.read_day("meter_readings", day)
    start, _ = day_bounds_utc(day, tz)
    hist = wh.query(
        "SELECT metering_point_id, ts, kwh FROM meter_readings WHERE ts >= ? AND ts < ?",
        [start - pd.Timedelta(days=14), start],
    )
    mps = wh.read("metering_points").set_index("metering_point_id")["direction"].to_dict()
    flags = [
        meter_anomalies(
            rows[["metering_point_id", "ts", "kwh"]],
            hist,
            day_intervals_utc(day, tz, cfg.community.interval_minutes),
            mps,
            day,
        )
    ]
    flags.append(
        quarantine_anomalies(
            wh.query("SELECT * FROM quarantined_readings WHERE day = ?", [day]),
            rows[["metering_point_id", "ts"]],
            day,
            cfg.community.interval_minutes,
        )
    )
    prev = day - dt.timedelta(days=1)
    fc = wh.query(
        "SELECT target, unique_id, ts, q10, q50, q90 FROM forecasts WHERE day = ? AND is_champion",
        [prev],
    )
    if not fc.empty:
        act = actuals(wh, cfg, prev, prev).rename(columns={"y": "actual"})
        flags.append(forecast_anomalies(fc, act, day))
    week = day - dt.timedelta(days=7)
    fc7 = wh.query(
        "SELECT day, target, unique_id, model, ts, point, q10, q90, is_champion FROM forecasts "
        "WHERE day BETWEEN ? AND ? AND (is_champion OR model = 'seasonal_naive')",
        [week, prev],
    )
    if not fc7.empty:
        flags.append(drift_anomalies(fc7, actuals(wh, cfg, week, prev), day))
    settled = settled_allocations(wh, day)
    if len(settled):
        rule = cfg.fairness.settlement_rule
        past = wh.query(
            "SELECT a.day, a.member_id, a.amount FROM allocations a JOIN (SELECT day, "
            "max(version) AS version FROM allocations WHERE day BETWEEN ? AND ? GROUP BY day) v "
            "USING (day, version) WHERE a.rule = ?",
            [day - dt.timedelta(days=28), prev, rule],
        )
        flags.append(
            settlement_anomalies(
                settled[settled["rule"] == rule],
                past,
                wh.read_day("evaluation", day),
                day,
                cfg.shared_assets.owner_id,
            )
        )
    df = pd.concat([f for f in flags if not f.empty] or [flags[0]], ignore_index=True)
    n = wh.replace("anomalies", df, {"day": day})
    cases = update_cases(wh, day, df)
    counts = df["severity"].value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            "rows_written": n,
            **{f"cases_{k}": int(v) for k, v in cases.items()},
            **{f"severity_{k}": int(v) for k, v in counts.items()},
            "forecasts_checked_for": prev.isoformat() if not fc.empty else "none (no forecast)",
            "top": dg.MetadataValue.md(
                df.head(10)[["severity", "rule", "subject_id", "message"]].to_markdown(index=False)
                if n
                else "nothing flagged"
            ),
        }
    )


def forecast_quality(wh: Any, cfg: Any, day: dt.date, fc: pd.DataFrame) -> pd.DataFrame:
    """Per target: the day's champion, its training origin and note, and the q10-q90 coverage
    realised by the champion forecasts issued over the 28 days before (and yesterday), from
    the stored forecasts and the metered actuals (PV nights left out)."""
    from models.forecasters import coverage, informative

    rows = []
    first, prev = day - dt.timedelta(days=28), day - dt.timedelta(days=1)
    issued = wh.query(
        "SELECT day, target, unique_id, ts, q10, q90 FROM forecasts "
        "WHERE day BETWEEN ? AND ? AND is_champion",
        [first, prev],
    )
    act = actuals(wh, cfg, first, prev) if not issued.empty else pd.DataFrame()

    def covered(m: pd.DataFrame) -> float | None:
        keep = informative(m, "q10", "q90") if len(m) else np.array([], dtype=bool)
        if not keep.any():
            return None
        return coverage(
            m["y"].to_numpy()[keep], m["q10"].to_numpy()[keep], m["q90"].to_numpy()[keep]
        )

    for target, g in fc.groupby("target", sort=True):
        note = g["note"].dropna().astype(str) if "note" in g else pd.Series(dtype=str)
        m = (
            issued[issued["target"] == target].merge(
                act[act["target"] == target], on=["unique_id", "ts"]
            )
            if not act.empty
            else pd.DataFrame()
        )
        rows.append(
            {
                "target": target,
                "model": str(g["model"].iloc[0]),
                "origin": g["model_origin"].iloc[0] if "model_origin" in g else None,
                "window_coverage": covered(m),
                "window_days": int(m["day"].nunique()) if len(m) else 0,
                "yesterday_coverage": covered(m[m["day"] == prev]) if len(m) else None,
                "note": note.iloc[0] if len(note) else "",
            }
        )
    return pd.DataFrame(rows)


@dg.asset(
    partitions_def=daily_partitions,
    kinds={"html"},
    group_name="review",
    deps=[
        dispatch_plan,
        allocations,
        anomalies,
        with_days_before(forecasts.key, 28),  # the issued forecasts' coverage over 28 days
        dg.AssetKey("evaluation"),
    ],
)
def reports(context: dg.AssetExecutionContext, ecm: EcmResource) -> dg.MaterializeResult:
    """The operator's plan report and one statement per member, as HTML under reports/."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    saved = json.loads((plan_dir(ecm, day) / "summary.json").read_text())
    fc = wh.query("SELECT * FROM forecasts WHERE day = ? AND is_champion", [day])
    alloc = settled_allocations(wh, day)
    version = latest_version(wh, day)
    anom = wh.read_day("anomalies", day)
    anom = anom.merge(cases_of_day(wh, day), on=["rule", "subject_id"], how="left")
    plan = wh.read_day("dispatch_plan", day)
    approval = approval_state(wh, day, plan)
    if cfg.dispatch.auto_approve and approval["state"] == "proposed":
        record_decision(wh, day, "approved", by="auto-approve", source="auto")
        approval = approval_state(wh, day, plan)
    common = {"community_name": cfg.community.name, "currency": cfg.community.currency}
    plan_path = render_plan_report(
        day,
        ecm.reports_dir(),
        forecast_quality=forecast_quality(wh, cfg, day, fc),
        tz=cfg.community.timezone,
        forecasts=fc,
        plan=plan,
        summary=saved["summary"],
        anomalies=anom,
        allocations=alloc,
        settlement_rule=cfg.fairness.settlement_rule,
        solve_info=saved["solve_info"],
        realised=wh.read_day("evaluation", day),
        settlement=version,
        approval=approval,
        flexible=wh.read_day("flexible_plan", day) if cfg.flexible_loads else None,
        **common,
    )
    statements = render_member_statements(
        day,
        ecm.reports_dir(),
        allocations=alloc,
        members=wh.read("members"),
        settlement_rule=cfg.fairness.settlement_rule,
        incentive_per_kwh=cfg.incentive.rate_per_kwh,
        settlement=version,
        readings=wh.query(
            "SELECT p.owner_id AS member_id, r.kwh, r.quality, r.source FROM meter_readings r "
            "JOIN metering_points p USING (metering_point_id) WHERE r.day = ?",
            [day],
        ),
        **common,
    )
    figures = key_figures(saved["summary"], alloc, anom, cfg.fairness.settlement_rule)
    return dg.MaterializeResult(
        metadata={
            "plan_report": dg.MetadataValue.path(str(plan_path)),
            "plan_report_link": dg.MetadataValue.url(plan_path.resolve().as_uri()),
            "plan_version": str(approval["plan_version"]),
            "plan_approval": str(approval["state"]),
            "statements": len(statements),
            **{k: (float(v) if isinstance(v, int | float) else str(v)) for k, v in figures.items()},
        }
    )
