"""The daily partitions: the community's local days.

Defined here rather than in ``pipelines/`` because the assets' decorators need them and
imports run one way (``pipelines -> assets``). The range and time zone come from the
community configuration (``$ECM_CONFIG``, default the bundled demo), read once at import
because Dagster needs a static partitions definition.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from assets.resources import config_path
from models.config import load_config

_community = load_config(config_path()).community

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=_community.first_day.isoformat(),
    end_date=(
        (_community.last_day + dt.timedelta(days=1)).isoformat() if _community.last_day else None
    ),
    timezone=_community.timezone,
)
"""One partition per local day; DST days have 23 or 25 hours."""

monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=_community.first_day.replace(day=1).isoformat(),
    end_date=(
        (_community.last_day + dt.timedelta(days=1)).isoformat() if _community.last_day else None
    ),
    timezone=_community.timezone,
)
"""One partition per calendar month (billing); the key is the month's first day."""

PREVIOUS_DAY = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
"""A day's dependency on the day before it: the state of charge carried by the real-time
layer (``realised_flows``) and the previous day's forecasts checked by ``anomalies``.

Declared on the assets (``AssetDep(..., partition_mapping=PREVIOUS_DAY)``), so the asset graph
says that days are not independent: a Dagster backfill runs such an asset's days in order, and
``ecm backfill --workers K`` schedules by the same rules."""


def previous_day(key: str | dg.AssetKey) -> dg.AssetDep:
    """Dependency on the previous day's partition of asset ``key``."""
    return dg.AssetDep(key, partition_mapping=PREVIOUS_DAY)


def with_days_before(key: str | dg.AssetKey, days: int) -> dg.AssetDep:
    """Dependency on a day of asset ``key`` and the ``days`` days before it."""
    return dg.AssetDep(
        key, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-days, end_offset=0)
    )
