"""Onboarding a community: ``ecm init`` scaffolds its folder.

``DIR/community.yaml`` (documented field by field), ``DIR/master_data.xlsx`` (a template with
one example row per sheet), and the inbox folders ``DIR/inbox/{meters,prices,weather}/``.
Then ``ECM_CONFIG=DIR/community.yaml ecm ...`` works on it; its warehouse and reports live in
``DIR/.ecm/`` unless ``ECM_HOME`` says otherwise.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd

from models.config import MASTER_DATA_SHEETS, ConfigError, parse_config
from models.inbox import KINDS, inbox_folders

PLACEHOLDER = "TO FILL IN"
"""Marks a value ``ecm init`` cannot know; the configuration is refused until it is filled."""

COMMUNITY_TEMPLATE = """\
# ECM community configuration, written by `ecm init` on {today}.
# Every field is documented; the README's "Onboard your community" walks through the steps.
# Validation names the field of any error, e.g. fairness.approval.approved_by.

community:
  id: {id}                      # short id: letters, digits, '_', '.', '-'
  name: {name_yaml}
  timezone: {timezone}          # IANA time zone; a local day has 23, 24 or 25 hours
  latitude: {latitude}          # [deg] north; for solar position and Open-Meteo
  longitude: {longitude}        # [deg] east
  currency: {currency}                  # ISO 4217; every amount is settled in it
  interval_minutes: 60          # meter interval [min]: 60 (15 follows with quarter-hour work)
  first_day: {first_day}        # first local day with data
  last_day: null                # null: a live community (days up to today)

# Members, metering points and batteries come from the workbook (one row per record).
master_data_file: master_data.xlsx

# Where data come from. Distributors, price feeds and weather services drop files into the
# inbox; every run takes the new ones (once each, by SHA-256) and then works on what is stored.
inbox_dir: inbox                # relative to this file
feed: none                      # none: files arrive by themselves
weather_source: inbox           # inbox (files) | open-meteo (live, needs the network) | none
missing_data: refuse            # refuse: a day with missing meter intervals is not settled;
                                # estimate: settled on flagged estimates that later files replace

# Assets owned by the community itself (player {owner} in the fairness game); optional.
shared_assets:
  owner_id: COMMUNITY
  pv: null                      # e.g. {{id: CPV, kwp: 40.0, metering_point: MP-CPV-P}}
  battery: null                 # e.g. {{id: CBAT, capacity_kwh: 50, power_kw: 25,
                                #        round_trip_efficiency: 0.9, initial_soc_fraction: 0.5}}

# Grid tariffs [{currency}/kWh]. Each price is a number (flat), `inbox` (price files:
# ts, price_type, price_per_kwh[, unit]) or a time-of-use table. A time-of-use interval takes
# the first period matching its local month, day (mon..sun, or holiday) and hour range.
tariffs:
  import_price:
    time_of_use:
      - {{name: peak, price_per_kwh: 0.30, days: [mon, tue, wed, thu, fri], hours: ["17-21"]}}
      - {{name: standard, price_per_kwh: 0.20}}      # the last period, without filters
  export_price: 0.05
  holidays: []                  # local dates priced as `holiday`, e.g. [2026-12-25]
  price_file_unit: null         # unit of price files without a unit column (default {currency}/kWh)

incentive:
  scheme: it_hourly_shared_energy   # rate x min(community injection, withdrawal) per hour
  rate_per_kwh: 0.10                # [{currency}/kWh]

# Fairness rules are policy: ECM settles with `settlement_rule` only under a recorded approval.
fairness:
  rules: [pro_rata_consumption, shapley]
  settlement_rule: pro_rata_consumption
  approval:
    approved_by: {placeholder}    # the body that approved the rules (e.g. general assembly)
    approved_on: {today}
    reference: {placeholder}      # minutes or decision id

forecast:
  training_days: 28             # days each model is fitted on [d]
  retrain_every_days: 7         # models are refitted weekly, on a fixed grid [d]
  calibration_days: 28          # out-of-sample days for intervals, ensemble and champion [d]
  holiday_country: null         # ISO country of public holidays (e.g. DE, IT, ES, AT)

control:
  horizon_hours: 24             # look-ahead of every real-time re-plan [h]
"""

EXAMPLE_ROWS = {
    "members": {
        "member_id": "M01",
        "name": "Example household (replace)",
        "kind": "household",
        "joined": None,
        "left": None,
        "pv_kwp": 5.0,
        "source_building": None,
    },
    "metering_points": [
        {"metering_point_id": "MP-M01-C", "member_id": "M01", "direction": "consumption"},
        {"metering_point_id": "MP-M01-P", "member_id": "M01", "direction": "production"},
    ],
    "batteries": {
        "battery_id": "BAT-M01",
        "member_id": "M01",
        "capacity_kwh": 10.0,
        "power_kw": 5.0,
        "round_trip_efficiency": 0.9,
        "initial_soc_fraction": 0.5,
        "min_soc_fraction": 0.1,
    },
}

GUIDE = """\
ECM community folder
====================

