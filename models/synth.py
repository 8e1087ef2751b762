"""Synthetic communities of any size for scale work, built from the bundled CityLearn homes.

``ecm synth-community --members N [--interval-minutes 15] --out DIR`` calls
:func:`synth_community`. It writes ``DIR/community.yaml`` and an inbox of meter, price and
weather files in the documented formats, so that ``ECM_CONFIG=DIR/community.yaml ecm run
--date D`` runs the synthetic community exactly as a real one (its inbox is taken on the
first run).

How a member is made (all draws from one seeded generator, so the same arguments give the
same files):

- **Source home.** One of the 17 CityLearn 2022 homes, drawn uniformly.
- **Load.** The home's metered load, shifted in time by a whole number of days drawn from
  -7..7 (so members on the same source home do not move in lockstep; the shift wraps inside
  the bundled year), times a member scale (log-normal, sigma 0.25; x3 for a business, x5 for
  a municipality), times independent noise per interval (log-normal, sigma 0.10).
- **PV.** 80 % of households and every business and municipality have rooftop PV of
  3-8 kWp (steps of 0.5 kWp; businesses x2, municipalities x3). Output is the source home's
  measured output per kWp, not shifted (every member sees the same sky), times the kWp,
  times noise per interval (log-normal, sigma 0.03); zero stays zero at night.
- **Battery.** 60 % of members: 5, 6.4, 10 or 13.5 kWh at half their capacity per hour
  (C/2), round-trip efficiency 0.9, starting half full.
- **Community assets.** A shared PV plant of 2.4 kWp per member and a shared battery of
  3 kWh per member at 0.5 C, about the demo's proportions.
- **Quarter hours.** With ``interval_minutes=15`` each hour's energy is split over its four
  quarters in proportion to the power interpolated linearly between the midpoints of the
  neighbouring hours, then rescaled so the four quarters sum to the hour exactly (energy is
  conserved; an hour of zero stays zero). Prices repeat the hour's price per quarter; the
  weather stays hourly, as weather services deliver it.

Prices (the demo's measured time-of-use tariff), weather (the demo's typical-year file, see
``data/README.md``), tariff, incentive, fairness rules and model settings are the demo's.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from models import demo
from models.config import parse_config

MAX_MEMBERS = 5000
BATTERY_SIZES_KWH = (5.0, 6.4, 10.0, 13.5)
KIND_SHARES = {"household": 0.90, "business": 0.08, "municipality": 0.02}
KIND_LOAD_FACTOR = {"household": 1.0, "business": 3.0, "municipality": 5.0}
KIND_PV_FACTOR = {"household": 1.0, "business": 2.0, "municipality": 3.0}
LOAD_SCALE_SIGMA = 0.25
LOAD_NOISE_SIGMA = 0.10
PV_NOISE_SIGMA = 0.03
MAX_SHIFT_DAYS = 7
SHARED_PV_KWP_PER_MEMBER = 2.4
SHARED_BATTERY_KWH_PER_MEMBER = 3.0
MEMBERS_PER_FILE = 250


class SynthError(ValueError):
    """Invalid arguments for a synthetic community."""


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synth_community` wrote."""

    config: Path
    members: int
    interval_minutes: int
    first_day: dt.date
    last_day: dt.date
    meter_rows: int
    files: tuple[Path, ...]


@dataclass(frozen=True)
class _Member:
    id: str
    kind: str
    building: str
    shift_days: int
    load_scale: float
    pv_kwp: float
    battery_kwh: float | None


