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

    _assert_password_written_nowhere(pg_url, tmp_path / "home", r.stdout + r.stderr)

    # a second day's run appends to the same database
    r = _ecm(["run", "--date", "2017-06-15"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    with psycopg2.connect(_libpq(pg_url)) as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        assert cur.fetchone()[0] == 2


def _assert_password_written_nowhere(pg_url: str, home: Path, output: str) -> None:
    """Reliability item 25: the database password (random per ``make test-postgres``) is in
    no output, no Dagster event or run record, no MLflow record or artifact, no warehouse row
    (materialisation metadata included) and no report."""
    from urllib.parse import urlsplit

    import duckdb
    import psycopg2

    secret = urlsplit(pg_url).password or ""
    assert len(secret) >= 12, "postgres_up.sh gives a random password; set a long one"
    assert secret not in output
    with psycopg2.connect(_libpq(pg_url)) as con, con.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [t for (t,) in cur.fetchall()]
        assert {"runs", "event_logs"} <= set(tables)
        for t in tables:
            cur.execute(f"SELECT count(*) FROM {t} x WHERE x::text LIKE %s", [f"%{secret}%"])
            assert cur.fetchone()[0] == 0, f"the password is in PostgreSQL table {t}"
    scanned = 0
    for f in home.rglob("*"):
        if not f.is_file():
            continue
        if f.suffix == ".duckdb":  # compressed pages: search the rows, not the bytes
            con = duckdb.connect(str(f), read_only=True)
            for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                n = con.execute(
                    f'SELECT count(*) FROM "{t}" x WHERE CAST(x AS VARCHAR) LIKE ?',
                    [f"%{secret}%"],
                ).fetchone()[0]
                assert n == 0, f"the password is in warehouse table {t}"
            con.close()
        else:
            assert secret.encode() not in f.read_bytes(), f"the password is in {f}"
        scanned += 1
    assert scanned > 20  # reports, the MLflow store and its artifacts, the instance file
