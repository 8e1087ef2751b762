"""`ecm ingest meters`: atomic import, refusal leaves the warehouse unchanged."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from models.warehouse import Warehouse
from pipelines.cli import app

runner = CliRunner()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ECM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    return tmp_path / "home"


def test_help_lists_commands():
    out = runner.invoke(app, ["--help"]).output
    for cmd in ("demo", "run", "backfill", "ingest", "dev"):
        assert cmd in out


def test_ingest_good_then_malformed_file(home, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(
        "metering_point_id,ts,kwh\n"
        + "".join(f"MP-01-C,2017-06-14T{h:02d}:00:00Z,{h / 10}\n" for h in range(7, 24))
    )
    r = runner.invoke(app, ["ingest", "meters", str(good)])
    assert r.exit_code == 0, r.output
    wh = Warehouse(home / "warehouse.duckdb")
    before = wh.row_counts()
    assert before["meter_readings"] == 17
    # Re-importing the same file is a no-op on counts (upsert by metering point and interval).
    assert runner.invoke(app, ["ingest", "meters", str(good)]).exit_code == 0
    assert wh.row_counts() == before
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "metering_point_id,ts,kwh\nMP-01-C,2017-06-15T07:00:00Z,0.4\n"
        "MP-01-C,2017-06-15T08:00:00Z,oops\n"
    )
    r = runner.invoke(app, ["ingest", "meters", str(bad)])
    assert r.exit_code == 2
    assert "bad.csv" in r.output and "row 3" in r.output and "kwh" in r.output
    assert wh.row_counts() == before


def test_run_rejects_a_day_outside_the_data(home):
    r = runner.invoke(app, ["run", "--date", "2030-01-01"])
    assert r.exit_code == 2