def _draw_members(n: int, rng: np.random.Generator, buildings: list[str]) -> list[_Member]:
    width = max(4, len(str(n)))
    kinds = rng.choice(list(KIND_SHARES), n, p=list(KIND_SHARES.values()))
    out = []
    for i in range(n):
        kind = str(kinds[i])
        has_pv = kind != "household" or rng.random() < 0.8
        kwp = float(np.round(rng.uniform(3.0, 8.0) * 2) / 2) * KIND_PV_FACTOR[kind]
        bat = float(rng.choice(BATTERY_SIZES_KWH)) if rng.random() < 0.6 else None
        out.append(
            _Member(
                id=f"M{i + 1:0{width}d}",
                kind=kind,
                building=str(rng.choice(buildings)),
                shift_days=int(rng.integers(-MAX_SHIFT_DAYS, MAX_SHIFT_DAYS + 1)),
                load_scale=float(rng.lognormal(0.0, LOAD_SCALE_SIGMA)) * KIND_LOAD_FACTOR[kind],
                pv_kwp=kwp if has_pv else 0.0,
                battery_kwh=bat,
            )
        )
    return out


def quarter_hours(hourly_kwh: np.ndarray) -> np.ndarray:
    """Split hourly energy into quarter hours, conserving each hour's energy [kWh].

    Parameters
    ----------
    hourly_kwh : ndarray (..., H)
        Energy per hour [kWh], non-negative, along the last axis.

    Returns
    -------
    ndarray (..., 4 H)
        Energy per quarter hour [kWh]; the four quarters of an hour sum to its energy and
        an hour of zero stays zero.
    """
    e = np.asarray(hourly_kwh, dtype=float)
    padded = np.concatenate([e[..., :1], e, e[..., -1:]], axis=-1)  # hold the ends
    # power at the centre of quarter k of hour h, interpolated between hour midpoints
    frac = (np.arange(4) + 0.5) / 4 - 0.5  # -0.375 .. 0.375 from the hour's midpoint
    left = np.where(frac < 0, -frac, 0.0)
    right = np.where(frac > 0, frac, 0.0)
    centre = e[..., :, None]
    prev, nxt = padded[..., :-2, None], padded[..., 2:, None]
    shape = centre * (1 - left - right) + prev * left + nxt * right
    shape = np.clip(shape, 0.0, None)
    total = shape.sum(axis=-1, keepdims=True)
    q = np.where(total > 0, shape / np.where(total > 0, total, 1.0), 0.25) * centre
    return q.reshape(*e.shape[:-1], e.shape[-1] * 4)


