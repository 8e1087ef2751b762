"""The HTML report of ``ecm study italian-rec``: the scenarios table, each apartment's cost
against scenario 0, and indoor temperatures with the comfort band (plotly, offline).

The template is ``models/templates/study.html.j2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go

from models.reports import PLOTLY_JS, _atomic_write, write_plotlyjs

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
)


def render_study(
    out_dir: Path,
    results: Sequence[Any],
    *,
    title: str,
    place: str,
    day: str,
    tz: str,
    pv_kwp: float,
    n_scenarios: int,
    band: tuple[float, float],
    currency: str = "EUR",
    notes: str = "",
) -> Path:
    """Write ``out_dir/index.html`` (and ``plotly.min.js`` beside it).

    Parameters
    ----------
    out_dir : Path
        Report folder (created).
    results : sequence of optimisation.study.ScenarioResult
        Scenarios 0 to 3.
    title, place, day, tz : str
        Labels; ``tz`` for the plots' local time.
    pv_kwp : float
        Rooftop plant [kWp].
    n_scenarios : int
        Load and PV scenarios of the day.
    band : (float, float)
        Comfort band drawn on the plots [degC].

    Returns
    -------
    Path
        The report.
    """
    from markupsafe import Markup

    out_dir.mkdir(parents=True, exist_ok=True)
    write_plotlyjs(out_dir)
    base = results[0].member_cost
    members = [
        {
            "id": a,
            "costs": [
                {"text": f"{r.member_cost[a]:.2f}", "worse": r.member_cost[a] > base[a] + 0.005}
                for r in results
            ],
        }
        for a in base
    ]
    figures = []
    for r in results:
        t = r.temperatures
        fig = go.Figure()
        for a, g in t.groupby("member_id"):
            local = g["ts"].dt.tz_convert(tz)
            fig.add_trace(go.Scatter(x=local, y=g["indoor_temp_c"], name=str(a), mode="lines"))
        for y in band:
            fig.add_hline(y=y, line_dash="dash", line_color="#888")
        label = (
            f"Scenario {r.scenario}: air conditioners "
            f"{'optimised' if r.hvac_optimised else 'on a thermostat'}, batteries "
            f"{'optimised' if r.battery_optimised else 'idle'}"
        )
        fig.update_layout(title=label, yaxis_title="indoor temperature [degC]", height=340)
        figures.append(
            Markup(
                fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"temps-{r.scenario}")
            )
        )
    first, last = results[0], results[-1]

    def change(a: float, b: float) -> str:
        return f"{(b - a) / abs(a):+.1%}" if a else "n/a"

    html = _ENV.get_template("study.html.j2").render(
        title=title,
        place=place,
        day=day,
        n_apartments=len(base),
        pv_kwp=pv_kwp,
        n_intervals=int(first.temperatures["ts"].nunique()),
        n_scenarios=n_scenarios,
        currency=currency,
        scenarios=results,
        members=members,
        figures=figures,
        revenue_change=change(first.revenue, last.revenue),
        cost_change=change(first.final_cost, last.final_cost),
        plotly_js=PLOTLY_JS,
        notes=notes,
    )
    path = out_dir / "index.html"
    _atomic_write(path, html)
    return path
