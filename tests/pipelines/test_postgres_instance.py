"""The production Dagster instance: a daily run stored in PostgreSQL (``make test-postgres``).

Runs only when ``ECM_DAGSTER_PG_URL`` names a server (``make test-postgres`` starts one);
each test works in a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("ECM_DAGSTER_PG_URL"), reason="ECM_DAGSTER_PG_URL is not set"
    ),
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_url() -> str:
    """A fresh database on the server of ECM_DAGSTER_PG_URL; its URL."""
    import psycopg2
    from psycopg2.extensions import ISOLATION_LEVEL_AUTOCOMMIT

    base = os.environ["ECM_DAGSTER_PG_URL"]
    name = f"ecm_test_{uuid.uuid4().hex[:10]}"
    con = psycopg2.connect(_libpq(base))
    con.set_isolation_level(ISOLATION_LEVEL_AUTOCOMMIT)
    con.cursor().execute(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name
    yield url
    con.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    con.close()


def _libpq(url: str) -> str:
    """The SQLAlchemy URL (postgresql+psycopg2://...) as libpq takes it."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _ecm(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "ecm"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_daily_run_is_stored_in_postgres_and_read_back(tmp_path: Path, pg_url: str) -> None:
    import dagster as dg
    import psycopg2
    from dagster_postgres import PostgresRunStorage

    env = {**os.environ, "ECM_HOME": str(tmp_path / "home"), "ECM_DAGSTER_PG_URL": pg_url}
    env.pop("ECM_CONFIG", None)
    r = _ecm(["run", "--date", "2017-06-14"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    dagster_home = tmp_path / "home" / "dagster"
    yaml_text = (dagster_home / "dagster.yaml").read_text()
    assert "postgres_url" in yaml_text and "ECM_DAGSTER_PG_URL" in yaml_text

    # the run, its steps and the day's materialisations are rows of the PostgreSQL database
    with psycopg2.connect(_libpq(pg_url)) as con, con.cursor() as cur:
        cur.execute("SELECT run_id, status FROM runs")
        runs = cur.fetchall()
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        )
        n_mat = cur.fetchone()[0]
    assert [s for _, s in runs] == ["SUCCESS"]
    assert n_mat >= 10
    assert not (dagster_home / "history").exists()  # no SQLite run storage beside it

    # the instance Dagster loads from DAGSTER_HOME reads the same runs
    old = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "ECM_DAGSTER_PG_URL")}
    os.environ.update(DAGSTER_HOME=str(dagster_home), ECM_DAGSTER_PG_URL=pg_url)
    try:
        with dg.DagsterInstance.get() as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            (run,) = instance.get_runs()
            assert run.run_id == runs[0][0] and run.tags["dagster/partition"] == "2017-06-14"
            mat = instance.get_latest_materialization_event(dg.AssetKey("allocations"))
            assert mat is not None and mat.run_id == run.run_id
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    # a second day's run appends to the same database
    r = _ecm(["run", "--date", "2017-06-15"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    with psycopg2.connect(_libpq(pg_url)) as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        assert cur.fetchone()[0] == 2
