"""Closed-loop evaluation benchmark: eight full weeks, two per season, on the demo community.

Runs ``ecm ingest days`` and ``ecm evaluate`` for each week in its own ECM home (default
``.ecm-bench/``; set ``ECM_BENCH_HOME``), then prints a Markdown table per week and for all
weeks: net cost per controller (SoC carried within each week, every controller starting the
week from the same configured SoC), ECM against the self-consumption rule, the share of the
gap to perfect foresight ECM closes, ramping ratios to no battery, days with a negative
benefit against acting alone and seconds per evaluated day. The table is also written to
``benchmarks/results/evaluation.md``.

Usage: ``make bench-evaluation`` (about 15 minutes on 2 cores); ``--table-only`` prints the
table from what is already evaluated in the bench home.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
WEEKS = (
    ("autumn", dt.date(2016, 10, 3)),
    ("autumn", dt.date(2016, 11, 7)),
    ("winter", dt.date(2017, 1, 9)),
    ("winter", dt.date(2017, 2, 13)),
    ("spring", dt.date(2017, 4, 3)),
    ("spring", dt.date(2017, 5, 8)),
    ("summer", dt.date(2017, 6, 5)),
    ("summer", dt.date(2017, 7, 10)),
)


def _ecm(*args: str, env: dict[str, str]) -> None:
    exe = Path(sys.executable).parent / "ecm"
    subprocess.run([str(exe), *args], check=True, env=env, cwd=REPO)


def main() -> None:
    """Run the eight weeks and print the table."""
    home = Path(os.environ.get("ECM_BENCH_HOME", REPO / ".ecm-bench"))
    env = {**os.environ, "ECM_HOME": str(home)}
    for _, start in [] if "--table-only" in sys.argv else WEEKS:
        end = start + dt.timedelta(days=6)
        _ecm(
            "ingest",
            "days",
            "--start",
            str(start - dt.timedelta(days=8)),
            "--end",
            str(end + dt.timedelta(days=1)),
            env=env,
        )
        _ecm("evaluate", "--start", str(start), "--end", str(end), env=env)

    sys.path.insert(0, str(REPO))
    from models.warehouse import Warehouse

    wh = Warehouse(home / "warehouse.duckdb")
    ev = wh.query("SELECT * FROM evaluation ORDER BY day, controller")
    ev["day"] = pd.to_datetime(ev["day"]).dt.date
    rows = []
    for season, start in WEEKS:
        end = start + dt.timedelta(days=6)
        w = ev[(ev["day"] >= start) & (ev["day"] <= end)]
        rows.append(_row(f"{start} ({season})", w))
    rows.append(
        _row(
            "all eight weeks",
            ev[ev["day"].isin([s + dt.timedelta(days=i) for _, s in WEEKS for i in range(7)])],
        )
    )
    table = pd.DataFrame(rows)
    md = table.to_markdown(index=False, floatfmt=".2f")
    print(md)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.md").write_text(md + "\n")


def _row(label: str, w: pd.DataFrame) -> dict[str, object]:
    g = w.groupby("controller")
    cost = g["net_cost"].sum()
    ramp = g["ramping_kwh"].sum()
    gap = cost["self_consumption"] - cost["perfect_foresight"]
    ecm = w[w["controller"] == "ecm"]
    return {
        "week": label,
        "no battery": cost["no_battery"],
        "self-consumption": cost["self_consumption"],
        "ECM": cost["ecm"],
        "perfect foresight": cost["perfect_foresight"],
        "ECM vs rule": f"{100 * (cost['ecm'] / cost['self_consumption'] - 1):+.1f} %",
        "gap closed": f"{100 * (cost['self_consumption'] - cost['ecm']) / gap:.0f} %"
        if gap > 0
        else "n/a",
        "ramping rule/none": round(ramp["self_consumption"] / ramp["no_battery"], 3),
        "ramping ECM/none": round(ramp["ecm"] / ramp["no_battery"], 3),
        "days benefit < 0": f"{int((ecm['benefit'] < -0.005).sum())} of {len(ecm)}",
        "s/day ECM": round(float(ecm["seconds"].mean()), 1),
    }


if __name__ == "__main__":
    main()
