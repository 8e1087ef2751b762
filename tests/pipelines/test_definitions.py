"""The Dagster Definitions load and wire every stage."""

import dagster as dg

from pipelines.definitions import defs

EXPECTED_ASSETS = {
    "master_data",
    "inbox_files",
    "meter_readings",
    "weather",
    "prices",
    "forecasts",
    "scenarios",
    "dispatch_plan",
    "allocations",
    "anomalies",
    "reports",
    "realised_flows",
    "evaluation",
    "monthly_bills",
}


def test_definitions_load_with_all_assets_checks_job_and_schedule():
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == EXPECTED_ASSETS
    checks = {k.name for k in repo.asset_graph.asset_check_keys}
    assert {
        "meter_readings_complete",
        "meter_readings_unique_and_plausible",
        "prices_complete_and_in_unit",
        "weather_forecast_available",
    } <= checks
    job = defs.resolve_job_def("daily")
    assert job.partitions_def is not None
    assert defs.resolve_schedule_def("daily_schedule").cron_schedule == "0 6 * * *"
    evaluate = defs.resolve_job_def("evaluate")
    assert {k.to_user_string() for k in evaluate.asset_layer.executable_asset_keys} == {
        "master_data",
        "prices",
        "realised_flows",
        "evaluation",
    }


def test_settlement_depends_on_the_real_time_layer():
    graph = defs.get_repository_def().asset_graph
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("allocations")).parent_keys}
    assert "realised_flows" in parents


def test_blocking_checks_stand_before_money():
    """Meter data and prices block; a missing weather forecast only warns (the forecasters
    fall back to clear-sky physics)."""
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    for key in graph.asset_check_keys:
        blocking = graph.get_check_spec(key).blocking
        assert blocking == (key.name != "weather_forecast_available"), key


def test_partitions_are_local_days_with_dst():
    job = defs.resolve_job_def("daily")
    pd_ = job.partitions_def
    assert isinstance(pd_, dg.DailyPartitionsDefinition)
    assert pd_.timezone == "America/Los_Angeles"
    keys = pd_.get_partition_keys()
    assert keys[0] == "2016-08-01" and keys[-1] == "2017-07-31"


def test_every_asset_has_description_group_owners_kinds_and_daily_freshness():
    from pathlib import Path

    import yaml

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.description and len(node.description) > 20, name
        assert node.group_name and node.group_name != "default", name
        assert node.owners and all(o.startswith("team:") for o in node.owners), name
        assert node.kinds, name
        policy = node.freshness_policy
        if name == "monthly_bills":
            assert policy is None
        else:
            assert type(policy).__name__ == "CronFreshnessPolicy", name
            assert policy.deadline_cron == "0 9 * * *"
    root = Path(__file__).resolve().parents[2]
    for f in ("dagster.yaml", "dagster.postgres.yaml"):
        assert yaml.safe_load((root / f).read_text())["freshness"] == {"enabled": True}, f


def test_dagster_finds_the_definitions_from_the_project_root():
    """`dagster dev` from the root loads the code location named in pyproject.toml."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    exe = Path(sys.executable).parent / "dagster"
    run = subprocess.run(
        [str(exe), "definitions", "validate"], cwd=root, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Validation successful for code location ecm" in run.stdout + run.stderr
