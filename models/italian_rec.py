"""The data of ``ecm study italian-rec``: a ten-apartment renewable energy community in Naples
on one summer day, at quarter-hour resolution, after the Italian case study condensed in
``../shared/domain/energy-communities.md`` (collective self-consumption, incentive 0.10
EUR/kWh on the hourly minimum of injection and withdrawal, an air conditioner and a battery
per apartment, contracted power 3 kW).

The study's own metered data are not public, so the day is built from documented parts:

- **Day and place.** 2025-07-15 (a Tuesday) in Naples (40.85 N, 14.27 E, Europe/Rome): 96
  quarter-hours.
- **PV.** A 20 kWp rooftop plant of the building (a player of its own, ``PV``, which only
  injects): pvlib's Ineichen clear-sky irradiance at Naples times a 0.80 performance ratio,
  in three scenarios, clear (probability 0.5), hazy 75 % (0.3) and cloudy 40 % (0.2).
- **Base load** (everything but the air conditioner). The hour-of-day profiles of CityLearn
  homes 1 to 10 on 2017-05-10 (a mild spring weekday: little cooling in them), scaled to 6.5
  kWh a day each (a typical Italian apartment's 2,400 kWh a year) and spread evenly over the
  hour's quarter-hours, in two scenarios: as is (0.6) and 15 % higher (0.4). With the three
  PV scenarios, six scenarios.
- **Outdoor temperature.** A typical Naples July day, 23 degC at 03:00 to 31 degC at 15:00
  (``27 + 4 sin(2 pi (h - 9) / 24)``): Open-Meteo's archive cannot be reached offline.
- **Air conditioners.** A 1.2 kW (electrical) split unit per apartment with COP 3.2, in an
  apartment of thermal resistance 4 K/kW and capacitance 2.5 kWh/K, each varied by up to
  +-15 % between apartments (seeded); comfort band 24 to 27 degC, 26 degC at midnight; the
  thermostat of the scenarios without optimisation holds 26.5 degC (half a kelvin below the
  band's top, where a thermostat with a deadband sits) with a gain of 3 kW/K, which holds the
  band (2 kW/K overshoots it by 0.05 K in the afternoon).
- **Batteries.** 5 kWh, 2.5 kW, 90 % round trip, half full, per apartment.
- **Prices.** Import 0.25 EUR/kWh, export (RID) 0.10 EUR/kWh, incentive 0.10 EUR/kWh.

Pure Python: no dagster, no mlflow.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.demo import DATA_DIR

DAY = dt.date(2025, 7, 15)
TZ = "Europe/Rome"
LATITUDE, LONGITUDE = 40.85, 14.27
INTERVAL_HOURS = 0.25
APARTMENTS = tuple(f"APT{i:02d}" for i in range(1, 11))
PV_PLAYER = "PV"
PV_KWP = 20.0
PERFORMANCE_RATIO = 0.80
PV_SCENARIOS = ((1.0, 0.5), (0.75, 0.3), (0.40, 0.2))
LOAD_SCENARIOS = ((1.0, 0.6), (1.15, 0.4))
DAILY_BASE_LOAD_KWH = 6.5
SOURCE_DAY = dt.date(2017, 5, 10)
IMPORT_PRICE, EXPORT_PRICE, INCENTIVE = 0.25, 0.10, 0.10
CONTRACTED_KW = 3.0
HVAC = {
    "r_k_per_kw": 4.0,
    "c_kwh_per_k": 2.5,
    "cop": 3.2,
    "max_power_kw": 1.2,
    "t_min_c": 24.0,
    "t_max_c": 27.0,
    "t_initial_c": 26.0,
}
THERMOSTAT_SETPOINT_C, THERMOSTAT_GAIN_KW_PER_K = 26.5, 3.0
BATTERY = {"capacity_kwh": 5.0, "power_kw": 2.5, "round_trip_efficiency": 0.9}
SETTINGS = {
    "import_price": IMPORT_PRICE,
    "export_price": EXPORT_PRICE,
    "incentive": INCENTIVE,
    "contracted_kw": CONTRACTED_KW,
    "setpoint_c": THERMOSTAT_SETPOINT_C,
    "gain_kw_per_k": THERMOSTAT_GAIN_KW_PER_K,
}
"""The keyword arguments of :func:`optimisation.study.run_study` for this community."""
SEED = 20250715


@dataclass(frozen=True)
class StudyData:
    """Everything the four scenarios share."""

    ts: pd.DatetimeIndex
    """interval starts (UTC), 96"""
    players: tuple[str, ...]
    """the apartments, then the PV plant"""
    load_kwh: np.ndarray
    """(S, P, T) base load without air conditioning [kWh]"""
    pv_kwh: np.ndarray
    """(S, P, T) [kWh]"""
    probabilities: np.ndarray
    outdoor_temp_c: np.ndarray
    """(T,) [degC]"""
    hvac: dict[str, dict[str, float]] = field(default_factory=dict)
    """per apartment, the parameters of :class:`optimisation.hvac.HvacSpec`"""
    batteries: dict[str, dict[str, float]] = field(default_factory=dict)


def quarter_hours(day: dt.date = DAY, tz: str = TZ) -> pd.DatetimeIndex:
    """The local day's quarter-hour starts in UTC (92, 96 or 100)."""
    start = pd.Timestamp(day).tz_localize(tz)
    end = pd.Timestamp(day + dt.timedelta(days=1)).tz_localize(tz)
    return pd.date_range(start, end, freq="15min", inclusive="left").tz_convert("UTC")


