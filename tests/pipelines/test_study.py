"""``ecm study italian-rec``: the four scenarios of the Italian case study as a command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    home = tmp_path_factory.mktemp("study")
    env = {**os.environ, "ECM_HOME": str(home)}
    r = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "study", "italian-rec", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout), home


def test_json_is_one_object_with_the_four_scenarios(study):
    out, _ = study
    rows = out["scenarios"]
    assert [r["scenario"] for r in rows] == [0, 1, 2, 3]
    assert [(r["hvac_optimised"], r["battery_optimised"]) for r in rows] == [
        (False, False),
        (True, False),
        (False, True),
        (True, True),
    ]
    keys = {"revenue", "final_cost", "comfort_violations", "members_worse_off"}
    assert all(keys <= set(r) for r in rows)


def test_optimising_both_costs_members_less_inside_the_comfort_band(study):
    rows = {r["scenario"]: r for r in study[0]["scenarios"]}
    assert rows[3]["final_cost"] < rows[1]["final_cost"] < rows[0]["final_cost"]
    assert rows[3]["final_cost"] < rows[2]["final_cost"] < rows[0]["final_cost"]
    assert rows[2]["revenue"] > rows[0]["revenue"]  # batteries move PV into the evening
    assert all(r["comfort_violations"] == 0 for r in rows.values())
    assert all(r["members_worse_off"] == 0 for r in rows.values())


def test_the_report_has_the_tables_and_a_temperature_plot_per_scenario(study):
    _, home = study
    folder = home / "reports" / "studies" / "italian-rec"
    html = (folder / "index.html").read_text()
    assert 'id="scenarios"' in html and 'id="members"' in html
    assert all(f'id="temps-{k}"' in html for k in range(4))
    assert (folder / "plotly.min.js").exists() and 'src="plotly.min.js"' in html


def test_member_costs_add_up_to_the_final_cost_and_scenario_0_is_the_baseline():
    from models import italian_rec as rec
    from optimisation.study import run_study

    results = run_study(rec.study_data(), **rec.SETTINGS)
    for r in results:
        assert sum(r.member_cost.values()) == pytest.approx(r.final_cost, abs=1e-6)
        assert set(r.temperatures["member_id"]) == set(rec.APARTMENTS)
    assert results[0].members_worse_off == 0
    # the thermostat's apartments sit at its set-point; the planned ones use the band
    thermo = results[0].temperatures["indoor_temp_c"]
    planned = results[1].temperatures["indoor_temp_c"]
    band_top = rec.HVAC["t_max_c"] + 0.05  # the comfort tolerance of a violation
    assert thermo.max() < band_top and planned.max() <= band_top
    assert planned.mean() > thermo.mean()  # it lets the rooms float up to the band


def test_bench_flexible_plans_hvac_batteries_and_evs_in_one_lp():
    """``ecm bench flexible``: ten apartments, 96 quarter-hours, 10 scenarios, three EVs; every
    EV reaches its need and every dwelling stays in its band (the time is a benchmark's)."""
    r = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "bench", "flexible"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert (out["members"], out["intervals"], out["scenarios"], out["evs"]) == (10, 96, 10, 3)
    assert out["status"] == "optimal" and out["comfort_violations"] == 0
    assert out["ev_shortfall_kwh"] == 0.0
    assert (
        out["total_s"] == out["build_s"] + out["solve_s"]
        or abs(out["total_s"] - out["build_s"] - out["solve_s"]) < 0.02
    )
