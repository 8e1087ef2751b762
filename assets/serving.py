"""What the API service and the `ecm export` / `ecm plan` commands read and write: the same
warehouse rows and pure functions the assets use (no Dagster here)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from assets.dispatch import players_and_batteries
from assets.resources import EcmResource
from models.plan_store import approval_state, plan_version
from optimisation.setpoints import build_setpoints


class NotFound(LookupError):
    """Nothing stored for what was asked (a day never run, a member without a statement)."""


def setpoints_document(ecm: EcmResource, day: dt.date) -> dict[str, Any]:
    """The day's setpoints document (``optimisation/schemas/setpoints-v1.json``).

    Raises
    ------
    NotFound
        No plan is stored for the day.
    """
    cfg, wh = ecm.community(), ecm.warehouse()
    plan = wh.read_day("dispatch_plan", day)
    if plan.empty:
        raise NotFound(f"no plan is stored for {day}")
    players, bats = players_and_batteries(cfg)
    return build_setpoints(
        plan,
        day=day,
        players=tuple(players),
        batteries=bats,
        interval_minutes=cfg.community.interval_minutes,
        shared_player=cfg.shared_assets.owner_id if cfg.shared_assets.battery else None,
        plan_version=plan_version(plan),
        approval=approval_state(wh, day, plan),
        community=cfg.community.name,
        timezone=cfg.community.timezone,
    )


def days(ecm: EcmResource) -> pd.DataFrame:
    """Every planned day with its plan kind, approval state and latest settlement version."""
    wh = ecm.warehouse()
    df = wh.query(
        "SELECT p.day, min(p.plan_kind) AS plan_kind, count(DISTINCT p.member_id) AS players, "
        "max(v.version) AS settlement_version "
        "FROM dispatch_plan p LEFT JOIN settlement_versions v USING (day) "
        "GROUP BY p.day ORDER BY p.day"
    )
    df["day"] = pd.to_datetime(df["day"]).dt.date
    df["approval"] = [approval_state(wh, d)["state"] for d in df["day"]]
    return df
