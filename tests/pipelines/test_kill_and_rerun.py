"""A run killed with SIGKILL mid-way, then re-run, leaves the tables of a clean run (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from warehouse_compare import warehouse_tables

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DAY = "2017-06-14"


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "ECM_HOME": str(home)}
    env.pop("ECM_CONFIG", None)
    return env


def _ecm() -> str:
    return str(Path(sys.executable).parent / "ecm")


def _run(home: Path) -> None:
    r = subprocess.run(
        [_ecm(), "run", "--date", DAY],
        cwd=REPO,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("kill_after_s", [6.0, 20.0])
def test_kill_9_mid_run_then_rerun_equals_a_clean_run(tmp_path: Path, kill_after_s: float):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [_ecm(), "run", "--date", DAY],
        cwd=REPO,
        env=_env(killed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(kill_after_s)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _run(killed)  # the operator re-runs the day
    clean = tmp_path / "clean"
    _run(clean)
    got, want = warehouse_tables(killed), warehouse_tables(clean)
    assert got.keys() == want.keys()
    for name in want:
        if name == "inbox_files":  # a file taken before the kill is not taken twice
            assert set(got[name]["sha256"]) == set(want[name]["sha256"])
            continue
        assert got[name].equals(want[name]), name
