"""Master data frames (members, metering points, assets) from the configuration."""

from __future__ import annotations

import pandas as pd

from models.config import CommunityConfig
from models.meters import MeteringPointInfo


def master_data_frames(config: CommunityConfig) -> dict[str, pd.DataFrame]:
    """The ``members``, ``metering_points`` and ``assets`` tables for a configuration."""
    interval = config.community.interval_minutes
    owner = config.shared_assets.owner_id
    members = pd.DataFrame(
        [
            {
                "member_id": m.id,
                "name": m.name,
                "kind": m.kind,
                "joined": m.joined,
                "left_on": m.left,
                "pv_kwp": m.pv_kwp,
                "source_building": m.source_building,
            }
            for m in config.members
        ]
    )
    mps = [
        {
            "metering_point_id": mp.id,
            "owner_id": m.id,
            "direction": mp.direction,
            "interval_minutes": interval,
        }
        for m in config.members
        for mp in m.metering_points
    ]
    assets = []
    for m in config.members:
        if m.pv_kwp > 0:
            assets.append(
                {
                    "asset_id": f"PV-{m.id}",
                    "owner_id": m.id,
                    "asset_type": "pv",
                    "kwp": m.pv_kwp,
                    "shared": False,
                }
            )
        if m.battery is not None:
            assets.append(_battery_row(m.battery, m.id, shared=False))
    sa = config.shared_assets
    if sa.pv is not None:
        mps.append(
            {
                "metering_point_id": sa.pv.metering_point,
                "owner_id": owner,
                "direction": "production",
                "interval_minutes": interval,
            }
        )
        assets.append(
            {
                "asset_id": sa.pv.id,
                "owner_id": owner,
                "asset_type": "pv",
                "kwp": sa.pv.kwp,
                "shared": True,
            }
        )
    if sa.battery is not None:
        assets.append(_battery_row(sa.battery, owner, shared=True))
    cols = [
        "asset_id",
        "owner_id",
        "asset_type",
        "capacity_kwh",
        "power_kw",
        "round_trip_efficiency",
        "initial_soc_fraction",
        "kwp",
        "shared",
    ]
    return {
        "members": members,
        "metering_points": pd.DataFrame(mps),
        "assets": pd.DataFrame(assets).reindex(columns=cols),
    }


def _battery_row(b, owner_id: str, shared: bool) -> dict:
    return {
        "asset_id": b.id,
        "owner_id": owner_id,
        "asset_type": "battery",
        "capacity_kwh": b.capacity_kwh,
        "power_kw": b.power_kw,
        "round_trip_efficiency": b.round_trip_efficiency,
        "initial_soc_fraction": b.initial_soc_fraction,
        "shared": shared,
    }


def metering_point_index(config: CommunityConfig) -> dict[str, MeteringPointInfo]:
    """Metering points with owner, interval and validity (membership) dates."""
    interval = config.community.interval_minutes
    out = {
        mp.id: MeteringPointInfo(m.id, interval, m.joined, m.left)
        for m in config.members
        for mp in m.metering_points
    }
    if config.shared_assets.pv is not None:
        out[config.shared_assets.pv.metering_point] = MeteringPointInfo(
            config.shared_assets.owner_id, interval, config.community.first_day, None
        )
    return out
