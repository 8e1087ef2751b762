"""Ingestion assets: master data, the inbox, and the day's stored readings, prices and weather.

A run first takes every new file from the community's inbox (``inbox_files``): each file
once, by SHA-256, validated whole, stored, moved to ``processed/`` or to ``rejected/`` with
its error. Then it works only on what is stored. Configured tariffs are priced into
``prices``; live Open-Meteo forecasts, where configured, are added to ``weather``. Missing
meter data is a blocking check naming the metering points and intervals, or, by the
``missing_data: estimate`` policy, is filled with flagged estimates that any later file
replaces.
"""

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd

from assets.partitions import daily_partitions
from assets.resources import EcmResource, Feed, WeatherSource
from models.config import CommunityConfig
from models.inbox import InboxContext, process_inbox
from models.ingest import (
    check_prices,
    check_readings_complete,
    check_readings_plausible,
    check_readings_unique,
    check_weather_forecasts,
    estimate_missing_readings,
    plausible_kw,
    weather_frame,
)
from models.master_data import master_data_frames, metering_point_index
from models.prices import tariff_rows
from models.timeutil import as_date, day_bounds_utc


def history_days(cfg: CommunityConfig) -> int:
    """Days before a partition the forecasters need [d]."""
    f = cfg.forecast
    # training window + out-of-sample window + origin alignment + the 28-day profile lags
    return f.training_days + f.calibration_days + f.retrain_every_days + 30


def window_days(cfg: CommunityConfig, day: dt.date) -> list[dt.date]:
    """The partition's day and the history days before it the forecasters read, ascending."""
    first = max(cfg.community.first_day, day - dt.timedelta(days=history_days(cfg)))
    return [first + dt.timedelta(days=i) for i in range((day - first).days + 1)]


def _window(cfg: CommunityConfig, days: list[dt.date]) -> tuple[pd.Timestamp, pd.Timestamp]:
    return (
        day_bounds_utc(days[0], cfg.community.timezone)[0],
        day_bounds_utc(days[-1], cfg.community.timezone)[1],
    )


def inbox_context(cfg: CommunityConfig) -> InboxContext:
    """What inbox validation needs to know of the community."""
    return InboxContext(
        tz=cfg.community.timezone,
        currency=cfg.community.currency,
        interval_minutes=cfg.community.interval_minutes,
        metering_points=metering_point_index(cfg),
        price_file_unit=cfg.tariffs.price_file_unit,
    )


def take_inbox(ecm: EcmResource, feed: Feed | None = None, day: dt.date | None = None) -> list:
    """Let the feed deliver (if any), then process every new inbox file; return outcomes."""
    cfg, wh = ecm.community(), ecm.warehouse()
    inbox = ecm.inbox_dir()
    if feed is not None and day is not None:
        start, end = _window(cfg, window_days(cfg, day))
        feed.deliver(cfg, inbox, start, end, wh)
    return process_inbox(
        inbox,
        inbox_context(cfg),
        status_of=wh.inbox_status,
        store=wh.store_inbox_file,
        record=wh.record_inbox_file,
    )


@dg.asset(partitions_def=daily_partitions, kinds={"duckdb"}, group_name="ingest")
def master_data(context: dg.AssetExecutionContext, ecm: EcmResource) -> dg.MaterializeResult:
    """Members, metering points and assets from the configuration (or its Excel workbook)."""
    cfg = ecm.community()
    wh = ecm.warehouse()
    counts = {name: wh.replace(name, df) for name, df in master_data_frames(cfg).items()}
    return dg.MaterializeResult(metadata={f"{k}_rows": v for k, v in counts.items()})


