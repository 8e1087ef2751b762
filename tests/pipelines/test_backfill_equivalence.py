"""A parallel backfill writes the rows a sequential one writes (slow: two 4-day backfills)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from warehouse_compare import warehouse_tables

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
START, END = "2017-06-12", "2017-06-15"


def _backfill(home: Path, workers: int) -> None:
    env = {**os.environ, "ECM_HOME": str(home)}
    env.pop("ECM_CONFIG", None)
    ecm = str(Path(sys.executable).parent / "ecm")
    args = [ecm, "backfill", "--start", START, "--end", END, "--workers", str(workers)]
    r = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr


def test_two_workers_write_the_rows_of_one_worker(tmp_path: Path) -> None:
    _backfill(tmp_path / "sequential", 1)
    _backfill(tmp_path / "parallel", 2)
    seq, par = warehouse_tables(tmp_path / "sequential"), warehouse_tables(tmp_path / "parallel")
    assert seq.keys() == par.keys()
    for name in seq:
        pd.testing.assert_frame_equal(seq[name], par[name], obj=name)
    assert len(seq["realised_flows"]) > 0 and seq["evaluation"]["day"].nunique() == 4
