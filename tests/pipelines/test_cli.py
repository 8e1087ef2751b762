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
    after = wh.row_counts()
    assert after.pop("inbox_files") == before.pop("inbox_files") + 1  # the refusal, recorded
    assert after == before
    rejected = wh.read("inbox_files").set_index("file_name").loc["bad.csv"]
    assert rejected["status"] == "rejected" and "row 3" in rejected["error"]


def test_run_rejects_a_day_outside_the_data(home):
    r = runner.invoke(app, ["run", "--date", "2030-01-01"])
    assert r.exit_code == 2


def test_init_creates_a_community_the_cli_then_works_on(tmp_path, monkeypatch):
    folder = tmp_path / "borgo"
    args = ["init", str(folder), "--name", "Borgo Solare", "--timezone", "Europe/Rome"]
    args += ["--latitude", "45.07", "--longitude", "7.69", "--currency", "EUR"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (folder / "community.yaml").exists() and (folder / "inbox" / "meters").is_dir()
    assert runner.invoke(app, args).exit_code == 2  # never overwrites
    other = [args[0], str(tmp_path / "other"), *args[2:4], "--timezone", "Mars/Olympus"]
    bad = runner.invoke(app, [*other, *args[6:]])
    assert bad.exit_code == 2 and "timezone" in bad.output
    text = (folder / "community.yaml").read_text()
    text = text.replace('"TO FILL IN"', '"Assemblea"', 1).replace('"TO FILL IN"', "A-1", 1)
    (folder / "community.yaml").write_text(text)
    monkeypatch.setenv("ECM_CONFIG", str(folder / "community.yaml"))
    monkeypatch.delenv("ECM_HOME", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(folder / ".ecm" / "dagster"))
    r = runner.invoke(app, ["status"])
    assert r.exit_code == 0, r.output
    assert (folder / ".ecm" / "warehouse.duckdb").exists()  # the community's own warehouse
    meters = tmp_path / "m.csv"
    meters.write_text("metering_point_id,ts,kwh\nMP-M01-C,2026-11-25T00:00:00+01:00,0.4\n")
    r = runner.invoke(app, ["ingest", "meters", str(meters)])
    assert r.exit_code == 0, r.output


def test_the_environment_selects_the_dagster_instance(tmp_path, monkeypatch):
    from pipelines.cli import INSTANCE_TEMPLATES, _select_instance

    target = tmp_path / "dagster.yaml"
    monkeypatch.delenv("ECM_DAGSTER_PG_URL", raising=False)
    _select_instance(target)
    assert target.read_bytes() == INSTANCE_TEMPLATES["sqlite"].read_bytes()
    monkeypatch.setenv("ECM_DAGSTER_PG_URL", "postgresql://u:p@localhost:5432/d")
    _select_instance(target)  # the environment now selects PostgreSQL: switched
    assert target.read_bytes() == INSTANCE_TEMPLATES["postgres"].read_bytes()
    target.write_text("telemetry:\n  enabled: false\n")  # the operator's own
    _select_instance(target)
    assert target.read_text() == "telemetry:\n  enabled: false\n"
    monkeypatch.delenv("ECM_DAGSTER_PG_URL")
    _select_instance(target)
    assert target.read_text() == "telemetry:\n  enabled: false\n"


def test_bench_dispatch_prints_one_json_line_with_the_lp_size():
    import json

    r = runner.invoke(
        app, ["bench", "dispatch", "--members", "6", "--intervals", "12", "--scenarios", "3"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert set(out) >= {
        "members",
        "intervals",
        "scenarios",
        "variables",
        "build_s",
        "solve_s",
        "total_s",
        "status",
        "objective",
    }
    p, t, s = 6, 12, 3
    # battery charge, discharge, SoC per member and interval; import and export per
    # scenario, member and interval; shared energy per scenario and interval
    assert out["variables"] == 3 * p * t + 2 * s * p * t + s * t
    assert out["status"] == "optimal" and out["objective"] is not None
    assert out["total_s"] == pytest.approx(out["build_s"] + out["solve_s"], abs=0.02)
    r = runner.invoke(app, ["bench", "dispatch", "--members", "0"])
    assert r.exit_code != 0


def test_bench_allocation_prints_one_json_line():
    import json

    r = runner.invoke(app, ["bench", "allocation", "--players", "12", "--permutations", "400"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["players"] == 12 and out["method"] == "exact" and out["max_rel_error"] < 0.01
    r = runner.invoke(app, ["bench", "allocation", "--players", "300", "--permutations", "200"])
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["method"].startswith("sampled") and out["min_amount"] >= 0


def test_dev_binds_the_dagster_ui_to_localhost_only(monkeypatch, tmp_path):
    """Reliability item 24: the UI listens on 127.0.0.1 unless an operator puts a proxy in
    front; the README says how."""
    import subprocess

    from pipelines import cli

    monkeypatch.setenv("ECM_HOME", str(tmp_path))
    seen: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, cwd=None: seen.append(cmd) or 0)
    r = runner.invoke(app, ["dev", "--port", "3101"])
    assert r.exit_code == 0, r.output
    (cmd,) = seen
    assert cmd[cmd.index("-h") + 1] == "127.0.0.1" and cmd[cmd.index("-p") + 1] == "3101"
    readme = (cli.REPO / "README.md").read_text()
    assert "127.0.0.1" in readme and "reverse proxy" in readme
