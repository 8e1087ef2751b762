"""Rebuild the bundled demo data (``data/demo/*.parquet``) from the CityLearn 2.0.0 wheel.

Usage::

    pip download --no-deps CityLearn==2.0.0 -d /tmp/cl
    python scripts/build_demo_data.py /tmp/cl/CityLearn-2.0.0-py3-none-any.whl

The source files carry no year and no time zone. See ``data/README.md`` for what is inferred
and why: rows are consecutive hours in local *standard* time (PST, UTC-8, no DST shift), hour
``h`` (1..24) is the hour *ending* at ``h:00``, and the first row is 2016-07-31 23:00-24:00 PST.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

SOURCE_DIR = "citylearn/data/citylearn_challenge_2022_phase_all/"
FIRST_INTERVAL_START_UTC = pd.Timestamp("2016-08-01 07:00", tz="UTC")  # 2016-07-31 23:00 PST
OUT = Path(__file__).resolve().parents[1] / "data" / "demo"


def _read(zf: zipfile.ZipFile, name: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(zf.read(SOURCE_DIR + name)))


def main(wheel: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        frames = []
        for i in range(1, 18):
            b = _read(zf, f"Building_{i}.csv")
            ts = pd.date_range(FIRST_INTERVAL_START_UTC, periods=len(b), freq="h")
            frames.append(
                pd.DataFrame(
                    {
                        "building": f"Building_{i}",
                        "ts": ts,
                        "month": b["Month"].astype("int8"),
                        "hour": b["Hour"].astype("int8"),
                        "day_type": b["Day Type"].astype("int8"),
                        "load_kwh": b["Equipment Electric Power [kWh]"].astype("float64"),
                        "pv_w_per_kw": b["Solar Generation [W/kW]"].astype("float64"),
                    }
                )
            )
        buildings = pd.concat(frames, ignore_index=True)
        w = _read(zf, "weather.csv")
        ts = pd.date_range(FIRST_INTERVAL_START_UTC, periods=len(w), freq="h")
        weather = pd.DataFrame({"ts": ts})
        names = {
            "Outdoor Drybulb Temperature [C]": "temperature_2m",
            "Relative Humidity [%]": "relative_humidity_2m",
            "Diffuse Solar Radiation [W/m2]": "diffuse_radiation",
            "Direct Solar Radiation [W/m2]": "direct_normal_irradiance",
        }
        for src, dst in names.items():
            weather[dst] = w[src].astype("float64")
            for lead in (6, 12, 24):
                weather[f"{dst}_pred_{lead}h"] = w[f"{lead}h Prediction {src}"].astype("float64")
        p = _read(zf, "pricing.csv")
        pricing = pd.DataFrame(
            {
                "ts": pd.date_range(FIRST_INTERVAL_START_UTC, periods=len(p), freq="h"),
                "price_usd_per_kwh": p["Electricity Pricing [$/kWh]"].astype("float64"),
            }
        )
        c = _read(zf, "carbon_intensity.csv")
        carbon = pd.DataFrame(
            {
                "ts": pd.date_range(FIRST_INTERVAL_START_UTC, periods=len(c), freq="h"),
                "kg_co2_per_kwh": c["kg_CO2/kWh"].astype("float64"),
            }
        )
    kw = {"index": False, "compression": "zstd"}
    buildings.to_parquet(OUT / "citylearn_2022_buildings.parquet", **kw)
    weather.to_parquet(OUT / "citylearn_2022_weather.parquet", **kw)
    pricing.to_parquet(OUT / "citylearn_2022_pricing.parquet", **kw)
    carbon.to_parquet(OUT / "citylearn_2022_carbon.parquet", **kw)
    print(f"wrote {len(buildings)} building rows, {len(weather)} weather rows to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
