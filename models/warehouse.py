"""The DuckDB warehouse: schema creation and atomic, idempotent writes.

Every write replaces a slice of a table (a local day, or the whole table for master data)
inside one transaction: delete the slice, insert the new rows, commit. Re-running a day
therefore replaces it exactly, and a failure part-way leaves the previous content intact.
Writers (parallel partitions, a backfill beside the schedule, the CLI) are serialised by a
file lock beside the database, so DuckDB's single-writer rule never surfaces as a lock error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from filelock import FileLock

from models.contracts import TABLES, conform

_ALIAS = "ecm_warehouse"
"""Name under which the warehouse file is attached while a connection is open."""

_INSTANCE_LOCK = threading.RLock()
_INSTANCES: dict[int, duckdb.DuckDBPyConnection] = {}


def _process_instance() -> duckdb.DuckDBPyConnection:
    """This process's in-memory DuckDB instance (one per pid: never shared across a fork)."""
    pid = os.getpid()
    con = _INSTANCES.get(pid)
    if con is None:
        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone = 'UTC'")
        _INSTANCES.clear()
        _INSTANCES[pid] = con
    return con


def _sql_str(path: Path) -> str:
    return str(path).replace("'", "''")


def _conflict_reason(held: pd.DataFrame) -> list[str]:
    """Per held row: the interval's conflicting values and file rows."""
    g = held.groupby(["metering_point_id", "ts"])
    vals = g["kwh"].transform(lambda x: ", ".join(f"{v:g}" for v in x))
    rows = g["file_row"].transform(lambda x: ", ".join(str(int(v)) for v in x))
    return [
        f"interval delivered {n} times with different values ({v} kWh, rows {r})"
        for n, v, r in zip(g["kwh"].transform("size"), vals, rows, strict=True)
    ]


