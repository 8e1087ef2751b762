"""Warehouse writes are atomic, idempotent and serialised; SQL is parameterised."""

from __future__ import annotations

import datetime as dt
import threading

import pandas as pd
import pandera.errors
import pytest

from models.warehouse import Warehouse

DAY = dt.date(2017, 6, 14)


def prices(day=DAY, value=0.2, n=24):
    ts = pd.date_range(
        pd.Timestamp(day).tz_localize("UTC") + pd.Timedelta(hours=7), periods=n, freq="h"
    )
    return pd.DataFrame(
        {
            "ts": ts,
            "price_type": "import",
            "price_per_kwh": value,
            "currency": "USD",
            "source": "t",
            "day": day,
        }
    )


@pytest.fixture()
def wh(tmp_path):
    w = Warehouse(tmp_path / "w.duckdb")
    w.init_schema()
    return w


def test_replace_day_is_idempotent(wh):
    wh.replace("prices", prices(), {"day": DAY})
    wh.replace("prices", prices(value=0.3), {"day": DAY})
    df = wh.read_day("prices", DAY)
    assert len(df) == 24 and (df.price_per_kwh == 0.3).all()
    assert str(df.ts.dt.tz) == "UTC"


def test_invalid_rows_leave_stored_data_untouched(wh):
    wh.replace("prices", prices(), {"day": DAY})
    bad = prices(value=-1.0)
    with pytest.raises(pandera.errors.SchemaError):
        wh.replace("prices", bad, {"day": DAY})
    dup = pd.concat([prices(), prices().head(1)])
    with pytest.raises(pandera.errors.SchemaError):
        wh.replace("prices", dup, {"day": DAY})
    assert (wh.read_day("prices", DAY).price_per_kwh == 0.2).all()


def test_failure_inside_the_transaction_rolls_back(wh, monkeypatch):
    wh.replace("prices", prices(), {"day": DAY})
    df = prices(value=0.9)
    df["source"] = None  # NOT NULL violated inside DuckDB, after the DELETE
    import models.warehouse as mw

    monkeypatch.setattr(mw, "conform", lambda table, d: d)
    with pytest.raises(Exception):  # noqa: B017 - DuckDB constraint error
        wh.replace("prices", df, {"day": DAY})
    assert len(wh.read_day("prices", DAY)) == 24


def test_parallel_writers_are_serialised(wh):
    days = [DAY + dt.timedelta(days=i) for i in range(6)]
    errors = []

    def write(d):
        try:
            for _ in range(3):
                wh.replace("prices", prices(day=d), {"day": d})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(d,)) for d in days]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert wh.row_counts()["prices"] == 24 * len(days)


def test_hostile_ids_are_stored_as_data(wh):
    df = pd.DataFrame(
        {
            "member_id": ["x'; drop table members; --"],
            "name": ["n"],
            "kind": ["household"],
            "joined": [DAY],
            "left_on": [None],
            "pv_kwp": [0.0],
            "source_building": [None],
        }
    )
    wh.replace("members", df)
    assert wh.read("members", {"member_id": "x'; drop table members; --"}).shape[0] == 1


def test_a_warehouse_of_an_earlier_version_gains_new_columns_and_keeps_its_rows(tmp_path):
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    # the forecasts table as an earlier ECM wrote it: without weather_basis
    con.execute("CREATE TABLE forecasts (target VARCHAR, day DATE, q50 DOUBLE)")
    con.execute("INSERT INTO forecasts VALUES ('load', DATE '2017-06-14', 1.5)")
    con.close()
    wh = Warehouse(path)
    wh.init_schema()
    cols = set(wh.query("SELECT * FROM forecasts").columns)
    assert {"weather_basis", "is_champion", "q50"} <= cols
    assert wh.query("SELECT q50 FROM forecasts")["q50"].tolist() == [1.5]
    wh.init_schema()  # idempotent


def test_a_hostile_warehouse_path_and_file_name_are_data(tmp_path):
    """A quote in $ECM_HOME (the file is attached by path) and an inbox file named like SQL:
    both stay data; the tables are intact."""
    from models.inbox import InboxContext, process_inbox
    from models.meters import MeteringPointInfo

    home = tmp_path / "o'brien; DETACH ecm_warehouse; --"
    wh = Warehouse(home / "warehouse.duckdb")
    wh.init_schema()
    inbox = home / "inbox"
    name = "x'; DROP TABLE meter_readings; --.csv"
    (inbox / "meters").mkdir(parents=True)
    rows = "\n".join(f"MP-1,2021-06-01T{h:02d}:00:00+00:00,0.5" for h in range(3))
    (inbox / "meters" / name).write_text("metering_point_id,ts,kwh\n" + rows + "\n")
    ctx = InboxContext(
        tz="UTC",
        currency="EUR",
        interval_minutes=60,
        metering_points={"MP-1": MeteringPointInfo("A", 60, dt.date(2021, 1, 1))},
    )
    out = process_inbox(
        inbox,
        ctx,
        status_of=wh.inbox_status,
        store=wh.store_inbox_file,
        record=wh.record_inbox_file,
    )
    assert [(o.status, o.rows) for o in out] == [("processed", 3)]
    stored = wh.query("SELECT source FROM meter_readings")
    assert stored["source"].tolist() == [name] * 3
    assert wh.query("SELECT file_name FROM inbox_files")["file_name"].tolist() == [name]
    assert (home / "warehouse.duckdb").exists()