@dg.asset(
    partitions_def=daily_partitions, kinds={"duckdb"}, group_name="ingest", deps=[master_data]
)
def inbox_files(
    context: dg.AssetExecutionContext, ecm: EcmResource, feed: Feed
) -> dg.MaterializeResult:
    """New files of the inbox: each stored once (by SHA-256), then processed/ or rejected/."""
    outcomes = take_inbox(ecm, feed, as_date(context.partition_key))
    table = pd.DataFrame(
        [
            {
                "kind": o.kind,
                "file": o.file_name,
                "status": o.status,
                "rows": o.rows,
                "corrected": o.corrected_rows,
                "quarantined": o.quarantined_rows,
                "error": (o.error or "")[:200],
            }
            for o in outcomes
        ],
        columns=["kind", "file", "status", "rows", "corrected", "quarantined", "error"],
    )
    for o in outcomes:
        if o.status == "rejected":
            context.log.warning(f"inbox file rejected: {o.error}")
        if o.quarantined_rows:
            context.log.warning(
                f"{o.file_name}: {o.quarantined_rows} readings held back as conflicting "
                "duplicates (quarantined_readings); those intervals stay missing"
            )
        if o.corrected_rows:
            days = ", ".join(d.isoformat() for d in o.corrected_days)
            context.log.warning(
                f"{o.file_name} corrected {o.corrected_rows} stored readings on {days}: "
                "re-run those days to settle them on the corrected data"
            )
    return dg.MaterializeResult(
        metadata={
            "files": len(outcomes),
            "processed": int((table["status"] == "processed").sum()),
            "rejected": int((table["status"] == "rejected").sum()),
            "duplicates": int((table["status"] == "duplicate").sum()),
            "corrected_readings": int(table["corrected"].sum()),
            "quarantined_readings": int(table["quarantined"].sum()),
            "outcomes": dg.MetadataValue.md(table.to_markdown(index=False) if len(table) else "-"),
        }
    )


@dg.asset(
    partitions_def=daily_partitions, kinds={"duckdb"}, group_name="ingest", deps=[inbox_files]
)
def meter_readings(context: dg.AssetExecutionContext, ecm: EcmResource) -> dg.MaterializeResult:
    """The day's stored readings; gaps filled with flagged estimates where the policy says so.

    Nothing is fetched here: readings come from inbox files only, and an estimate is written
    only where no reading is stored (a later file replaces it, keeping it in the history).
    """
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    estimated = 0
    if cfg.missing_data == "estimate":
        lo = day - dt.timedelta(days=7)
        rows = wh.query("SELECT * FROM meter_readings WHERE day BETWEEN ? AND ?", [lo, day])
        est = estimate_missing_readings(
            rows, day, cfg.community.timezone, metering_point_index(cfg)
        )
        if len(est):
            estimated = wh.insert_missing_readings(est)
            context.log.warning(f"{day}: {estimated} missing intervals settled on estimates")
    rows = wh.read_day("meter_readings", day)
    return dg.MaterializeResult(
        metadata={
            "rows": len(rows),
            "metering_points": int(rows["metering_point_id"].nunique()) if len(rows) else 0,
            "estimated_rows": int((rows["quality"] == "estimated").sum()) if len(rows) else 0,
            "estimated_now": estimated,
            "missing_data_policy": cfg.missing_data,
        }
    )


@dg.asset(
    partitions_def=daily_partitions, kinds={"duckdb"}, group_name="ingest", deps=[inbox_files]
)
def weather(
    context: dg.AssetExecutionContext, ecm: EcmResource, weather_source: WeatherSource
) -> dg.MaterializeResult:
    """Weather valid on the day: inbox files, plus live Open-Meteo forecasts where configured."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    fetched = 0
    if cfg.weather_source == "open-meteo":
        start, end = day_bounds_utc(day, cfg.community.timezone)
        df = weather_source.fetch(cfg, start, end)
        if len(df):
            df = weather_frame(df, cfg.community.timezone)
            fetched = wh.upsert("weather", df, ["ts", "issue_time", "kind", "source"])
    rows = wh.read_day("weather", day)
    return dg.MaterializeResult(
        metadata={
            "weather_source": cfg.weather_source,
            "rows_fetched": fetched,
            "observation_rows": int((rows["kind"] == "observation").sum()) if len(rows) else 0,
            "forecast_rows": int((rows["kind"] == "forecast").sum()) if len(rows) else 0,
        }
    )


@dg.asset(
    partitions_def=daily_partitions, kinds={"duckdb"}, group_name="ingest", deps=[inbox_files]
)
def prices(context: dg.AssetExecutionContext, ecm: EcmResource) -> dg.MaterializeResult:
    """Import and export prices: configured tariffs priced per local interval; price files
    from the inbox are already stored."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    t = cfg.tariffs
    written = 0
    for price_type, spec in (("import", t.import_price), ("export", t.export_price)):
        if spec.inbox:
            continue
        days = window_days(cfg, day)
        have = wh.query(
            "SELECT DISTINCT day FROM prices WHERE price_type = ? AND day BETWEEN ? AND ?",
            [price_type, days[0], days[-1]],
        )["day"]
        have = {pd.Timestamp(d).date() for d in have}
        todo = [d for d in days if d not in have or d == day]
        df = tariff_rows(
            spec,
            price_type,
            todo,
            tz=cfg.community.timezone,
            currency=cfg.community.currency,
            interval_minutes=cfg.community.interval_minutes,
            holidays=t.holidays,
        )
        written += wh.upsert("prices", df, ["ts", "price_type"])
    rows = wh.read_day("prices", day)
    imp = rows[rows["price_type"] == "import"]["price_per_kwh"].to_numpy(dtype=float)
    return dg.MaterializeResult(
        metadata={
            "rows_written": written,
            "import": t.import_price.describe,
            "export": t.export_price.describe,
            "import_min_max": (
                f"{np.min(imp):.4f} .. {np.max(imp):.4f} {cfg.community.currency}/kWh"
                if len(imp)
                else "none"
            ),
        }
    )


