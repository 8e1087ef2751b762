"""The bundled demo data (CityLearn 2022 challenge, Fontana CA) served as ECM's sources.

The demo community's meters, weather (observations and recorded forecasts) and time-of-use
prices come from ``data/demo/*.parquet``. This module turns them into exactly what the live
sources deliver (the documented meter file format, the weather contract), so the demo runs the
same validation and ingestion path as production data.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from models.config import CommunityConfig

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"
DEFAULT_CONFIG = DATA_DIR / "community.yaml"
WEATHER_LEADS_H = (6, 12, 24)
WEATHER_VARS = (
    "temperature_2m",
    "relative_humidity_2m",
    "diffuse_radiation",
    "direct_normal_irradiance",
)
SOURCE = "bundled-citylearn"


@functools.lru_cache(maxsize=4)
def _buildings(data_dir: str) -> pd.DataFrame:
    return pd.read_parquet(Path(data_dir) / "citylearn_2022_buildings.parquet")


@functools.lru_cache(maxsize=4)
def _weather(data_dir: str) -> pd.DataFrame:
    return pd.read_parquet(Path(data_dir) / "citylearn_2022_weather.parquet")


def _window(df: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return df[(df["ts"] >= start) & (df["ts"] < end)]


def pv_profile_w_per_kw(
    start: pd.Timestamp, end: pd.Timestamp, data_dir: Path = DATA_DIR
) -> pd.Series:
    """Mean measured PV output per installed kW across the 17 homes [W/kW], by ts.

    Used as the profile of the community PV plant.
    """
    b = _window(_buildings(str(data_dir)), start, end)
    return b.groupby("ts")["pv_w_per_kw"].mean()


def meter_rows(
    config: CommunityConfig, start: pd.Timestamp, end: pd.Timestamp, data_dir: Path = DATA_DIR
) -> pd.DataFrame:
    """Meter readings in the documented file format for UTC interval starts in [start, end).

    Consumption = CityLearn non-shiftable load [kWh]; production = measured W/kW x kWp / 1000.
    The shared plant's production uses :func:`pv_profile_w_per_kw`.
    """
    b = _window(_buildings(str(data_dir)), start, end)
    parts = []
    for m in config.members:
        if m.source_building is None:
            continue
        mb = b[b["building"] == m.source_building]
        cons = m.metering_point("consumption")
        parts.append(
            pd.DataFrame(
                {
                    "metering_point_id": cons,
                    "ts": mb["ts"].array,  # tz-aware, not an object array
                    "kwh": mb["load_kwh"].to_numpy(),
                }
            )
        )
        prod = m.metering_point("production")
        if prod is not None and m.pv_kwp > 0:
            parts.append(
                pd.DataFrame(
                    {
                        "metering_point_id": prod,
                        "ts": mb["ts"].array,
                        "kwh": mb["pv_w_per_kw"].to_numpy() * m.pv_kwp / 1000.0,
                    }
                )
            )
    pv = config.shared_assets.pv
    if pv is not None:
        prof = pv_profile_w_per_kw(start, end, data_dir)
        parts.append(
            pd.DataFrame(
                {
                    "metering_point_id": pv.metering_point,
                    "ts": prof.index,
                    "kwh": prof.to_numpy() * pv.kwp / 1000.0,
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    out["ts"] = pd.DatetimeIndex(out["ts"]).tz_convert("UTC")
    out["quality"] = "measured"
    return out


def weather_rows(start: pd.Timestamp, end: pd.Timestamp, data_dir: Path = DATA_DIR) -> pd.DataFrame:
    """Recorded weather for valid times in [start, end): observations and forecasts.

    Observations become known at the end of their hour (``issue_time = ts + 1 h``). CityLearn's
    ``<L>h Prediction`` columns at row t are forecasts for t + L issued at t
    (``issue_time = ts - L``); see data/README.md on their quality.
    """
    w = _weather(str(data_dir))
    obs = _window(w, start, end)
    frames = [
        pd.DataFrame(
            {
                "ts": obs["ts"].to_numpy(),
                "issue_time": (obs["ts"] + pd.Timedelta(hours=1)).to_numpy(),
                "kind": "observation",
                "lead_hours": -1.0,
                **{v: obs[v].to_numpy() for v in WEATHER_VARS},
            }
        )
    ]
    for lead in WEATHER_LEADS_H:
        shift = pd.Timedelta(hours=lead)
        src = _window(w, start - shift, end - shift)
        frames.append(
            pd.DataFrame(
                {
                    "ts": (src["ts"] + shift).to_numpy(),
                    "issue_time": src["ts"].to_numpy(),
                    "kind": "forecast",
                    "lead_hours": float(lead),
                    **{v: src[f"{v}_pred_{lead}h"].to_numpy() for v in WEATHER_VARS},
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    for c in ("ts", "issue_time"):
        out[c] = pd.DatetimeIndex(out[c]).tz_convert("UTC")
    out["source"] = SOURCE
    return out


def import_price_rows(path: Path, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The time-of-use import price file, as ``ts, price`` in the file's own unit."""
    p = pd.read_parquet(path)
    p = _window(p, start, end)
    value_col = [c for c in p.columns if c != "ts"][0]
    return pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(p["ts"]).tz_convert("UTC"),
            "price": p[value_col].to_numpy(dtype=np.float64),
        }
    )


