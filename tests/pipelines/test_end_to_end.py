"""End to end: one demo day materialised through Dagster into a temporary ECM_HOME."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest
from materialised import materialised_home

from models.contracts import TABLES
from models.warehouse import Warehouse
from pipelines.cli import materialise_day

DAY = dt.date(2017, 6, 14)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with materialised_home(tmp_path_factory.mktemp("ecm_home"), DAY) as path:
        yield path


@pytest.fixture(scope="module")
def wh(home):
    return Warehouse(home / "warehouse.duckdb")


def test_every_table_has_rows_for_the_day(wh):
    counts = wh.row_counts()
    assert set(counts) == set(TABLES) and len(counts) == 25
    # only corrections write the history, conflicting files the quarantine, `ecm backtest` the
    # backtests, operators the plan decisions (auto-approve is off) and `ecm token` the tokens
    rare = (
        "meter_readings_history",
        "quarantined_readings",
        "backtests",
        "plan_decisions",
        "api_tokens",
        "flexible_plan",  # the demo has no flexible loads
        "anomaly_case_events",  # only `ecm triage` changes
    )
    for name, n in counts.items():
        if name not in rare:
            assert n > 0, name
    for name, t in TABLES.items():
        if t.partition and name not in rare:
            assert len(wh.read_day(name, DAY)) > 0, name


def test_dispatch_plan_balance_soc_and_flows(wh):
    p = wh.read_day("dispatch_plan", DAY)
    bal = (p.load_kwh - p.pv_kwh + p.charge_kwh - p.discharge_kwh) - (p.import_kwh - p.export_kwh)
    assert np.abs(bal).max() < 1e-6
    assert (p.soc_kwh >= 0).all()
    for c in ("load_kwh", "pv_kwh", "charge_kwh", "discharge_kwh", "import_kwh", "export_kwh"):
        assert (p[c] >= 0).all(), c
    assets = wh.read("assets").set_index("owner_id")
    bats = assets[assets.asset_type == "battery"]
    cap = p.member_id.map(bats.capacity_kwh).fillna(0)
    assert (p.soc_kwh <= cap + 1e-6).all()
    assert set(p.scenario) >= {"expected", "s0"}
    assert p.plan_kind.eq("optimal").all()
    assert p.groupby(["member_id", "scenario"]).size().eq(24).all()


def test_allocations_two_rules_whole_cents_same_total(wh):
    a = wh.read_day("allocations", DAY)
    assert set(a.rule) == {"pro_rata_consumption", "shapley"}
    for v in a.amount:
        d = Decimal(str(v))
        assert d == d.quantize(Decimal("0.01"))
    totals = a.groupby("rule")["amount"].apply(lambda s: sum(Decimal(str(x)) for x in s))
    assert totals.nunique() == 1
    assert a.explanation.str.len().gt(20).all()
    assert a.groupby("rule").is_settlement.first().to_dict() == {
        "pro_rata_consumption": False,
        "shapley": True,
    }


def test_realised_flows_balance_within_limits_for_every_controller(wh):
    r = wh.read_day("realised_flows", DAY)
    assert set(r.controller) == {"no_battery", "self_consumption", "ecm", "perfect_foresight"}
    assert r.groupby(["controller", "member_id"]).size().eq(24).all()
    bal = (r.load_kwh - r.pv_kwh + r.charge_kwh - r.discharge_kwh) - (r.import_kwh - r.export_kwh)
    assert np.abs(bal).max() < 1e-9
    assert ((r.import_kwh == 0) | (r.export_kwh == 0)).all()
    assets = wh.read("assets").set_index("owner_id")
    bats = assets[assets.asset_type == "battery"]
    cap = r.member_id.map(bats.capacity_kwh).fillna(0)
    power = r.member_id.map(bats.power_kw).fillna(0)
    assert (r.soc_kwh <= cap + 1e-9).all() and (r.soc_kwh >= -1e-9).all()
    assert (r.charge_kwh <= power + 1e-9).all() and (r.discharge_kwh <= power + 1e-9).all()
    ecm = r[r.controller == "ecm"]
    assert set(ecm["mode"]) <= {"optimised", "fallback_rule"}
    # the metered load and PV are the same for every controller
    piv = r.pivot_table(index=["member_id", "ts"], columns="controller", values="load_kwh")
    assert np.allclose(piv.to_numpy(), piv.to_numpy()[:, :1])


def test_evaluation_rows_and_settlement_on_realised_flows(wh):
    e = wh.read_day("evaluation", DAY).set_index("controller")
    assert set(e.index) == {"no_battery", "self_consumption", "ecm", "perfect_foresight"}
    assert np.allclose(e.net_cost, e.grid_cost - e.incentive)
    assert np.allclose(e.benefit, e.standalone_cost - e.net_cost)
    a = wh.read_day("allocations", DAY)
    r = wh.read_day("realised_flows", DAY)
    ecm_import = r[r.controller == "ecm"].groupby("member_id").import_kwh.sum()
    settled = a[a.is_settlement].set_index("member_id").import_kwh
    assert np.allclose(settled.sort_index(), ecm_import.reindex(settled.index).sort_index())
    amounts = a[a.is_settlement].amount.apply(lambda v: Decimal(str(v)))
    total = sum(amounts, Decimal(0))
    assert abs(float(total) - float(e.loc["ecm", "benefit"])) < 0.01 * 18


def test_forecasts_have_bands_models_and_champion(wh):
    f = wh.read_day("forecasts", DAY)
    assert set(f.target) == {"load", "pv", "price"}
    models = {t: set(g.model) for t, g in f.groupby("target")}
    assert models["load"] == {
        "seasonal_naive",
        "naive_168",
        "profile_level",
        "linear_quantile",
        "lightgbm",
        "ensemble",
    }
    assert models["pv"] == {
        "seasonal_naive",
        "naive_168",
        "clearsky_persistence",
        "lightgbm",
        "ensemble",
    }
    assert set(f.loc[f.target == "load", "unique_id"]) == {f"M{i:02d}" for i in range(1, 18)}
    assert (f.q10 <= f.q50 + 1e-12).all() and (f.q50 <= f.q90 + 1e-12).all()
    assert f.groupby(["target", "unique_id", "ts"]).is_champion.sum().eq(1).all()
    assert f.mlflow_run_id.notna().all()
    assert (f.issue_time < f.ts.min() + np.timedelta64(1, "s")).all()


def test_champions_registered_in_mlflow_with_alias(home):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    for target in ("load", "pv", "price"):
        version = client.get_model_version_by_alias(f"ecm-{target}", "champion")
        assert version.tags["partition"] == DAY.isoformat()
        assert version.tags["model"] in (
            "seasonal_naive",
            "naive_168",
            "clearsky_persistence",
            "profile_level",
            "linear_quantile",
            "lightgbm",
            "ensemble",
        )
        assert version.tags["origin"] <= DAY.isoformat()


def test_scenario_probabilities_sum_to_one(wh):
    s = wh.read_day("scenarios", DAY)
    assert s.groupby("scenario").probability.first().sum() == pytest.approx(1.0)


def test_reports_written(home):
    d = home / "reports" / DAY.isoformat()
    html = (d / "plan.html").read_text()
    assert "plotly" in html.lower()
    assert 'id="realised"' in html and "perfect_foresight" in html
    statements = list((d / "statements").glob("M*.html"))
    assert len(statements) == 17
    assert (home / "mlflow" / "mlflow.db").exists()


def test_rerun_leaves_row_counts_unchanged_and_is_reproducible(wh):
    before = wh.row_counts()
    alloc = wh.read_day("allocations", DAY).sort_values(["rule", "member_id"])
    plan = wh.read_day("dispatch_plan", DAY).sort_values(["member_id", "scenario", "ts"])
    ok, errors = materialise_day(DAY)
    assert ok, errors
    assert wh.row_counts() == before
    again = wh.read_day("allocations", DAY).sort_values(["rule", "member_id"])
    assert list(again.amount) == list(alloc.amount)
    plan2 = wh.read_day("dispatch_plan", DAY).sort_values(["member_id", "scenario", "ts"])
    assert np.allclose(plan2.charge_kwh, plan.charge_kwh, atol=1e-6)


def test_evaluate_cli_fills_tables_carries_soc_and_writes_report(home, wh):
    from typer.testing import CliRunner

    from pipelines.cli import app

    result = CliRunner().invoke(app, ["evaluate", "--start", "2017-06-12", "--end", "2017-06-13"])
    assert result.exit_code == 0, result.output
    r = wh.query(
        "SELECT * FROM realised_flows WHERE day BETWEEN ? AND ?",
        [dt.date(2017, 6, 12), dt.date(2017, 6, 13)],
    )
    assert len(r) == 2 * 4 * 18 * 24
    for c, g in r.groupby("controller"):
        first = g[g.day == dt.date(2017, 6, 12)].sort_values("ts").groupby("member_id").last()
        nxt = g[g.day == dt.date(2017, 6, 13)].sort_values("ts").groupby("member_id").first()
        eta = np.where(nxt.charge_kwh > 0, 0.9**0.5, 1.0)
        start = (
            nxt.soc_kwh
            - eta * nxt.charge_kwh
            + nxt.discharge_kwh / np.where(nxt.discharge_kwh > 0, 0.9**0.5, 1.0)
        )
        assert np.allclose(start, first.soc_kwh.reindex(start.index), atol=1e-6), c
    report = home / "reports" / "evaluation" / "2017-06-12_2017-06-13.html"
    assert report.exists() and "CityLearn" in report.read_text()


def test_evaluate_cli_refuses_missing_meter_data_and_names_it(home, wh):
    from typer.testing import CliRunner

    from pipelines.cli import app

    before = wh.row_counts()
    result = CliRunner().invoke(app, ["evaluate", "--start", "2016-08-02", "--end", "2016-08-03"])
    assert result.exit_code == 2
    assert "2016-08-02" in result.output and "MP-01-C" in result.output
    assert wh.row_counts() == before


def test_corrected_meter_file_is_used_and_never_reverted_by_the_routine_feed(home, wh, tmp_path):
    """The demo's distributor delivers only what is not stored: a correction ingested with
    `ecm ingest meters` survives the next runs, and the replaced readings are kept."""
    import pandas as pd
    from typer.testing import CliRunner

    from pipelines.cli import app

    stored = wh.query(
        "SELECT ts, kwh FROM meter_readings WHERE metering_point_id = 'MP-01-C' AND day = ?",
        [DAY],
    ).sort_values("ts")
    corrected = stored.assign(kwh=(stored["kwh"] * 1.25).round(6))
    v1 = wh.query("SELECT * FROM allocations WHERE day = ? AND version = 1", [DAY])
    assert wh.read_day("settlement_versions", DAY)["version"].tolist() == [1]
    path = tmp_path / "MP-01-C_2017-06-14_corrected.csv"
    pd.DataFrame(
        {
            "metering_point_id": "MP-01-C",
            "ts": [t.isoformat() for t in corrected["ts"]],
            "kwh": corrected["kwh"],
        }
    ).to_csv(path, index=False)
    result = CliRunner().invoke(app, ["ingest", "meters", str(path)])
    assert result.exit_code == 0, result.output
    assert "corrected on 2017-06-14" in result.output.replace("\n", " ")
    # the day is re-settled; then the routine feed runs again (the ingest job): it never
    # delivers over the correction
    for job in ("daily", "ingest"):
        ok, errors = materialise_day(DAY, job)
        assert ok, errors
        now = wh.query(
            "SELECT ts, kwh, source FROM meter_readings "
            "WHERE metering_point_id = 'MP-01-C' AND day = ?",
            [DAY],
        ).sort_values("ts")
        assert np.allclose(now["kwh"], corrected["kwh"]) and set(now["source"]) == {path.name}
    hist = wh.read("meter_readings_history")
    assert len(hist) == len(stored) and np.allclose(hist.sort_values("ts")["kwh"], stored["kwh"])
    # the settled day was recomputed on the corrected readings
    flows = wh.query(
        "SELECT ts, load_kwh FROM realised_flows "
        "WHERE day = ? AND member_id = 'M01' AND controller = 'ecm'",
        [DAY],
    ).sort_values("ts")
    assert np.allclose(flows["load_kwh"], corrected["kwh"])
    # the correction made version 2, with deltas; version 1 is unchanged; the chain holds
    versions = wh.read_day("settlement_versions", DAY).sort_values("version")
    assert versions["version"].tolist() == [1, 2]
    assert versions["reason"].iloc[1] == f"meter data corrected ({path.name})"
    again = wh.query("SELECT * FROM allocations WHERE day = ? AND version = 1", [DAY])
    assert (
        again.sort_values(["rule", "member_id"])["amount"].tolist()
        == v1.sort_values(["rule", "member_id"])["amount"].tolist()
    )
    v2 = wh.query("SELECT * FROM allocations WHERE day = ? AND version = 2", [DAY])
    assert v2["delta"].notna().all() and (v2["delta"].abs() > 0).any()
    verify = CliRunner().invoke(app, ["audit", "verify"])
    assert verify.exit_code == 0 and "intact" in verify.output


def test_no_member_below_acting_alone_on_a_day_that_gains(wh):
    versions = wh.read_day("settlement_versions", DAY)
    for version in versions["version"]:
        rows = wh.query(
            "SELECT * FROM allocations WHERE day = ? AND version = ? AND is_settlement",
            [DAY, int(version)],
        )
        if rows["amount"].sum() >= 0:
            assert rows["amount"].min() >= 0, rows[["member_id", "amount"]]


def test_a_failed_solve_publishes_no_plan_and_leaves_a_labelled_rule_plan(home, wh, monkeypatch):
    """Reliability item 15 through Dagster: the optimiser fails, the day's stored plan is not
    replaced, the run fails naming the termination and the reason, and the rule-based plan
    is written beside it labelled ``fallback`` for the operator."""
    import pandas as pd

    import assets.dispatch as asset_module
    from optimisation.dispatch import DispatchError

    def infeasible(*args, **kwargs):
        raise DispatchError("provenInfeasible", "forced by the test")

    before = wh.read_day("dispatch_plan", DAY)
    monkeypatch.setattr(asset_module, "plan_day", infeasible)
    ok, errors = materialise_day(DAY, "settle")
    assert not ok
    text = " ".join(errors)
    assert "No plan published" in text and "provenInfeasible" in text
    assert "forced by the test" in text
    after = wh.read_day("dispatch_plan", DAY)
    assert len(after) == len(before) and set(after["plan_kind"]) == {"optimal"}
    csv = next((home / "plans").rglob("fallback_plan.csv"))
    fb = pd.read_csv(csv)
    assert set(fb["plan_kind"]) == {"fallback"}
    bal = (
        fb.load_kwh - fb.pv_kwh + fb.charge_kwh - fb.discharge_kwh - (fb.import_kwh - fb.export_kwh)
    )
    assert np.abs(bal).max() < 1e-6


def test_flagged_readings_are_kept_as_delivered(wh, demo_config):
    """Reliability item 5: a meter flag (spike, flat-line, negative) is a flag, never an edit:
    every flagged interval still holds the reading the distributor delivered."""
    import json

    import pandas as pd

    from models import demo

    flags = wh.read_day("anomalies", DAY)
    meter = flags[flags["rule"].isin(["spike", "flatline", "negative"])]
    assert len(meter) > 0  # the demo day has some (the ordinary evening peaks, see #11)
    start, end = meter["ts_start"].min(), meter["ts_end"].max()
    delivered = demo.meter_rows(demo_config, pd.Timestamp(start), pd.Timestamp(end))
    delivered = delivered.set_index(["metering_point_id", "ts"])["kwh"]
    stored = wh.read_day("meter_readings", DAY).set_index(["metering_point_id", "ts"])
    checked = 0
    for _, f in meter.iterrows():
        span = stored.loc[f["subject_id"]]
        span = span[(span.index >= f["ts_start"]) & (span.index < f["ts_end"])]
        for ts, row in span.iterrows():
            assert row["quality"] == "measured"
            assert row["kwh"] == pytest.approx(delivered[(f["subject_id"], ts)], abs=1e-12)
            checked += 1
        assert json.loads(f["evidence"])  # the evidence is there to review
    assert checked >= len(meter)


def test_flags_become_cases_shown_in_the_report_and_triaged(home, wh):
    from typer.testing import CliRunner

    from pipelines.cli import app

    flags = wh.read_day("anomalies", DAY)
    cases = wh.read("anomaly_cases")
    assert len(flags) > 0
    assert len(cases) == flags[["rule", "subject_id"]].drop_duplicates().shape[0]
    assert (cases["status"] == "open").all()
    html = (home / "reports" / str(DAY) / "plan.html").read_text()
    assert 'id="case-counts"' in html and " new" in html
    runner = CliRunner()
    listed = runner.invoke(app, ["triage", "list"])
    assert listed.exit_code == 0 and cases["case_id"].iloc[0] in listed.output
    cid = cases["case_id"].iloc[0]
    r = runner.invoke(
        app, ["triage", "dismiss", cid, "--by", "ops", "--note", "known", "--suppress-days", "7"]
    )
    assert r.exit_code == 0, r.output
    ev = wh.read("anomaly_case_events")
    assert ev[["case_id", "actor", "action", "to_status"]].values.tolist() == [
        [cid, "ops", "dismiss", "dismissed"]
    ]