class Warehouse:
    """Access to the DuckDB warehouse file.

    Parameters
    ----------
    path : str or Path
        The DuckDB file, e.g. ``$ECM_HOME/warehouse.duckdb``.
    lock_timeout_s : float
        How long a writer waits for another one [s].
    """

    def __init__(self, path: str | Path, lock_timeout_s: float = 600.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout_s)

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection, held under the warehouse lock, with UTC as time zone.

        The file is attached to this process's in-memory DuckDB instance for the duration
        and detached afterwards (which releases DuckDB's own lock on the file, so other
        processes can open it): 2 ms instead of the 15-30 ms of creating a DuckDB instance per
        connection, which a day's run did about 120 times.
        """
        with self._lock, _INSTANCE_LOCK:
            con = _process_instance()
            con.execute(f"ATTACH '{_sql_str(self.path)}' AS {_ALIAS}")
            try:
                con.execute(f"USE {_ALIAS}")
                yield con
            finally:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")  # only if a transaction was left open
                con.execute("USE memory")
                con.execute(f"DETACH {_ALIAS}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside one transaction: committed at the end, rolled back on error."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def init_schema(self) -> None:
        """Create every table of :data:`models.contracts.TABLES` that does not exist yet, and
        add to existing tables the columns a newer ECM version introduced.

        A warehouse written by an earlier version thus keeps its rows: a new column is added
        as nullable (DuckDB cannot add ``NOT NULL`` columns to filled tables), in one
        transaction with the rest of the migration.
        """
        with self.connect() as con:
            if _missing_columns(con) == set():
                return  # the usual case: one catalogue query, no DDL
            con.execute("BEGIN TRANSACTION")
            try:
                for table in TABLES.values():
                    con.execute(table.ddl())
                for table_name, column in sorted(_missing_columns(con)):
                    c = next(x for x in TABLES[table_name].columns if x.name == column)
                    con.execute(f'ALTER TABLE {table_name} ADD COLUMN "{c.name}" {c.sql}')
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a parameterised query and return a DataFrame (timestamps tz-aware UTC)."""
        with self.connect() as con:
            df = con.execute(sql, list(params or [])).df()
        return _normalise(df)

    def read(self, table: str, where: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Read a table, optionally filtered by equality on columns (parameterised)."""
        t = TABLES[table]
        clauses, params = _where(t.column_names, where)
        cols = ", ".join(f'"{c}"' for c in t.column_names)
        return self.query(f"SELECT {cols} FROM {t.name}{clauses}", params)  # noqa: S608

    def read_day(self, table: str, day: dt.date) -> pd.DataFrame:
        """Rows of one local day (partition)."""
        return self.read(table, {"day": day})

    def replace(self, table: str, df: pd.DataFrame, where: Mapping[str, Any] | None = None) -> int:
        """Atomically replace the rows matching ``where`` by ``df``.

        Parameters
        ----------
        table : str
            Table name from :data:`models.contracts.TABLES`.
        df : DataFrame
            New rows; validated against the table's contract first.
        where : mapping, optional
            Equality filter defining the slice to replace (e.g. ``{"day": day}``). ``None``
            replaces the whole table (master data).

        Returns
        -------
        int
            Number of rows written.
        """
        t = TABLES[table]
        df = conform(table, df)
        if where:
            for col, val in where.items():
                bad = df[col] != val
                if bad.any():
                    raise ValueError(
                        f"{table}: {int(bad.sum())} rows outside the slice {col}={val}"
                    )
        clauses, params = _where(t.column_names, where)
        return self._swap(table, df, f"DELETE FROM {t.name}{clauses}", params)  # noqa: S608

    def replace_many(
        self, frames: Sequence[tuple[str, pd.DataFrame]], where: Mapping[str, Any]
    ) -> list[int]:
        """Replace the ``where`` slice of several tables in one transaction (all or nothing).

        Returns
        -------
        list of int
            Rows written per table, in order.
        """
        checked = []
        for table, df in frames:
            t = TABLES[table]
            df = conform(table, df)
            for col, val in where.items():
                if (df[col] != val).any():
                    raise ValueError(f"{table}: rows outside the slice {col}={val}")
            checked.append((t, df, *_where(t.column_names, where)))
        with self.transaction() as con:
            for t, df, clauses, params in checked:
                cols = ", ".join(f'"{c}"' for c in t.column_names)
                con.register("_ecm_new_rows", df)
                con.execute(f"DELETE FROM {t.name}{clauses}", list(params))  # noqa: S608
                con.execute(
                    f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM _ecm_new_rows"  # noqa: S608
                )
                con.unregister("_ecm_new_rows")
        return [len(df) for _, df, _, _ in checked]

    def replace_days(self, table: str, df: pd.DataFrame, days: Sequence[dt.date]) -> int:
        """Atomically replace whole local days of a day-partitioned table by ``df``.

        Every row of ``df`` must fall on one of ``days``; days without rows end up empty.
        """
        t = TABLES[table]
        df = conform(table, df)
        days = sorted(set(days))
        outside = ~df["day"].isin(days)
        if outside.any():
            raise ValueError(f"{table}: {int(outside.sum())} rows outside the days written")
        marks = ", ".join("?" for _ in days)
        return self._swap(table, df, f"DELETE FROM {t.name} WHERE day IN ({marks})", days)  # noqa: S608

    def days_present(self, table: str, first: dt.date, last: dt.date) -> set[dt.date]:
        """Local days in [first, last] with at least one row in ``table``."""
        df = self.query(
            f"SELECT DISTINCT day FROM {TABLES[table].name} "  # noqa: S608
            "WHERE day BETWEEN ? AND ?",
            [first, last],
        )
        return {pd.Timestamp(d).date() for d in df["day"]}

    def upsert(self, table: str, df: pd.DataFrame, key: Sequence[str]) -> int:
        """Insert or replace rows by ``key``, atomically."""
        t = TABLES[table]
        df = conform(table, df)
        for k in key:
            if k not in t.column_names:
                raise KeyError(f"unknown column {k!r}")
        on = " AND ".join(f'{t.name}."{k}" = n."{k}"' for k in key)
        return self._swap(
            table,
            df,
            f"DELETE FROM {t.name} USING _ecm_new_rows n WHERE {on}",  # noqa: S608
            [],
        )

    def upsert_readings(self, df: pd.DataFrame) -> int:
        """Insert or replace meter readings by (metering point, interval), atomically."""
        df = conform("meter_readings", df)
        return self._swap(
            "meter_readings",
            df,
            "DELETE FROM meter_readings USING _ecm_new_rows n "
            "WHERE meter_readings.metering_point_id = n.metering_point_id "
            "AND meter_readings.ts = n.ts",
            [],
        )

    INBOX_KEYS = {
        "meters": ("meter_readings", ("metering_point_id", "ts")),
        "prices": ("prices", ("ts", "price_type")),
        "weather": ("weather", ("ts", "issue_time", "kind", "source")),
    }
    """Table and key each inbox kind is stored into."""

    def inbox_status(self, sha256: str) -> str | None:
        """Status of a file in ``inbox_files`` (processed | rejected), or None if never seen."""
        df = self.query("SELECT status FROM inbox_files WHERE sha256 = ?", [sha256])
        return None if df.empty else str(df["status"].iloc[0])

    def record_inbox_file(self, record: Mapping[str, Any]) -> None:
        """Insert or replace one ``inbox_files`` record (a rejected file)."""
        df = conform("inbox_files", pd.DataFrame([dict(record)]))
        self._swap(
            "inbox_files",
            df,
            "DELETE FROM inbox_files USING _ecm_new_rows n WHERE inbox_files.sha256 = n.sha256",
            [],
        )

    def store_inbox_file(
        self, kind: str, rows: pd.DataFrame, record: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Store a validated inbox file and its ``inbox_files`` record in one transaction.

        Stored rows with the same key are replaced. For meter readings, a replaced row whose
        value or quality differs (a correction) is first copied to ``meter_readings_history``
        with the file that replaced it; rows marked ``conflict`` (an interval the file
        delivers twice with different values) are held back in ``quarantined_readings``
        instead, so the interval stays as it was (missing, or its earlier value).

        Returns
        -------
        dict
            ``new_rows``, ``corrected_rows``, ``corrected_days`` (local days) and
            ``quarantined_rows``.
        """
        table, key = self.INBOX_KEYS[kind]
        t = TABLES[table]
        held = rows.iloc[:0]
        if "conflict" in rows.columns:  # meters parsed with on_conflict="quarantine"
            held = rows[rows["conflict"]]
            rows = rows[~rows["conflict"]].drop(columns=["conflict", "file_row"])
        rows = conform(table, rows)
        on = " AND ".join(f"o.{k} = n.{k}" for k in key)
        cols = ", ".join(f'"{c}"' for c in t.column_names)
        with self.transaction() as con:
            con.register("_ecm_new_rows", rows)
            existing = int(
                con.execute(
                    f"SELECT count(*) FROM {table} o JOIN _ecm_new_rows n ON {on}"  # noqa: S608
                ).fetchone()[0]
            )
            corrected = pd.DataFrame(columns=["day"])
            if kind == "meters":
                corrected = con.execute(
                    "SELECT o.*, n.kwh AS new_kwh FROM meter_readings o JOIN _ecm_new_rows n "
                    "ON o.metering_point_id = n.metering_point_id AND o.ts = n.ts "
                    "WHERE o.kwh <> n.kwh OR o.quality <> n.quality"
                ).df()
                if len(corrected):
                    corrected["day"] = [pd.Timestamp(d).date() for d in corrected["day"]]
                    corrected["superseded_at"] = record["received_at"]
                    corrected["superseded_by"] = record["file_name"]
                    hist = conform("meter_readings_history", _normalise(corrected))
                    hcols = ", ".join(
                        f'"{c}"' for c in TABLES["meter_readings_history"].column_names
                    )
                    con.register("_ecm_hist", hist)
                    con.execute(
                        f"INSERT INTO meter_readings_history ({hcols}) "  # noqa: S608
                        f"SELECT {hcols} FROM _ecm_hist"
                    )
                    con.unregister("_ecm_hist")
            if len(held):
                q = conform(
                    "quarantined_readings",
                    held.assign(
                        reason=_conflict_reason(held),
                        quarantined_at=record["received_at"],
                    ),
                )
                qcols = ", ".join(f'"{c}"' for c in TABLES["quarantined_readings"].column_names)
                con.register("_ecm_held", q)
                con.execute(
                    "DELETE FROM quarantined_readings o USING _ecm_held n "
                    "WHERE o.source_sha256 = n.source_sha256 AND o.file_row = n.file_row"
                )
                con.execute(
                    f"INSERT INTO quarantined_readings ({qcols}) "  # noqa: S608
                    f"SELECT {qcols} FROM _ecm_held"
                )
                con.unregister("_ecm_held")
            con.execute(
                f"DELETE FROM {table} o USING _ecm_new_rows n WHERE {on}"  # noqa: S608
            )
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _ecm_new_rows")  # noqa: S608
            con.unregister("_ecm_new_rows")
            days = sorted({pd.Timestamp(d).date() for d in corrected["day"]})
            rec = dict(record)
            rec.update(
                rows=len(rows),
                new_rows=len(rows) - existing,
                corrected_rows=len(corrected),
                corrected_days=",".join(d.isoformat() for d in days),
                quarantined_rows=len(held),
            )
            recdf = conform("inbox_files", pd.DataFrame([rec]))
            con.register("_ecm_rec", recdf)
            con.execute("DELETE FROM inbox_files WHERE sha256 = ?", [rec["sha256"]])
            rcols = ", ".join(f'"{c}"' for c in TABLES["inbox_files"].column_names)
            con.execute(f"INSERT INTO inbox_files ({rcols}) SELECT {rcols} FROM _ecm_rec")  # noqa: S608
            con.unregister("_ecm_rec")
        return {
            "new_rows": len(rows) - existing,
            "corrected_rows": len(corrected),
            "corrected_days": days,
            "quarantined_rows": len(held),
        }

    def insert_missing_readings(self, df: pd.DataFrame) -> int:
        """Insert meter readings only where no reading is stored (estimates never overwrite).

        Returns
        -------
        int
            Rows inserted.
        """
        df = conform("meter_readings", df)
        cols = ", ".join(f'"{c}"' for c in TABLES["meter_readings"].column_names)
        with self.transaction() as con:
            con.register("_ecm_new_rows", df)
            n = int(
                con.execute(
                    f"INSERT INTO meter_readings ({cols}) SELECT {cols} FROM _ecm_new_rows n "  # noqa: S608
                    "WHERE NOT EXISTS (SELECT 1 FROM meter_readings o WHERE "
                    "o.metering_point_id = n.metering_point_id AND o.ts = n.ts)"
                ).fetchone()[0]
            )
            con.unregister("_ecm_new_rows")
        return n

    def _swap(self, table: str, df: pd.DataFrame, delete_sql: str, params: Sequence[Any]) -> int:
        """In one transaction: run ``delete_sql`` (may refer to the new rows as
        ``_ecm_new_rows``), insert ``df``, commit; roll back on any error."""
        t = TABLES[table]
        cols = ", ".join(f'"{c}"' for c in t.column_names)
        with self.transaction() as con:
            con.register("_ecm_new_rows", df)
            con.execute(delete_sql, list(params))
            con.execute(f"INSERT INTO {t.name} ({cols}) SELECT {cols} FROM _ecm_new_rows")  # noqa: S608
            con.unregister("_ecm_new_rows")
        return len(df)

    def row_counts(self) -> dict[str, int]:
        """Row count of every table."""
        with self.connect() as con:
            return {
                name: int(con.execute(f"SELECT count(*) FROM {name}").fetchone()[0])  # noqa: S608
                for name in TABLES
            }


def _where(columns: list[str], where: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    if not where:
        return "", []
    for col in where:
        if col not in columns:
            raise KeyError(f"unknown column {col!r}")
    return " WHERE " + " AND ".join(f'"{c}" = ?' for c in where), list(where.values())


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    for col in df.columns:
        if isinstance(df[col].dtype, pd.DatetimeTZDtype):
            df[col] = df[col].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    return df


def _missing_columns(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(table, column) pairs of :data:`TABLES` absent from the warehouse (all of an absent
    table's)."""
    have = set(
        con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'main'"
        ).fetchall()
    )
    return {(t.name, c.name) for t in TABLES.values() for c in t.columns} - have
