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
