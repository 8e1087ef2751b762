"""A parallel backfill writes the rows a sequential one writes (slow: two 4-day backfills)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
START, END = "2017-06-12", "2017-06-15"

VOLATILE = {
    # when something happened, not what
    "ingested_at",
    "received_at",
    "created_at",
    "recorded_at",
    "run_at",
    "superseded_at",
    "updated_at",
    "seconds",
    "mlflow_run_id",
    # the audit chain hashes its entries' times
    "hash",
    "prev_hash",
}


def _backfill(home: Path, workers: int) -> None:
    env = {**os.environ, "ECM_HOME": str(home)}
    env.pop("ECM_CONFIG", None)
    ecm = str(Path(sys.executable).parent / "ecm")
    args = [ecm, "backfill", "--start", START, "--end", END, "--workers", str(workers)]
    r = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr


def _tables(home: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    out = {}
    for (t,) in con.execute("SHOW TABLES").fetchall():
        cols = [c for (c, *_) in con.execute(f"DESCRIBE {t}").fetchall() if c not in VOLATILE]
        quoted = ", ".join('"' + c + '"' for c in cols)
        df = con.execute(f"SELECT {quoted} FROM {t}").df()
        if "moved_to" in df:  # a path inside each home
            df["moved_to"] = df["moved_to"].str.replace(str(home), "$ECM_HOME", regex=False)
        out[t] = df.sort_values(cols).reset_index(drop=True) if len(df) else df
    con.close()
    return out


def test_two_workers_write_the_rows_of_one_worker(tmp_path: Path) -> None:
    _backfill(tmp_path / "sequential", 1)
    _backfill(tmp_path / "parallel", 2)
    seq, par = _tables(tmp_path / "sequential"), _tables(tmp_path / "parallel")
    assert seq.keys() == par.keys()
    for name in seq:
        pd.testing.assert_frame_equal(seq[name], par[name], obj=name)
    assert len(seq["realised_flows"]) > 0 and seq["evaluation"]["day"].nunique() == 4
