"""Onboarding: `ecm init` scaffolding and master-data workbooks refused by sheet, row, column."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from models.config import ConfigError, load_config, parse_config
from models.onboarding import scaffold_community


def _init(tmp_path: Path, **kw) -> Path:
    args = {
        "name": "Borgo Solare",
        "timezone": "Europe/Rome",
        "latitude": 45.07,
        "longitude": 7.69,
        "currency": "EUR",
    }
    args.update(kw)
    return scaffold_community(tmp_path / "borgo", **args)


def _fill(config: Path) -> None:
    text = config.read_text().replace('"TO FILL IN"', '"Assemblea dei soci"', 1)
    config.write_text(text.replace('"TO FILL IN"', "ASSEMBLEA-2026-01", 1))


def test_init_scaffolds_config_workbook_and_inbox(tmp_path):
    config = _init(tmp_path)
    root = config.parent
    for kind in ("meters", "prices", "weather"):
        assert (root / "inbox" / kind / "processed").is_dir()
        assert (root / "inbox" / kind / "rejected").is_dir()
    wb = openpyxl.load_workbook(root / "master_data.xlsx")
    assert wb.sheetnames == ["members", "metering_points", "batteries"]
    assert wb["members"].max_row == 2  # header and the example row
    text = config.read_text()
    assert text.count("#") > 30  # documented field by field
    # the fairness approval must be recorded before anything settles
    with pytest.raises(ConfigError, match=r"fairness\.approval\.approved_by: .*not filled in"):
        load_config(config)
    _fill(config)
    cfg = load_config(config)
    assert cfg.community.timezone == "Europe/Rome" and cfg.community.last_day is None
    assert [m.id for m in cfg.members] == ["M01"]
    assert cfg.tariffs.import_price.time_of_use is not None


def test_init_refuses_bad_options_by_name_and_never_overwrites(tmp_path):
    with pytest.raises(ConfigError, match=r"--timezone.*unknown time zone"):
        _init(tmp_path, timezone="Europe/Atlantis")
    with pytest.raises(ConfigError, match=r"--latitude"):
        _init(tmp_path, latitude=123.0)
    with pytest.raises(ConfigError, match=r"--currency"):
        _init(tmp_path, currency="EURO")
    assert not (tmp_path / "borgo" / "community.yaml").exists()
    _init(tmp_path)
    with pytest.raises(ConfigError, match="never overwrites"):
        _init(tmp_path)


def _workbook(tmp_path: Path, edit) -> Path:
    config = _init(tmp_path)
    _fill(config)
    path = config.parent / "master_data.xlsx"
    wb = openpyxl.load_workbook(path)
    edit(wb)
    wb.save(path)
    return config


def _append_member(wb, member_id="M02"):
    ws = wb["members"]
    ws.append([member_id, "Second", "household", ws.cell(2, 4).value, None, 0.0, None])
    wb["metering_points"].append([f"MP-{member_id}-C", member_id, "consumption"])


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda wb: _append_member(wb, "M01"), r"sheet 'members' row 3 column 'member_id'.*dup"),
        (
            lambda wb: _append_member(wb, "../x"),
            r"sheet 'members' row 3 column 'member_id'.*unsafe",
        ),
        (
            lambda wb: wb["batteries"].append(["BAT-9", "M09", 5, 2, 0.9, 0.5, 0.1]),
            r"sheet 'batteries' row 3 column 'member_id'.*battery without a member",
        ),
        (
            lambda wb: wb["metering_points"].append(["MP-M01-C", "M01", "consumption"]),
            r"sheet 'metering_points' row 4 column 'metering_point_id'.*duplicate",
        ),
        (
            lambda wb: wb["batteries"].cell(2, 3, -5),
            r"sheet 'batteries' row 2 column 'capacity_kwh'.*greater than 0",
        ),
        (
            lambda wb: wb["metering_points"].cell(3, 3, "export"),
            r"sheet 'metering_points' row 3 column 'direction'",
        ),
        (lambda wb: wb.remove(wb["batteries"]), r"missing sheet 'batteries'"),
        (lambda wb: wb["members"].cell(2, 4, "someday"), r"row 2 column 'joined'.*not a date"),
    ],
)
def test_bad_workbooks_refused_naming_sheet_row_column(tmp_path, edit, pattern):
    config = _workbook(tmp_path, edit)
    with pytest.raises(ConfigError, match=pattern):
        load_config(config)


def test_unsafe_ids_refused_in_yaml_too(demo_config):
    raw = demo_config.model_dump(exclude={"base_dir"})
    raw["members"][0]["id"] = "a/b"
    with pytest.raises(ConfigError, match=r"members\.0\.id.*unsafe id"):
        parse_config(raw)
