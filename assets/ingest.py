"""Ingestion assets: master data, meter readings, weather and prices into DuckDB.

Each asset writes its local day atomically (re-materialising replaces it exactly). Where the
days the forecasters learn from are missing (a fresh warehouse), the same asset also ingests
them from its source, through the same validation, leaving days already stored untouched.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from assets.partitions import daily_partitions
from assets.resources import EcmResource, MeterSource, WeatherSource
from models import demo
from models.config import CommunityConfig
from models.ingest import (
    check_prices,
    check_readings_complete,
    check_readings_plausible,
    check_readings_unique,
    check_weather_forecasts,
    price_frame,
    weather_frame,
)
from models.master_data import master_data_frames, metering_point_index
from models.meters import validate_meter_frame
from models.timeutil import as_date, day_bounds_utc


def history_days(cfg: CommunityConfig) -> int:
    """Days before a partition the forecasters need [d]."""
    return cfg.forecast.training_days + cfg.forecast.backtest_days + 9


def days_to_ingest(ecm: EcmResource, table: str, day: dt.date) -> list[dt.date]:
    """The partition's day plus the missing history days, ascending."""
    cfg = ecm.community()
    first = max(cfg.community.first_day, day - dt.timedelta(days=history_days(cfg)))
    present = ecm.warehouse().days_present(table, first, day - dt.timedelta(days=1))
    days = [first + dt.timedelta(days=i) for i in range((day - first).days)]
    return [d for d in days if d not in present] + [day]


def _window(cfg: CommunityConfig, days: list[dt.date]) -> tuple[pd.Timestamp, pd.Timestamp]:
    return (
        day_bounds_utc(days[0], cfg.community.timezone)[0],
        day_bounds_utc(days[-1], cfg.community.timezone)[1],
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
def meter_readings(
    context: dg.AssetExecutionContext, ecm: EcmResource, meters: MeterSource
) -> dg.MaterializeResult:
    """Interval readings of every metering point for the day, validated like any meter file."""
    cfg = ecm.community()
    days = days_to_ingest(ecm, "meter_readings", as_date(context.partition_key))
    start, end = _window(cfg, days)
    raw, source = meters.fetch(cfg, start, end)
    df = validate_meter_frame(
        raw,
        source=source,
        metering_points=metering_point_index(cfg),
        tz=cfg.community.timezone,
        header_rows=0,
    )
    df = df[df["day"].isin(days)]
    n = ecm.warehouse().replace_days("meter_readings", df, days)
    return dg.MaterializeResult(
        metadata={"rows_written": n, "days_written": len(days), "history_days_added": len(days) - 1}
    )


@dg.asset(partitions_def=daily_partitions, kinds={"duckdb"}, group_name="ingest")
def weather(
    context: dg.AssetExecutionContext, ecm: EcmResource, weather_source: WeatherSource
) -> dg.MaterializeResult:
    """Weather observations and forecasts (with issue times) valid on the day."""
    cfg = ecm.community()
    days = days_to_ingest(ecm, "weather", as_date(context.partition_key))
    start, end = _window(cfg, days)
    df = weather_frame(weather_source.fetch(cfg, start, end), cfg.community.timezone)
    df = df[df["day"].isin(days)]
    n = ecm.warehouse().replace_days("weather", df, days)
    return dg.MaterializeResult(
        metadata={
            "rows_written": n,
            "days_written": len(days),
            "forecast_rows": int((df["kind"] == "forecast").sum()),
        }
    )


@dg.asset(partitions_def=daily_partitions, kinds={"duckdb"}, group_name="ingest")
def prices(context: dg.AssetExecutionContext, ecm: EcmResource) -> dg.MaterializeResult:
    """Time-of-use import prices (unit-checked, converted to currency/kWh) and export price."""
    cfg = ecm.community()
    days = days_to_ingest(ecm, "prices", as_date(context.partition_key))
    start, end = _window(cfg, days)
    path = cfg.resolve(cfg.tariffs.import_price_source)
    df = price_frame(
        demo.import_price_rows(path, start, end),
        unit=cfg.tariffs.import_price_unit,
        currency=cfg.community.currency,
        export_price=cfg.tariffs.export_price,
        tz=cfg.community.timezone,
        source=path.name,
    )
    n = ecm.warehouse().replace_days("prices", df[df["day"].isin(days)], days)
    return dg.MaterializeResult(
        metadata={
            "rows_written": n,
            "days_written": len(days),
            "unit_declared": cfg.tariffs.import_price_unit,
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
    """Every metering point has 23, 24 or 25 hourly readings on the local day (DST-aware)."""
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
    plaus = check_readings_plausible(rows, cfg.community.interval_minutes)
    return dg.AssetCheckResult(
        passed=uniq.passed and plaus.passed,
        description=f"{uniq.description}; {plaus.description}",
        metadata={**uniq.metadata, **plaus.metadata},
    )


@dg.asset_check(asset=prices, blocking=True, partitions_def=daily_partitions)
def prices_complete_and_in_unit(
    context: dg.AssetCheckExecutionContext, ecm: EcmResource
) -> dg.AssetCheckResult:
    """Import and export prices cover the day, in currency/kWh."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    return _check(
        check_prices(
            ecm.warehouse().read_day("prices", day),
            day,
            cfg.community.timezone,
            cfg.community.interval_minutes,
        )
    )


@dg.asset_check(asset=weather, blocking=True, partitions_def=daily_partitions)
def weather_forecast_available(
    context: dg.AssetCheckExecutionContext, ecm: EcmResource
) -> dg.AssetCheckResult:
    """A forecast issued by the issue time covers every interval of the day."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    return _check(
        check_weather_forecasts(
            ecm.warehouse().read_day("weather", day), day, cfg.community.timezone
        )
    )