PRICE_FILE = "citylearn_2022_pricing.parquet"
"""The demo's measured time-of-use import price [USD/kWh]."""


def deliver(
    config: CommunityConfig,
    inbox: Path,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    stored_meter_days: set[tuple[str, object]],
    stored_price_days: set[object],
    stored_weather_days: set[object],
    data_dir: Path = DATA_DIR,
) -> list[Path]:
    """The demo's simulated distributor: deliver the bundled data for [start, end) as files.

    Writes into ``inbox/meters``, ``inbox/prices`` and ``inbox/weather`` exactly what a
    distributor, a price feed and a weather service would deliver, in the documented formats
    (Parquet here, for speed), so the demo runs the same inbox path as a real community. Only
    what is not stored yet is delivered: (metering point, local day) pairs for meters, local
    days for prices and weather. A stored reading (a correction included) is therefore never
    delivered over.

    Returns
    -------
    list of Path
        The files written (none when everything is stored).
    """
    tz = config.community.timezone
    written = []
    stamp = f"{start.tz_convert(tz).date()}_{(end - pd.Timedelta(seconds=1)).tz_convert(tz).date()}"
    meters = meter_rows(config, start, end, data_dir)
    meters = meters[~_stored(meters, tz, stored_meter_days)]
    if len(meters):
        written.append(_write(meters, Path(inbox) / "meters" / f"citylearn-meters_{stamp}.parquet"))
    prices = import_price_rows(data_dir / PRICE_FILE, start, end)
    prices = prices[~pd.Series(_local_days(prices["ts"], tz)).isin(stored_price_days).to_numpy()]
    if len(prices):
        rows = pd.DataFrame(
            {
                "ts": prices["ts"],
                "price_type": "import",
                "price_per_kwh": prices["price"],
                "unit": "USD/kWh",
            }
        )
        written.append(_write(rows, Path(inbox) / "prices" / f"citylearn-prices_{stamp}.parquet"))
    wx = weather_rows(start, end, data_dir)
    wx = wx[~pd.Series(_local_days(wx["ts"], tz)).isin(stored_weather_days).to_numpy()]
    if len(wx):
        obs = wx[wx["kind"] == "observation"][["ts", *WEATHER_VARS]]
        fc = wx[wx["kind"] == "forecast"][["ts", "issue_time", *WEATHER_VARS]]
        folder = Path(inbox) / "weather"
        written.append(_write(obs, folder / f"citylearn-weather-observations_{stamp}.parquet"))
        written.append(_write(fc, folder / f"citylearn-weather-forecasts_{stamp}.parquet"))
    return written


def _local_days(ts: pd.Series | pd.DatetimeIndex, tz: str) -> np.ndarray:
    """Local calendar day of each timestamp, as an object array of ``datetime.date``."""
    codes, uniques = pd.factorize(pd.DatetimeIndex(ts).tz_convert(tz).normalize())
    return np.array([u.date() for u in uniques] + [None], dtype=object)[codes]


def _stored(meters: pd.DataFrame, tz: str, stored: set[tuple[str, object]]) -> np.ndarray:
    """Whether each reading's (metering point, local day) is stored already."""
    if not stored:
        return np.zeros(len(meters), dtype=bool)
    pairs = pd.MultiIndex.from_arrays([meters["metering_point_id"], _local_days(meters["ts"], tz)])
    return pairs.isin(list(stored))


def _write(df: pd.DataFrame, path: Path) -> Path:
    """Write atomically (a ``.part`` file renamed), so a half-written file is never taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    df.reset_index(drop=True).to_parquet(tmp, index=False)
    tmp.replace(path)
    return path