def clear_sky_pv_kwh(ts: pd.DatetimeIndex) -> np.ndarray:
    """The plant's clear-sky energy per quarter-hour [kWh] (pvlib, Ineichen, at the middle of
    each interval)."""
    import pvlib

    loc = pvlib.location.Location(LATITUDE, LONGITUDE, tz=TZ)
    mid = ts + pd.Timedelta(minutes=7.5)
    ghi = loc.get_clearsky(mid, model="ineichen")["ghi"].to_numpy()
    return PV_KWP * ghi / 1000.0 * PERFORMANCE_RATIO * INTERVAL_HOURS


def base_loads(ts: pd.DatetimeIndex) -> np.ndarray:
    """(P_apartments, T) base load per apartment [kWh]: CityLearn homes' hour-of-day profile
    on :data:`SOURCE_DAY`, scaled to :data:`DAILY_BASE_LOAD_KWH` (see the module notes)."""
    b = pd.read_parquet(DATA_DIR / "citylearn_2022_buildings.parquet")
    local = pd.DatetimeIndex(b["ts"]).tz_convert("America/Los_Angeles")
    b = b[local.date == SOURCE_DAY].assign(hour=local[local.date == SOURCE_DAY].hour)
    hours = pd.DatetimeIndex(ts).tz_convert(TZ).hour.to_numpy()
    out = []
    for k in range(1, len(APARTMENTS) + 1):
        prof = b[b["building"] == f"Building_{k}"].groupby("hour")["load_kwh"].mean()
        prof = prof.reindex(range(24)).interpolate().bfill().ffill().to_numpy()
        prof = prof / prof.sum() * DAILY_BASE_LOAD_KWH  # kWh per hour
        out.append(prof[hours] * INTERVAL_HOURS)
    return np.array(out)


def outdoor_temperature(ts: pd.DatetimeIndex) -> np.ndarray:
    """Typical Naples July day [degC] at each interval's middle."""
    local = pd.DatetimeIndex(ts).tz_convert(TZ)
    h = local.hour + local.minute / 60 + 7.5 / 60
    return 27.0 + 4.0 * np.sin(2 * np.pi * (np.asarray(h) - 9.0) / 24.0)


PV_SCENARIOS_10 = ((1.0, 0.3), (0.85, 0.25), (0.7, 0.2), (0.55, 0.15), (0.4, 0.1))
"""Five PV scenarios: with the two load scenarios, the ten of the speed target (issue #9)."""
EVS = {
    "EV-APT01": {"owner": "APT01", "arrival": 68, "departure": 96, "energy_kwh": 6.0},
    "EV-APT04": {"owner": "APT04", "arrival": 72, "departure": 96, "energy_kwh": 8.0},
    "EV-APT07": {"owner": "APT07", "arrival": 36, "departure": 68, "energy_kwh": 7.0},
}
"""Three EV stays for ``ecm bench flexible`` (not in the study, which has none): two cars home
from 17:00 and 18:00 until midnight, one at home 09:00 to 17:00, each on a 2.3 kW (10 A)
wallbox at 92 % efficiency, within the apartments' 3 kW contracts."""
EV_CHARGER_KW = 2.3


def study_data(
    pv_scenarios: tuple[tuple[float, float], ...] = PV_SCENARIOS,
    load_scenarios: tuple[tuple[float, float], ...] = LOAD_SCENARIOS,
) -> StudyData:
    """The study's community and day (deterministic); scenario factors and probabilities
    ``(factor, probability)`` for PV and load, combined as a product."""
    ts = quarter_hours()
    rng = np.random.default_rng(SEED)
    base = base_loads(ts)
    pv = clear_sky_pv_kwh(ts)
    players = (*APARTMENTS, PV_PLAYER)
    loads, pvs, probs = [], [], []
    for lf, lp in load_scenarios:
        for pf, pp in pv_scenarios:
            load = np.zeros((len(players), len(ts)))
            load[: len(APARTMENTS)] = base * lf
            gen = np.zeros((len(players), len(ts)))
            gen[-1] = pv * pf
            loads.append(load)
            pvs.append(gen)
            probs.append(lp * pp)
    hvac = {}
    for a in APARTMENTS:
        vary = rng.uniform(0.85, 1.15, 3)
        hvac[a] = {
            **HVAC,
            "r_k_per_kw": HVAC["r_k_per_kw"] * vary[0],
            "c_kwh_per_k": HVAC["c_kwh_per_k"] * vary[1],
            "cop": HVAC["cop"] * vary[2],
        }
    return StudyData(
        ts=ts,
        players=players,
        load_kwh=np.array(loads),
        pv_kwh=np.array(pvs),
        probabilities=np.array(probs),
        outdoor_temp_c=outdoor_temperature(ts),
        hvac=hvac,
        batteries={a: dict(BATTERY) for a in APARTMENTS},
    )
