"""What the API service and the `ecm export` / `ecm plan` commands read and write: the same
warehouse rows and pure functions the assets use (no Dagster here)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
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
        flexible=wh.read_day("flexible_plan", day) if cfg.flexible_loads else None,
    )


def statement_file(ecm: EcmResource, member_id: str, day: dt.date) -> Path:
    """The member's statement of the day (``reports/<day>/statements/<id>.html``).

    Raises
    ------
    NotFound
        None written, or the path would leave the reports folder.
    """
    root = ecm.reports_dir().resolve()
    path = (root / f"{day}" / "statements" / f"{member_id}.html").resolve()
    if root not in path.parents or not path.is_file():
        raise NotFound(f"no statement of {member_id} for {day}")
    return path


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


def member_days(ecm: EcmResource, member_id: str) -> pd.DataFrame:
    """The member's settled days: consumption, shared energy and amount of the settlement
    rule, from each day's latest settlement version (amounts as exact Decimals).

    Returns
    -------
    DataFrame
        ``day, consumption_kwh, shared_kwh, amount, currency, version``, oldest first.
    """
    wh = ecm.warehouse()
    df = wh.query(
        "SELECT a.day, a.consumption_kwh, a.shared_kwh, CAST(a.amount AS VARCHAR) AS amount, "
        "a.currency, a.version FROM allocations a "
        "JOIN (SELECT day, max(version) AS version FROM allocations GROUP BY day) v "
        "USING (day, version) WHERE a.member_id = ? AND a.is_settlement ORDER BY a.day",
        [member_id],
    )
    df["day"] = pd.to_datetime(df["day"]).dt.date
    df["amount"] = [Decimal(a) for a in df["amount"]]
    return df


def member_months(days_df: pd.DataFrame) -> pd.DataFrame:
    """Monthly sums of :func:`member_days` (amounts summed exactly)."""
    if days_df.empty:
        return pd.DataFrame(columns=["month", "days", "shared_kwh", "amount", "currency"])
    g = days_df.assign(month=[d.strftime("%Y-%m") for d in days_df["day"]]).groupby("month")
    return pd.DataFrame(
        {
            "days": g["day"].count(),
            "shared_kwh": g["shared_kwh"].sum(),
            "amount": g["amount"].agg(lambda s: sum(s, Decimal("0.00"))),
            "currency": g["currency"].first(),
        }
    ).reset_index()


def subjects_of(wh: Any, member_id: str) -> set[str]:
    """The ids a member's flags and cases are raised on: the member and its metering points."""
    mps = wh.query("SELECT metering_point_id FROM metering_points WHERE owner_id = ?", [member_id])[
        "metering_point_id"
    ]
    return {member_id, *mps.astype(str)}


def member_anomalies(ecm: EcmResource, member_id: str) -> pd.DataFrame:
    """Flags raised on the member or its metering points, newest first."""
    return ecm.warehouse().query(
        "SELECT day, rule, severity, subject_id, message FROM anomalies WHERE "
        "list_contains(?, subject_id) ORDER BY day DESC, severity",
        [sorted(subjects_of(ecm.warehouse(), member_id))],
    )


def member_name(ecm: EcmResource, member_id: str) -> str | None:
    """The member's display name, or None for an unknown id."""
    df = ecm.warehouse().query("SELECT name FROM members WHERE member_id = ?", [member_id])
    return None if df.empty else str(df["name"].iloc[0])
