"""Warehouse tables of an ECM home, normalised for comparing two homes row for row."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

VOLATILE = {
    # when something happened, not what
    "ingested_at",
    "received_at",
    "created_at",
    "recorded_at",
    "run_at",
    "superseded_at",
    "updated_at",
    "changed_at",
    "seconds",
    "mlflow_run_id",
    "settled_in_run",
    # the audit chain hashes its entries' times
    "hash",
    "prev_hash",
}


def warehouse_tables(home: Path) -> dict[str, pd.DataFrame]:
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
