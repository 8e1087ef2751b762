"""The Dagster Definitions: assets, checks, resources, the daily job and its schedule."""

from __future__ import annotations

import dagster as dg

from assets import dispatch, forecast, ingest, review
from assets.partitions import daily_partitions
from assets.resources import (
    BundledMeterSource,
    BundledWeatherSource,
    EcmResource,
    MlflowTracker,
    OpenMeteoWeatherSource,
)
from assets.resources import config_path as _config_path
from models.config import load_config

all_assets = dg.load_assets_from_modules([ingest, forecast, dispatch, review])
all_checks = dg.load_asset_checks_from_modules([ingest])

daily_job = dg.define_asset_job(
    "daily",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Everything for one local day: ingest, forecast, scenarios, plan, allocate, "
    "flag, report.",
)

daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job,
    hour_of_day=6,
    minute_of_hour=0,
    description="Materialises the latest complete local day every morning.",
)


def _weather_source() -> dg.ConfigurableResource:
    """Bundled recordings or live Open-Meteo, as the community configuration says."""
    if load_config(_config_path()).weather_source == "open-meteo":
        return OpenMeteoWeatherSource()
    return BundledWeatherSource()


defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[daily_job],
    schedules=[daily_schedule],
    resources={
        "ecm": EcmResource(),
        "weather_source": _weather_source(),
        "meters": BundledMeterSource(),
        "mlflow_tracker": MlflowTracker(),
    },
)
