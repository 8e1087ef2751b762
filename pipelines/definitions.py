"""The Dagster Definitions: assets, checks, resources, the daily job and its schedule."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from assets import billing, dispatch, evaluate, forecast, ingest, review
from assets.partitions import daily_partitions, monthly_partitions
from assets.resources import (
    CityLearnFeed,
    EcmResource,
    MlflowTracker,
    NoFeed,
    NoWeatherSource,
    OpenMeteoWeatherSource,
)
from assets.resources import config_path as _config_path
from models.config import load_config

OWNERS = {
    "ingest": "team:data-engineering",
    "forecast": "team:data-science",
    "plan": "team:community-operations",
    "evaluate": "team:community-operations",
    "settle": "team:settlement",
    "review": "team:community-operations",
    "bill": "team:settlement",
}
"""Who answers for each asset group (shown as the assets' owners in the Dagster UI)."""
DAILY_DEADLINE = "0 9 * * *"
"""The daily assets' freshness deadline, in the community's time zone: the 06:00 schedule's
run has materialised them by 09:00 (the day before's partition, within the last 24 h)."""


def _with_owners_and_freshness(spec: dg.AssetSpec) -> dg.AssetSpec:
    """Owners by group; a cron freshness policy on the daily assets (not the monthly bills)."""
    extra: dict = {"owners": [OWNERS[spec.group_name]]}
    if spec.partitions_def == daily_partitions:
        extra["freshness_policy"] = dg.FreshnessPolicy.cron(
            deadline_cron=DAILY_DEADLINE,
            lower_bound_delta=dt.timedelta(hours=24),
            timezone=daily_partitions.timezone,
        )
    return spec.replace_attributes(**extra)


all_assets = dg.map_asset_specs(
    _with_owners_and_freshness,
    dg.load_assets_from_modules([ingest, forecast, dispatch, evaluate, review, billing]),
)
all_checks = dg.load_asset_checks_from_modules([ingest])

daily_job = dg.define_asset_job(
    "daily",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets("monthly_bills"),
    partitions_def=daily_partitions,
    description="Everything for one local day: ingest, forecast, scenarios, plan, allocate, "
    "flag, report.",
)

evaluate_job = dg.define_asset_job(
    "evaluate",
    selection=dg.AssetSelection.assets("master_data", "prices", "realised_flows", "evaluation"),
    partitions_def=daily_partitions,
    description="Price the configured tariffs, then replay one metered day under every "
    "controller (no battery, self-consumption, ECM's real-time layer, perfect foresight) with "
    "the SoC carried from the day before.",
)

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.assets(
        "master_data", "inbox_files", "meter_readings", "prices", "weather"
    ),
    partitions_def=daily_partitions,
    description="Take the inbox's new files and price the configured tariffs for one day "
    "(and the history days before it).",
)

forecast_job = dg.define_asset_job(
    "forecast",
    selection=dg.AssetSelection.assets("forecasts", "scenarios"),
    partitions_def=daily_partitions,
    description="Forecasts and scenarios of one day from the stored data (a parallel "
    "backfill's second stage; days are independent once ingested).",
)

settle_job = dg.define_asset_job(
    "settle",
    selection=dg.AssetSelection.assets("dispatch_plan", "realised_flows", "evaluation"),
    partitions_def=daily_partitions,
    description="Plan and replay one day (a parallel backfill's third stage, its critical "
    "path: each day needs the previous day's realised state of charge).",
)

report_job = dg.define_asset_job(
    "report",
    selection=dg.AssetSelection.assets("allocations", "anomalies", "reports"),
    partitions_def=daily_partitions,
    description="Settle, flag and report one day once it is replayed (a parallel backfill's "
    "fourth stage, off the critical path).",
)

review_job = dg.define_asset_job(
    "review",
    selection=dg.AssetSelection.assets("reports"),
    partitions_def=daily_partitions,
    description="Re-render one day's report and statements (after a plan decision).",
)

bill_job = dg.define_asset_job(
    "bill",
    selection=dg.AssetSelection.assets("monthly_bills"),
    partitions_def=monthly_partitions,
    description="The month's member statements (HTML, PDF) and billing export (CSV, JSON).",
    tags={"ecm/job": "bill"},  # one at a time (run_queue.tag_concurrency_limits)
)

daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job,
    hour_of_day=6,
    minute_of_hour=0,
    description="Materialises the latest complete local day every morning.",
)


def _weather_source() -> dg.ConfigurableResource:
    """Live Open-Meteo, or nothing to fetch (inbox files), as the configuration says."""
    if load_config(_config_path()).weather_source == "open-meteo":
        return OpenMeteoWeatherSource()
    return NoWeatherSource()


def _feed() -> dg.ConfigurableResource:
    """The simulated distributor of the demo, or none (files arrive by themselves)."""
    if load_config(_config_path()).feed == "citylearn-2022":
        return CityLearnFeed()
    return NoFeed()


defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[
        daily_job,
        evaluate_job,
        ingest_job,
        forecast_job,
        settle_job,
        report_job,
        review_job,
        bill_job,
    ],
    schedules=[daily_schedule],
    # runs launched by the schedule or the UI execute their steps in subprocesses, two at
    # a time (the CLI's runs execute in process)
    executor=dg.multiprocess_executor.configured({"max_concurrent": 2}),
    resources={
        "ecm": EcmResource(),
        "weather_source": _weather_source(),
        "feed": _feed(),
        "mlflow_tracker": MlflowTracker(),
    },
)
