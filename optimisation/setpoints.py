"""Setpoints for execution: one schedule per controllable device from a day's plan.

A home energy system (or the community's battery controller) receives, per battery and
interval:

* the plan's expected charge and discharge power and the target state of charge at the
  interval's end, for devices that can only follow fixed setpoints;
* the plan's **deliberate deviations** from self-consumption (``extra_charge_kw``,
  ``hold_kw``, ``extra_discharge_kw``; see :func:`optimisation.control.deviations_from_plan`),
  for devices that run self-consumption on their actual net load and apply only those. That
  is how ECM's own real-time layer executes a plan, because following fixed setpoints turns
  every load forecast error into a wrong battery move (``../shared/design/real-time-control.md``).

The document is versioned (:data:`SCHEMA_ID`; the JSON schema is
``optimisation/schemas/setpoints-v1.json``) and carries the plan's version, its approval
state and its validity window. Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from optimisation.control import Fleet, deviations_from_plan
from optimisation.dispatch import BatterySpec

SCHEMA_ID = "ecm.setpoints/v1"
SCHEMA_PATH = Path(__file__).parent / "schemas" / "setpoints-v1.json"
CSV_COLUMNS = (
    "device_id",
    "member_id",
    "kind",
    "start",
    "end",
    "charge_kw",
    "discharge_kw",
    "target_soc_kwh",
    "extra_charge_kw",
    "hold_kw",
    "extra_discharge_kw",
    "power_kw",
    "indoor_temp_c",
    "starts",
    "plan_version",
    "approval_state",
    "valid_from",
    "valid_to",
)


class SetpointError(ValueError):
    """The plan cannot be turned into setpoints (no expected rows, a battery missing)."""


def schema() -> dict[str, Any]:
    """The JSON schema of the setpoints document."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _iso(ts: Any) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def build_setpoints(
    plan: pd.DataFrame,
    *,
    day: dt.date,
    players: tuple[str, ...],
    batteries: Mapping[str, BatterySpec],
    interval_minutes: int,
    shared_player: str | None,
    plan_version: str,
    approval: Mapping[str, Any],
    community: str,
    timezone: str,
    generated_at: pd.Timestamp | None = None,
    flexible: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The setpoints document of a day's plan.

    Parameters
    ----------
    plan : DataFrame
        The day's ``dispatch_plan`` rows (the ``expected`` scenario is used).
    players : tuple of str
        Members, then the community owner (the rows of the plan's players).
    batteries : mapping of str to BatterySpec
        Battery per player that has one.
    interval_minutes : int
        Interval length [min].
    shared_player : str, optional
        The community owner when it has a shared battery.
    plan_version, approval : the plan's version and approval state
        (see ``models.plan_store.approval_state``).
    flexible : DataFrame, optional
        The day's ``flexible_plan`` rows: each air conditioner, EV and deferrable load becomes
        a device with its planned power per interval [kW].

    Returns
    -------
    dict
        A document valid under :func:`schema`.

    Raises
    ------
    SetpointError
        The plan has no expected rows, or a battery's rows are missing.
    """
    exp = plan[plan["scenario"] == "expected"].copy()
    if exp.empty:
        raise SetpointError(f"the plan of {day} has no 'expected' rows")
    exp["ts"] = pd.to_datetime(exp["ts"], utc=True)
    ts = sorted(exp["ts"].unique())
    hours = interval_minutes / 60
    present = [p for p in players if p in set(exp["member_id"])]

    def grid(col: str) -> np.ndarray:
        wide = exp.pivot(index="member_id", columns="ts", values=col).reindex(
            index=present, columns=ts
        )
        if wide.isna().to_numpy().any():
            raise SetpointError(f"the plan of {day} lacks {col} rows for some interval")
        return wide.to_numpy(dtype=float)

    charge, discharge, soc = grid("charge_kwh"), grid("discharge_kwh"), grid("soc_kwh")
    net = grid("load_kwh") - grid("pv_kwh")
    fleet = Fleet(
        tuple(present),
        {p: b for p, b in batteries.items() if p in present},
        hours,
        shared_player if shared_player in present else None,
    )
    extra_c, hold, extra_d = (np.zeros_like(charge) for _ in range(3))
    for t in range(len(ts)):
        dev = deviations_from_plan(charge[:, t], discharge[:, t], net[:, t], fleet)
        extra_c[:, t], hold[:, t], extra_d[:, t] = dev.extra_charge, dev.hold, dev.extra_discharge
    step = pd.Timedelta(minutes=interval_minutes)
    devices = []
    for i, p in enumerate(present):
        if p not in batteries:
            continue
        b = batteries[p]
        devices.append(
            {
                "device_id": f"{p}.battery",
                "member_id": p,
                "kind": "battery",
                "shared": p == shared_player,
                "capacity_kwh": float(b.capacity_kwh),
                "power_kw": float(b.power_kw),
                "intervals": [
                    {
                        "start": _iso(t0),
                        "end": _iso(pd.Timestamp(t0) + step),
                        "charge_kw": round(charge[i, k] / hours, 4),
                        "discharge_kw": round(discharge[i, k] / hours, 4),
                        "target_soc_kwh": round(soc[i, k], 4),
                        "extra_charge_kw": round(extra_c[i, k] / hours, 4),
                        "hold_kw": round(hold[i, k] / hours, 4),
                        "extra_discharge_kw": round(extra_d[i, k] / hours, 4),
                    }
                    for k, t0 in enumerate(ts)
                ],
            }
        )
    devices.extend(_flexible_devices(flexible, step))
    kinds = sorted(set(exp["plan_kind"].astype(str)))
    return {
        "schema": SCHEMA_ID,
        "community": community,
        "day": day.isoformat(),
        "timezone": timezone,
        "interval_minutes": int(interval_minutes),
        "plan_version": plan_version,
        "plan_kind": kinds[0] if len(kinds) == 1 else "mixed",
        "approval": {k: v for k, v in approval.items() if k != "plan_version"},
        "valid_from": _iso(ts[0]),
        "valid_to": _iso(pd.Timestamp(ts[-1]) + step),
        "generated_at": _iso(
            generated_at if generated_at is not None else pd.Timestamp.now(tz="UTC")
        ),
        "control_mode": "self_consumption_plus_deviations",
        "devices": devices,
    }


def _flexible_devices(flex: pd.DataFrame | None, step: pd.Timedelta) -> list[dict[str, Any]]:
    """Air conditioners, EVs and deferrable loads as devices with planned power [kW]."""
    if flex is None or flex.empty:
        return []
    out = []
    for aid, g in flex.sort_values(["asset_id", "ts"]).groupby("asset_id", sort=True):
        kind = str(g["kind"].iloc[0])
        intervals = []
        for r in g.itertuples(index=False):
            iv: dict[str, Any] = {
                "start": _iso(r.ts),
                "end": _iso(pd.Timestamp(r.ts) + step),
                "power_kw": round(float(r.power_kw), 4),
            }
            if kind == "air_conditioner" and pd.notna(r.indoor_temp_c):
                iv["indoor_temp_c"] = round(float(r.indoor_temp_c), 3)
            if kind == "deferrable":
                iv["starts"] = bool(r.starts)
            intervals.append(iv)
        out.append(
            {
                "device_id": str(aid),
                "member_id": str(g["member_id"].iloc[0]),
                "kind": kind,
                "intervals": intervals,
            }
        )
    return out


def setpoints_frame(doc: Mapping[str, Any]) -> pd.DataFrame:
    """The document as one row per device and interval (the CSV export)."""
    rows = [
        {
            "device_id": d["device_id"],
            "member_id": d["member_id"],
            "kind": d["kind"],
            **iv,
            "plan_version": doc["plan_version"],
            "approval_state": doc["approval"]["state"],
            "valid_from": doc["valid_from"],
            "valid_to": doc["valid_to"],
        }
        for d in doc["devices"]
        for iv in d["intervals"]
    ]
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))
