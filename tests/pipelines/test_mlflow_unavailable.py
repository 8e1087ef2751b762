"""Reliability item 17: with MLflow unavailable the day is still forecast, planned and settled
(slow: one demo day through Dagster)."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from models.warehouse import Warehouse
from pipelines.cli import _prepare_home, materialise_day

pytestmark = pytest.mark.slow

DAY = dt.date(2017, 6, 14)


def test_a_day_settles_when_mlflow_cannot_be_written(tmp_path, monkeypatch):
    monkeypatch.setenv("ECM_HOME", str(tmp_path))
    monkeypatch.delenv("ECM_CONFIG", raising=False)
    _prepare_home()
    # the tracking folder cannot be created: a file stands where it should be
    (tmp_path / "mlflow").write_text("not a folder")
    ok, errors = materialise_day(DAY)
    assert ok, errors
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    for table in ("forecasts", "dispatch_plan", "realised_flows", "allocations"):
        assert len(wh.read_day(table, DAY)) > 0, table
    # the champion forecasts carry no MLflow run, and the plan is the optimiser's
    fc = wh.read_day("forecasts", DAY)
    assert fc["mlflow_run_id"].isna().all()
    assert set(wh.read_day("dispatch_plan", DAY)["plan_kind"]) == {"optimal"}
    assert os.path.isfile(tmp_path / "mlflow")
