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