def _check(result) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=bool(result.passed), description=result.description, metadata=result.metadata
    )


@dg.asset_check(asset=meter_readings, blocking=True, partitions_def=daily_partitions)
def meter_readings_complete(
    context: dg.AssetCheckExecutionContext, ecm: EcmResource
) -> dg.AssetCheckResult:
    """Every metering point has every interval of the local day (23, 24 or 25 hours); the
    missing ones are named."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    rows = ecm.warehouse().read_day("meter_readings", day)
    return _check(
        check_readings_complete(rows, day, cfg.community.timezone, metering_point_index(cfg))
    )


@dg.asset_check(asset=meter_readings, blocking=True, partitions_def=daily_partitions)
def meter_readings_unique_and_plausible(
    context: dg.AssetCheckExecutionContext, ecm: EcmResource
) -> dg.AssetCheckResult:
    """No duplicate interval; no negative, missing or implausibly high energy."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    rows = ecm.warehouse().read_day("meter_readings", day)
    uniq = check_readings_unique(rows)
    plaus = check_readings_plausible(rows, cfg.community.interval_minutes, plausible_kw(cfg))
    return dg.AssetCheckResult(
        passed=uniq.passed and plaus.passed,
        description=f"{uniq.description}; {plaus.description}",
        metadata={**uniq.metadata, **plaus.metadata},
    )


@dg.asset_check(asset=prices, blocking=True, partitions_def=daily_partitions)
def prices_complete_and_in_unit(
    context: dg.AssetCheckExecutionContext, ecm: EcmResource
) -> dg.AssetCheckResult:
    """Import and export prices cover the day, in currency/kWh: a day is never planned on
    missing prices."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    return _check(
        check_prices(
            ecm.warehouse().read_day("prices", day),
            day,
            cfg.community.timezone,
            cfg.community.interval_minutes,
        )
    )


@dg.asset_check(asset=weather, blocking=False, partitions_def=daily_partitions)
def weather_forecast_available(
    context: dg.AssetCheckExecutionContext, ecm: EcmResource
) -> dg.AssetCheckResult:
    """A forecast issued by the issue time covers every interval of the day. Without one the
    forecasters still run (PV from clear-sky physics, load without weather): a warning."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    res = check_weather_forecasts(
        ecm.warehouse().read_day("weather", day), day, cfg.community.timezone
    )
    return dg.AssetCheckResult(
        passed=bool(res.passed),
        description=(
            res.description
            if res.passed
            else f"no weather forecast issued by the issue time for "
            f"{res.metadata['expected_intervals'] - res.metadata['covered_intervals']} of "
            f"{res.metadata['expected_intervals']} intervals: PV is forecast from clear-sky "
            "physics and load without weather (stated in the plan report)"
        ),
        metadata=res.metadata,
        severity=dg.AssetCheckSeverity.WARN,
    )
