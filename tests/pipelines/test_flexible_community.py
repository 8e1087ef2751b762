"""A community with an air conditioner, an EV and a washing machine in its configuration:
the daily run plans them with the batteries (issue #9), stores them in `flexible_plan`, keeps
them in the owners' load, and shows them in the report."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest
from materialised import materialised_home

from models.config import load_config
from models.demo import DEFAULT_CONFIG
from models.warehouse import Warehouse

DAY = dt.date(2017, 6, 14)
FLEX = """
flexible_loads:
  air_conditioners:
    - {id: AC-01, member: M01, r_k_per_kw: 6.0, c_kwh_per_k: 2.5, cop: 3.0, max_power_kw: 2.0,
       comfort_min_c: 20.0, comfort_max_c: 23.0, initial_temp_c: 21.0, mode: heating,
       comfort_periods: [{hours: "00-06", min_c: 18.0, max_c: 23.0}]}
  evs:
    - {id: EV-02, member: M02, arrival: "00:00", departure: "07:00", energy_kwh: 8.0,
       max_power_kw: 3.7}
  deferrable:
    - {id: WM-03, member: M03, profile_kwh: [0.6, 0.9, 0.3], earliest: "09:00",
       latest_end: "18:00"}
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("flex")
    cfg = root / "community.yaml"
    demo = Path(DEFAULT_CONFIG)
    text = demo.read_text().replace(
        "carbon_intensity_source: citylearn_2022_carbon.parquet",
        f"carbon_intensity_source: {demo.parent / 'citylearn_2022_carbon.parquet'}",
    )
    cfg.write_text(text + FLEX)
    with materialised_home(root / "home", DAY, cfg) as path:
        yield path


@pytest.fixture(scope="module")
def wh(home):
    return Warehouse(home / "warehouse.duckdb")


def test_every_flexible_asset_is_planned_within_its_limits(wh):
    flex = wh.read_day("flexible_plan", DAY)
    assert set(flex["asset_id"]) == {"AC-01", "EV-02", "WM-03"}
    ac = flex[flex["asset_id"] == "AC-01"]
    assert len(ac) == 24 and ac["power_kw"].max() <= 2.0 + 1e-6
    assert ac["outside_band_k"].max() < 1e-3  # comfort kept in every interval
    assert ac["indoor_temp_c"].between(18.0 - 1e-3, 23.0 + 1e-3).all()
    # the night band (18 degC until 06:00 local) is used: the plan lets the flat cool to it
    local = ac["ts"].dt.tz_convert("America/Los_Angeles")
    night, day = ac[local.dt.hour < 6], ac[local.dt.hour >= 6]
    assert night["indoor_temp_c"].min() < 20.0 - 1e-3
    assert day["indoor_temp_c"].min() >= 20.0 - 1e-3
    assert ac["energy_kwh"].sum() > 0  # its nights forecast at 15.6-17 degC need heating
    ev = flex[flex["asset_id"] == "EV-02"]
    assert ev["shortfall_kwh"].max() < 1e-6 and ev["delivered_kwh"].iloc[0] >= 8.0 - 1e-6
    assert ev["power_kw"].max() <= 3.7 + 1e-6
    wm = flex[flex["asset_id"] == "WM-03"]
    assert wm["energy_kwh"].tolist() == pytest.approx([0.6, 0.9, 0.3])
    assert wm["starts"].sum() == 1


def test_flexible_energy_is_in_the_owners_planned_load_and_balances(wh):
    plan = wh.read_day("dispatch_plan", DAY)
    flex = wh.read_day("flexible_plan", DAY)
    exp = plan[plan["scenario"] == "expected"].set_index(["member_id", "ts"])
    flows = exp["load_kwh"] - exp["pv_kwh"] + exp["charge_kwh"] - exp["discharge_kwh"]
    assert np.allclose(flows, exp["import_kwh"] - exp["export_kwh"], atol=1e-5)
    cfg = load_config(os.environ["ECM_CONFIG"])
    base = load_config(DEFAULT_CONFIG)
    assert cfg.flexible_loads and not base.flexible_loads
    per_member = flex.groupby("member_id")["energy_kwh"].sum()
    # M02's EV energy arrives in the night, inside its stay
    ev_ts = flex.loc[(flex["asset_id"] == "EV-02") & (flex["energy_kwh"] > 1e-6), "ts"]
    local = ev_ts.dt.tz_convert(cfg.community.timezone)
    assert (local.dt.hour < 7).all()
    assert per_member["M02"] >= 8.0 / 0.92 - 1e-6


def test_the_report_shows_the_flexible_loads(home):
    html = (home / "reports" / str(DAY) / "plan.html").read_text()
    assert 'id="flexible"' in html
    for text in ("AC-01", "EV-02", "WM-03", "in the comfort band", "need met", "starts"):
        assert text in html


def test_air_conditioner_defaults_and_bands_by_hour():
    from models.config import AirConditioner

    a = AirConditioner(
        id="AC",
        member="M01",
        comfort_min_c=20,
        comfort_max_c=24,
        initial_temp_c=22,
        comfort_periods=[{"hours": ["22-24", "0-6"], "min_c": 17, "max_c": 26}],
    )
    assert (a.r_k_per_kw, a.c_kwh_per_k, a.cop, a.max_power_kw) == (4.0, 2.5, 3.2, 1.2)
    lo, hi = a.band([0, 5, 6, 21, 22, 23])
    assert lo == [17, 17, 20, 20, 17, 17] and hi == [26, 26, 24, 24, 26, 26]
    with pytest.raises(ValueError, match="min_c is above max_c"):
        AirConditioner(
            id="AC", member="M01", comfort_min_c=20, comfort_max_c=24, initial_temp_c=22,
            comfort_periods=[{"hours": "0-6", "min_c": 27, "max_c": 26}],
        )  # fmt: skip


def test_a_flexible_load_of_an_unknown_member_is_refused_by_name(tmp_path):
    from models.config import ConfigError

    cfg = tmp_path / "c.yaml"
    cfg.write_text(Path(DEFAULT_CONFIG).read_text() + FLEX.replace("member: M02", "member: M99"))
    with pytest.raises(ConfigError, match=r"EV-02.*M99"):
        load_config(cfg)


def test_the_export_carries_the_flexible_loads_as_devices(home, wh):
    import json

    import jsonschema
    from typer.testing import CliRunner

    from optimisation.setpoints import schema
    from pipelines.cli import app

    r = CliRunner().invoke(app, ["export", "plan", "--date", str(DAY)])  # the fixture's config
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    jsonschema.validate(doc, schema())
    flex = {d["device_id"]: d for d in doc["devices"] if d["kind"] != "battery"}
    assert set(flex) == {"AC-01", "EV-02", "WM-03"}
    stored = wh.read_day("flexible_plan", DAY).set_index(["asset_id", "ts"]).sort_index()
    ev = [iv["power_kw"] for iv in flex["EV-02"]["intervals"]]
    assert ev == pytest.approx(stored.loc["EV-02", "power_kw"].round(4).tolist(), abs=1e-4)
    assert all("indoor_temp_c" in iv for iv in flex["AC-01"]["intervals"])
    assert sum(iv["starts"] for iv in flex["WM-03"]["intervals"]) == 1