1. Edit community.yaml (tariffs, incentive, fairness approval: fields marked TO FILL IN).
2. Replace the example row of master_data.xlsx by your members, metering points, batteries.
3. Drop files into inbox/meters, inbox/prices (if a price is `inbox`) and inbox/weather:
   meters   metering_point_id, ts, kwh[, quality]
   prices   ts, price_type (import|export), price_per_kwh[, unit]
   weather  ts, temperature_2m, relative_humidity_2m, diffuse_radiation,
            direct_normal_irradiance[, issue_time]
   (ts: interval start, ISO 8601 with a UTC offset, e.g. 2026-05-01T00:00:00+02:00)
4. ECM_CONFIG={config} ecm backfill --start ... --end ...
   ECM_CONFIG={config} ecm run --date ...
Processed files move to inbox/<kind>/processed/, refused ones to inbox/<kind>/rejected/ with
<file>.error.txt naming the row and field. See "Onboard your community" in ECM's README.
"""


def _yaml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scaffold_community(
    folder: str | Path,
    *,
    name: str,
    timezone: str,
    latitude: float,
    longitude: float,
    currency: str,
    community_id: str | None = None,
    first_day: dt.date | None = None,
) -> Path:
    """Create a community folder; return the path of its ``community.yaml``.

    Raises
    ------
    ConfigError
        The folder already holds a community, or an option is invalid (the option is named).
    """
    folder = Path(folder)
    config = folder / "community.yaml"
    if config.exists():
        raise ConfigError(f"{config} exists: ecm init never overwrites a community")
    today = dt.date.today()
    cid = community_id or re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip().lower()).strip("-.")
    text = COMMUNITY_TEMPLATE.format(
        today=today.isoformat(),
        id=cid or "community",
        name_yaml=_yaml_str(name),
        timezone=timezone,
        latitude=latitude,
        longitude=longitude,
        currency=currency,
        first_day=(first_day or today).isoformat(),
        owner="COMMUNITY",
        placeholder=_yaml_str(PLACEHOLDER),
    )
    import yaml

    raw = yaml.safe_load(text)
    raw.pop("master_data_file")
    raw["members"] = [_example_member(first_day or today)]
    raw["fairness"]["approval"]["approved_by"] = "check"
    raw["fairness"]["approval"]["reference"] = "check"
    try:
        parse_config(raw, source="ecm init options")
    except ConfigError as err:
        msg = str(err).replace("community.", "--")
        raise ConfigError(msg) from None
    folder.mkdir(parents=True, exist_ok=True)
    inbox_folders(folder / "inbox")
    write_master_data_template(folder / "master_data.xlsx", first_day or today)
    (folder / "README.txt").write_text(GUIDE.format(config=config), encoding="utf-8")
    tmp = config.with_name(config.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(config)
    return config


def _example_member(joined: dt.date) -> dict:
    m = EXAMPLE_ROWS["members"]
    b = EXAMPLE_ROWS["batteries"]
    return {
        "id": m["member_id"],
        "name": m["name"],
        "joined": joined,
        "pv_kwp": m["pv_kwp"],
        "metering_points": [
            {"id": r["metering_point_id"], "direction": r["direction"]}
            for r in EXAMPLE_ROWS["metering_points"]
        ],
        "battery": {
            "id": b["battery_id"],
            **{k: v for k, v in b.items() if k not in ("battery_id", "member_id")},
        },
    }


def write_master_data_template(path: Path, joined: dt.date) -> Path:
    """The master-data workbook with its sheets, columns and one example row each."""
    members = pd.DataFrame([{**EXAMPLE_ROWS["members"], "joined": pd.Timestamp(joined)}])
    frames = {
        "members": members[MASTER_DATA_SHEETS["members"]],
        "metering_points": pd.DataFrame(EXAMPLE_ROWS["metering_points"])[
            MASTER_DATA_SHEETS["metering_points"]
        ],
        "batteries": pd.DataFrame([EXAMPLE_ROWS["batteries"]])[MASTER_DATA_SHEETS["batteries"]],
    }
    with pd.ExcelWriter(path, engine="openpyxl") as xl:
        for sheet, df in frames.items():
            df.to_excel(xl, sheet_name=sheet, index=False)
    return path


__all__ = ["KINDS", "PLACEHOLDER", "scaffold_community", "write_master_data_template"]
