"""Warehouse reads shared by several assets (parameterised SQL only)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from models.config import CommunityConfig
from models.timeutil import day_bounds_utc
from models.warehouse import Warehouse


def series_map(cfg: CommunityConfig) -> dict[str, tuple[str, str]]:
    """Metering point id -> (target, unique_id): member loads, rooftop PV, the shared plant."""
    out: dict[str, tuple[str, str]] = {}
    for m in cfg.members:
        out[m.metering_point("consumption")] = ("load", m.id)
        prod = m.metering_point("production")
        if prod is not None and m.pv_kwp > 0:
            out[prod] = ("pv", m.id)
    if cfg.shared_assets.pv is not None:
        out[cfg.shared_assets.pv.metering_point] = ("pv", cfg.shared_assets.pv.id)
    return out


def actuals(wh: Warehouse, cfg: CommunityConfig, first: dt.date, last: dt.date) -> pd.DataFrame:
    """Actuals ``target, unique_id, ts, y`` of local days [first, last]: load, PV, price."""
    tz = cfg.community.timezone
    start, end = day_bounds_utc(first, tz)[0], day_bounds_utc(last, tz)[1]
    r = wh.query(
        "SELECT metering_point_id, ts, kwh FROM meter_readings WHERE ts >= ? AND ts < ?",
        [start, end],
    )
    smap = series_map(cfg)
    r = r[r["metering_point_id"].isin(smap)]
    r["target"] = r["metering_point_id"].map(lambda m: smap[m][0])
    r["unique_id"] = r["metering_point_id"].map(lambda m: smap[m][1])
    p = wh.query(
        "SELECT ts, price_per_kwh FROM prices WHERE price_type = 'import' AND ts >= ? AND ts < ?",
        [start, end],
    )
    p = p.assign(target="price", unique_id="import").rename(columns={"price_per_kwh": "y"})
    out = pd.concat(
        [
            r.rename(columns={"kwh": "y"})[["target", "unique_id", "ts", "y"]],
            p[["target", "unique_id", "ts", "y"]],
        ],
        ignore_index=True,
    )
    return out


def export_prices(wh: Warehouse, day: dt.date) -> pd.DataFrame:
    """``ts, price_per_kwh`` of the export price for a day."""
    return wh.query(
        "SELECT ts, price_per_kwh FROM prices WHERE price_type = 'export' AND day = ? ORDER BY ts",
        [day],
    )
