"""Benchmarks that print a table: dispatch LP size and time, exact Shapley, forecasting.

Run with ``make bench``. Figures depend on the machine; the table states what was measured.
"""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from models import demo
from models.config import load_config
from models.forecasting import forecast_community
from models.timeutil import day_bounds_utc
from optimisation.allocation import coalition_values, shapley_exact
from optimisation.benchmarks import bench_dispatch


def main() -> None:
    console = Console()
    t = Table(title="ECM benchmarks (this machine)")
    for c in ("stage", "size", "build [s]", "solve/compute [s]", "detail"):
        t.add_column(c)
    for n_p, n_t, n_s in ((18, 24, 8), (200, 96, 10), (1000, 24, 8), (1000, 96, 10)):
        r = bench_dispatch(n_p, n_t, n_s)
        t.add_row(
            "dispatch LP",
            f"{n_p} members x {n_s} scen x {n_t} intervals",
            f"{r['build_s']:.2f}",
            f"{r['solve_s']:.2f}",
            f"{r['variables']:,} vars, {r['constraints']:,} rows, {r['status']}",
        )
    rng = np.random.default_rng(1)
    for n in (12, 16, 18):
        imp, exp = rng.gamma(1, 1, (n, 24)), rng.gamma(1, 1, (n, 24)) * (rng.random((n, 1)) > 0.5)
        t0 = time.perf_counter()
        v = coalition_values(imp, exp)
        phi = shapley_exact(v, n)
        t.add_row(
            "exact Shapley",
            f"{n} players ({2**n:,} coalitions)",
            "-",
            f"{time.perf_counter() - t0:.2f}",
            f"sum {phi.sum():.3f} = v(N) {v[-1]:.3f}",
        )
    cfg = load_config(demo.DEFAULT_CONFIG)
    day = cfg.community.demo_day
    start = day_bounds_utc(day - dt.timedelta(days=75), cfg.community.timezone)[0]
    end = day_bounds_utc(day, cfg.community.timezone)[0]
    rows = demo.meter_rows(cfg, start, end)
    smap = {m.metering_point("consumption"): ("load", m.id) for m in cfg.members}
    smap.update({m.metering_point("production"): ("pv", m.id) for m in cfg.members})
    smap[cfg.shared_assets.pv.metering_point] = ("pv", cfg.shared_assets.pv.id)
    act = rows.assign(
        target=rows.metering_point_id.map(lambda x: smap[x][0]),
        unique_id=rows.metering_point_id.map(lambda x: smap[x][1]),
        y=rows.kwh,
    )[["target", "unique_id", "ts", "y"]]
    p = demo.import_price_rows(demo.DATA_DIR / demo.PRICE_FILE, start, end)
    act = pd.concat(
        [act, p.rename(columns={"price": "y"}).assign(target="price", unique_id="import")]
    )
    t0 = time.perf_counter()
    res = forecast_community(act, demo.weather_rows(start, end + pd.Timedelta(days=1)), day, cfg)
    secs = time.perf_counter() - t0
    for target, r in res.items():
        m = r.metrics
        t.add_row(
            f"forecast {target}",
            f"{r.forecasts.unique_id.nunique()} series",
            "-",
            f"{secs / 3:.2f} (avg)",
            f"pinball skill vs naive {m['lightgbm']['pinball_skill']:+.1%}, "
            f"coverage80 {m[r.champion]['coverage_80']:.0%}, champion {r.champion}",
        )
    console.print(t)


if __name__ == "__main__":
    main()
