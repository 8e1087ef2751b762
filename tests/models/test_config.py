"""Configuration validation names the field; master data round-trips through Excel."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import yaml

from models.config import ConfigError, load_config, parse_config, read_master_data_excel
from models.demo import DEFAULT_CONFIG
from models.master_data import master_data_frames


@pytest.fixture()
def raw():
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_demo_config_is_valid(demo_config):
    assert len(demo_config.members) == 17
    assert all(
        m.battery.capacity_kwh == 6.4 and m.battery.power_kw == 5.0 for m in demo_config.members
    )
    assert demo_config.fairness.settlement_rule in demo_config.fairness.rules


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (
            lambda r: r["members"][3]["battery"].update(capacity_kwh=-1),
            "members.3.battery.capacity_kwh",
        ),
        (lambda r: r["fairness"].update(rules=["equal_split_magic"]), "fairness.rules"),
        (
            lambda r: r["members"][0].update(
                metering_points=[{"id": "X", "direction": "production"}]
            ),
            "members.0",
        ),
        (lambda r: r["community"].update(timezone="Mars/Olympus"), "community.timezone"),
        (lambda r: r["incentive"].update(scheme="free_money"), "incentive.scheme"),
        (lambda r: r["fairness"].pop("approval"), "fairness.approval"),
    ],
)
def test_inconsistent_config_refused_naming_the_field(raw, mutate, field):
    r = copy.deepcopy(raw)
    mutate(r)
    with pytest.raises(ConfigError) as exc:
        parse_config(r, source="community.yaml")
    assert field in str(exc.value) and "community.yaml" in str(exc.value)


def test_master_data_excel_round_trip(tmp_path, raw, demo_config):
    frames = master_data_frames(demo_config)
    members = frames["members"].rename(columns={"left_on": "left"})
    mps = frames["metering_points"]
    mps = mps[mps.owner_id != "COMMUNITY"].rename(columns={"owner_id": "member_id"})
    bats = frames["assets"][(frames["assets"].asset_type == "battery") & ~frames["assets"].shared]
    bats = bats.rename(columns={"asset_id": "battery_id", "owner_id": "member_id"}).assign(
        min_soc_fraction=0.0
    )
    path = tmp_path / "master.xlsx"
    with pd.ExcelWriter(path) as xl:
        members.to_excel(xl, sheet_name="members", index=False)
        mps.to_excel(xl, sheet_name="metering_points", index=False)
        bats.to_excel(xl, sheet_name="batteries", index=False)
    cfg = parse_config({**raw, "members": read_master_data_excel(path)})
    assert cfg.members == demo_config.members
    yml = tmp_path / "c.yaml"
    body = {k: v for k, v in raw.items() if k != "members"}
    body["master_data_file"] = "master.xlsx"
    yml.write_text(yaml.safe_dump(body, default_flow_style=False))
    assert load_config(yml).members == demo_config.members


def test_excel_unknown_member_named(tmp_path):
    path = tmp_path / "bad.xlsx"
    with pd.ExcelWriter(path) as xl:
        pd.DataFrame(
            {
                "member_id": ["A"],
                "name": ["a"],
                "kind": ["household"],
                "joined": ["2016-08-01"],
                "left": [None],
                "pv_kwp": [0.0],
                "source_building": [None],
            }
        ).to_excel(xl, sheet_name="members", index=False)
        pd.DataFrame(
            {"metering_point_id": ["MP"], "member_id": ["B"], "direction": ["consumption"]}
        ).to_excel(xl, sheet_name="metering_points", index=False)
        pd.DataFrame(
            columns=[
                "battery_id",
                "member_id",
                "capacity_kwh",
                "power_kw",
                "round_trip_efficiency",
                "initial_soc_fraction",
                "min_soc_fraction",
            ]
        ).to_excel(xl, sheet_name="batteries", index=False)
    with pytest.raises(ConfigError, match=r"metering_points.*row 2.*member_id.*'B'"):
        read_master_data_excel(path)


def test_readme_table_reference_is_generated_from_the_contracts():
    from pathlib import Path

    from models.contracts import contracts_markdown

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert contracts_markdown() in readme