def _meter_frames(
    members: list[_Member],
    hours: pd.DatetimeIndex,
    buildings: pd.DataFrame,
    interval_minutes: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Meter readings of ``members`` on ``hours`` (hourly UTC starts), at the interval."""
    by_b = {b: g.set_index("ts").sort_index() for b, g in buildings.groupby("building", sort=False)}
    year = buildings["ts"].drop_duplicates().sort_values()
    t0, t1 = year.iloc[0], year.iloc[-1]
    span = (t1 - t0) + pd.Timedelta(hours=1)
    ts_out = (
        hours
        if interval_minutes == 60
        else pd.date_range(hours[0], periods=len(hours) * 4, freq="15min", tz="UTC")
    )
    width = max(4, len(str(len(members))))
    frames = []
    for m in members:
        src = by_b[m.building]
        shifted = hours + pd.Timedelta(days=m.shift_days)
        shifted = t0 + ((shifted - t0) % span)  # wrap inside the bundled year
        load = src["load_kwh"].reindex(shifted).ffill().bfill().to_numpy()
        load = load * m.load_scale * rng.lognormal(0.0, LOAD_NOISE_SIGMA, len(hours))
        series = [("C", np.clip(load, 0.0, None))]
        if m.pv_kwp > 0:
            pv = src["pv_w_per_kw"].reindex(hours).fillna(0.0).to_numpy() * m.pv_kwp / 1000.0
            pv = pv * rng.lognormal(0.0, PV_NOISE_SIGMA, len(hours))
            series.append(("P", np.clip(pv, 0.0, None)))
        num = m.id[1:].zfill(width)
        for suffix, kwh in series:
            values = kwh if interval_minutes == 60 else quarter_hours(kwh)
            frames.append(
                pd.DataFrame(
                    {
                        "metering_point_id": f"MP-{num}-{suffix}",
                        "ts": ts_out,
                        "kwh": np.round(values, 4),
                        "quality": "measured",
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _config(
    members: list[_Member],
    interval_minutes: int,
    first: dt.date,
    last: dt.date,
    seed: int,
) -> dict:
    base = yaml.safe_load(demo.DEFAULT_CONFIG.read_text(encoding="utf-8"))
    n = len(members)
    width = max(4, len(str(n)))
    cfg: dict = {
        "community": {
            **base["community"],
            "id": f"synthetic-{n}",
            "name": f"Synthetic community of {n} members (from CityLearn 2022, seed {seed})",
            "interval_minutes": interval_minutes,
            "first_day": first,
            "last_day": last,
            "demo_day": last,
        },
        "feed": "none",
        "inbox_dir": "inbox",
        "weather_source": "inbox",
        "missing_data": "refuse",
        "members": [],
    }
    for m in members:
        num = m.id[1:].zfill(width)
        entry: dict = {
            "id": m.id,
            "name": f"{m.kind.capitalize()} {int(num)}",
            "kind": m.kind,
            "joined": first,
            "pv_kwp": m.pv_kwp,
            "metering_points": [{"id": f"MP-{num}-C", "direction": "consumption"}]
            + ([{"id": f"MP-{num}-P", "direction": "production"}] if m.pv_kwp > 0 else []),
        }
        if m.battery_kwh is not None:
            entry["battery"] = {
                "id": f"BAT-{num}",
                "capacity_kwh": m.battery_kwh,
                "power_kw": round(m.battery_kwh / 2, 2),
                "round_trip_efficiency": 0.9,
                "initial_soc_fraction": 0.5,
            }
        cfg["members"].append(entry)
    cfg["shared_assets"] = {
        "owner_id": "COMMUNITY",
        "pv": {
            "id": "CPV",
            "kwp": round(SHARED_PV_KWP_PER_MEMBER * n, 1),
            "metering_point": "MP-CPV-P",
        },
        "battery": {
            "id": "CBAT",
            "capacity_kwh": round(SHARED_BATTERY_KWH_PER_MEMBER * n, 1),
            "power_kw": round(SHARED_BATTERY_KWH_PER_MEMBER * n / 2, 1),
            "round_trip_efficiency": 0.9,
            "initial_soc_fraction": 0.5,
        },
    }
    for key in ("tariffs", "incentive", "fairness", "forecast", "scenarios", "control"):
        cfg[key] = base[key]
    cfg["dispatch"] = base["dispatch"]
    return cfg


def synth_community(
    n_members: int,
    out_dir: str | Path,
    interval_minutes: int = 60,
    days: int = 150,
    seed: int = 0,
    data_dir: Path = demo.DATA_DIR,
) -> SynthSummary:
    """Write a synthetic community of ``n_members`` (config and inbox) into ``out_dir``.

    Parameters
    ----------
    n_members : int
        Members, 1 to :data:`MAX_MEMBERS`.
    out_dir : str or Path
        Folder to write (created; must not hold a ``community.yaml`` already).
    interval_minutes : int
        Meter interval: 60 or 15 [min].
    days : int
        Local days of data, ending on the last complete day of the bundled year (at least
        the forecasters' history: 121 days with the demo's settings) [d].
    seed : int
        Seed of every draw.
    data_dir : Path
        The bundled CityLearn data.

    Returns
    -------
    SynthSummary

    Raises
    ------
    SynthError
        An argument out of range, or ``out_dir`` already holds a community.
    """
    if not 1 <= n_members <= MAX_MEMBERS:
        raise SynthError(f"--members must be 1 to {MAX_MEMBERS}, got {n_members}")
    if interval_minutes not in (15, 60):
        raise SynthError(f"--interval-minutes must be 15 or 60, got {interval_minutes}")
    if not 1 <= days <= 360:
        raise SynthError(f"--days must be 1 to 360, got {days}")
    out = Path(out_dir)
    if (out / "community.yaml").exists():
        raise SynthError(f"{out / 'community.yaml'} exists: choose an empty folder")
    base = yaml.safe_load(demo.DEFAULT_CONFIG.read_text(encoding="utf-8"))["community"]
    tz, last = base["timezone"], base["last_day"]
    first = last - dt.timedelta(days=days - 1)
    start = pd.Timestamp(first, tz=tz).tz_convert("UTC")
    end = pd.Timestamp(last + dt.timedelta(days=1), tz=tz).tz_convert("UTC")
    hours = pd.date_range(start, end, freq="h", inclusive="left")

    rng = np.random.default_rng(seed)
    buildings = pd.read_parquet(data_dir / "citylearn_2022_buildings.parquet")
    members = _draw_members(n_members, rng, sorted(buildings["building"].unique()))

    inbox = out / "inbox"
    stamp = f"{first}_{last}"
    files: list[Path] = []
    n_rows = 0
    for k in range(0, len(members), MEMBERS_PER_FILE):
        part = _meter_frames(
            members[k : k + MEMBERS_PER_FILE], hours, buildings, interval_minutes, rng
        )
        n_rows += len(part)
        name = f"synth-meters_{stamp}_{k // MEMBERS_PER_FILE:03d}.parquet"
        files.append(demo._write(part, inbox / "meters" / name))
    # the community plant: the bundled homes' mean output per kWp
    prof = demo.pv_profile_w_per_kw(start, end, data_dir).reindex(hours).fillna(0.0).to_numpy()
    kwp = round(SHARED_PV_KWP_PER_MEMBER * n_members, 1)
    plant = prof * kwp / 1000.0
    ts_out = (
        hours
        if interval_minutes == 60
        else pd.date_range(start, periods=len(hours) * 4, freq="15min")
    )
    plant_rows = pd.DataFrame(
        {
            "metering_point_id": "MP-CPV-P",
            "ts": ts_out,
            "kwh": np.round(plant if interval_minutes == 60 else quarter_hours(plant), 4),
            "quality": "measured",
        }
    )
    n_rows += len(plant_rows)
    files.append(demo._write(plant_rows, inbox / "meters" / f"synth-plant_{stamp}.parquet"))

    prices = demo.import_price_rows(data_dir / demo.PRICE_FILE, start, end)
    if interval_minutes == 15:
        prices = pd.DataFrame(
            {
                "ts": pd.date_range(start, periods=len(prices) * 4, freq="15min"),
                "price": np.repeat(prices["price"].to_numpy(), 4),
            }
        )
    files.append(
        demo._write(
            pd.DataFrame(
                {
                    "ts": prices["ts"],
                    "price_type": "import",
                    "price_per_kwh": prices["price"],
                    "unit": "USD/kWh",
                }
            ),
            inbox / "prices" / f"synth-prices_{stamp}.parquet",
        )
    )
    wx = demo.weather_rows(start, end, data_dir)
    obs = wx[wx["kind"] == "observation"][["ts", *demo.WEATHER_VARS]]
    fc = wx[wx["kind"] == "forecast"][["ts", "issue_time", *demo.WEATHER_VARS]]
    files.append(
        demo._write(obs, inbox / "weather" / f"synth-weather-observations_{stamp}.parquet")
    )
    files.append(demo._write(fc, inbox / "weather" / f"synth-weather-forecasts_{stamp}.parquet"))

    carbon = yaml.safe_load(demo.DEFAULT_CONFIG.read_text(encoding="utf-8"))["tariffs"].get(
        "carbon_intensity_source"
    )
    if carbon:
        shutil.copyfile(data_dir / carbon, out / carbon)
    cfg = _config(members, interval_minutes, first, last, seed)
    parse_config(cfg, source="synthetic community")  # refuse before writing, naming the field
    header = (
        f"# Synthetic ECM community: {n_members} members built from the CityLearn 2022 homes\n"
        f"# by `ecm synth-community --members {n_members} --interval-minutes {interval_minutes}"
        f" --days {days} --seed {seed}` (see models/synth.py for how members are made).\n"
        f"# Run it: ECM_CONFIG={out.resolve() / 'community.yaml'} ecm run --date {last}\n"
    )
    path = out / "community.yaml"
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(header + yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return SynthSummary(path, n_members, interval_minutes, first, last, n_rows, tuple(files))
