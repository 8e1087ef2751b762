"""Backfill speed benchmark: issue #7's 14-day backfill, from an empty home and again.

Runs ``ecm backfill --workers K`` over 14 demo days (2017-04-10..23) into a fresh ECM home
(default ``.ecm-bench-backfill/``, replaced; set ``ECM_BENCH_HOME``), then the same 14 days
again into that home (history stored, models cached, every table rewritten), and prints a
Markdown table: wall time, seconds per day, peak memory (of the largest process), and
the target of at most 5 s per day. ``--year`` adds every demo day with enough forecast
history, 2016-12-01..2017-07-31 (243 days, about 20 minutes on 2 cores). The table is also
written to ``benchmarks/results/backfill.md``.

Usage: ``make bench-backfill`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FORTNIGHT = (dt.date(2017, 4, 10), dt.date(2017, 4, 23))
YEAR = (dt.date(2016, 12, 1), dt.date(2017, 7, 31))
TARGET_S_PER_DAY = 5.0


def _backfill(home: Path, start: dt.date, end: dt.date, workers: int) -> dict[str, object]:
    """One ``ecm backfill`` in a child process; its wall time [s] and the peak resident memory
    of its largest process [GB]."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ECM_CONFIG")}
    env["ECM_HOME"] = str(home)
    exe = Path(sys.executable).parent / "ecm"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    run = subprocess.run(
        [str(exe), "backfill", "--start", str(start), "--end", str(end), "--workers", str(workers)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    days = (end - start).days + 1
    return {
        "days": days,
        "wall_s": round(wall, 1),
        "s_per_day": round(wall / days, 2),
        "peak_gb": round(max(peak, before) / 1e6, 2),  # ru_maxrss is in kB on Linux
        "ok": run.returncode == 0,
        "output": run.stdout[-2000:] + run.stderr[-2000:],
    }


def main() -> None:
    """Run the benchmark and print its table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--year", action="store_true", help="also the 243-day backfill")
    args = ap.parse_args()
    home = Path(os.environ.get("ECM_BENCH_HOME", REPO / ".ecm-bench-backfill"))
    rows = []
    cases = [("14 days, empty home", FORTNIGHT, True), ("14 days again", FORTNIGHT, False)]
    if args.year:
        cases.append(("243 days, empty home", YEAR, True))
    for label, (start, end), fresh in cases:
        if fresh:
            shutil.rmtree(home, ignore_errors=True)
        r = _backfill(home, start, end, args.workers)
        if not r["ok"]:
            print(r["output"], file=sys.stderr)
        rows.append(
            {
                "backfill": f"{label} ({start}..{end})",
                "workers": args.workers,
                "days": r["days"],
                "wall [s]": r["wall_s"],
                "s/day": r["s_per_day"],
                "target s/day": TARGET_S_PER_DAY,
                "met": "yes" if r["s_per_day"] <= TARGET_S_PER_DAY else "no",
                "largest process [GB]": r["peak_gb"],
                "all days ok": "yes" if r["ok"] else "no",
            }
        )
    table = pd.DataFrame(rows).to_markdown(index=False)
    print(table)
    out = REPO / "benchmarks" / "results" / "backfill.md"
    out.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
