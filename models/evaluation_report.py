"""The period evaluation report: every controller side by side on the metered days.

``reports/evaluation/<first>_<last>.html`` shows the cumulative net cost per controller, the
daily benefit of ECM against members acting alone (every negative day explained), peaks and
ramping, and the CityLearn 2022 KPI set as ratios to no battery. It loads ``plotly.min.js``
from its own folder, so it opens offline.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup

from models.config import CommunityConfig
from models.prices import carbon_intensity
from models.reports import PLOTLY_JS, _atomic_write, write_plotlyjs
from models.warehouse import Warehouse
from optimisation.control import CONTROLLERS
from optimisation.evaluation import period_kpis

_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Evaluation {{ first }} to {{ last }}: {{ community }}</title>
<script src="{{ plotly_js }}"></script>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.bad{color:#b00020}.good{color:#126b2f}.note{color:#555;font-size:90%}
</style></head><body>
<h1>Closed-loop evaluation, {{ first }} to {{ last }}</h1>
<p>{{ community }}: {{ n_days }} metered day(s) replayed under every controller on identical
data; the state of charge carries from day to day for every controller and for the
acting-alone baseline. Money in {{ currency }}.</p>
<h2>Totals</h2>
<table><tr><th>controller</th><th>grid cost</th><th>incentive</th><th>net cost</th>
<th>vs self-consumption</th><th>benefit vs acting alone</th><th>days benefit &lt; 0</th>
<th>CO2 [kg]</th><th>highest peak [kWh]</th><th>ramping [kWh]</th><th>fallback intervals</th>
<th>seconds/day</th></tr>
{% for r in totals %}<tr><td>{{ r.controller }}</td><td>{{ r.grid_cost }}</td>
<td>{{ r.incentive }}</td><td><b>{{ r.net_cost }}</b></td><td>{{ r.vs_rule }}</td>
<td>{{ r.benefit }}</td><td>{{ r.negative_days }}</td><td>{{ r.co2_kg }}</td>
<td>{{ r.peak }}</td><td>{{ r.ramping }}</td><td>{{ r.fallback }}</td><td>{{ r.seconds }}</td></tr>
{% endfor %}</table>
<p>ECM closes <b>{{ gap_closed }}</b> of the gap between the self-consumption rule and perfect
foresight on net cost.</p>
<h2>CityLearn 2022 KPIs of the {{ n_homes }} homes (ratio to no battery, lower is better)</h2>
<table><tr><th>controller</th><th>cost</th><th>emissions</th><th>ramping</th>
<th>1 - load factor</th></tr>
{% for r in kpis %}<tr><td>{{ r.controller }}</td><td>{{ r.cost }}</td><td>{{ r.emissions }}</td>
<td>{{ r.ramping }}</td><td>{{ r.one_minus_load_factor }}</td></tr>{% endfor %}</table>
<p class="note">District net consumption e = sum over the members' homes (the community
fund's plant and battery excluded, as in CityLearn) of import - export per interval.
Cost = sum max(e, 0) x import price; emissions = sum max(e, 0) x carbon
intensity; ramping = sum |e[t] - e[t-1]|; 1 - load factor = 1 - mean over days of
mean(e)/max(e).</p>
<h2>Cumulative net cost</h2>{{ fig_cum }}
<h2>ECM's daily benefit against members acting alone</h2>{{ fig_benefit }}
{% if negative %}<h3>Days where the benefit is negative, explained</h3><table>
<tr><th>day</th><th>benefit</th><th>explanation</th></tr>
{% for r in negative %}<tr><td>{{ r.day }}</td><td class="bad">{{ r.benefit }}</td>
<td style="text-align:left">{{ r.why }}</td></tr>{% endfor %}</table>
{% else %}<p class="good">The benefit is positive on every day.</p>{% endif %}
<h2>Peaks and ramping per day</h2>{{ fig_grid }}
</body></html>"""
)


def _fig(fig: go.Figure, div_id: str) -> Markup:
    fig.update_layout(height=360, margin={"l": 50, "r": 20, "t": 30, "b": 40})
    return Markup(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id))


def explain_negative_day(day_rows: pd.DataFrame, currency: str, price_floor: float) -> str:
    """Why ECM's benefit against acting alone is negative on a day.

    Parameters
    ----------
    day_rows : DataFrame
        The day's ``evaluation`` rows, one per controller.
    currency : str
        For the text.
    price_floor : float
        The day's cheapest import price [currency/kWh], to value stored energy.

    Returns
    -------
    str
    """
    by = day_rows.set_index("controller")
    e, rule = by.loc["ecm"], by.loc["self_consumption"]
    parts = []
    stored = float(e["end_soc_kwh"] - rule["end_soc_kwh"])
    if stored > 0.5:
        parts.append(
            f"ECM ended the day with {stored:.1f} kWh more stored than the rule, worth about "
            f"{stored * price_floor:.2f} {currency} at the cheapest price; it is used the next day"
        )
    if e["fallback_intervals"] > 0:
        parts.append(
            f"{int(e['fallback_intervals'])} interval(s) ran the rule after a failed solve"
        )
    if e["net_cost"] > rule["net_cost"]:
        parts.append(
            "the real-time layer's deliberate deviations cost "
            f"{e['net_cost'] - rule['net_cost']:.2f} {currency} more than the rule on the "
            "metered day (forecast error)"
        )
    if not parts:
        parts.append(
            f"the shared battery and plant earned less incentive ({e['incentive']:.2f}) than the "
            f"shared battery's losses and stored energy cost"
        )
    return "; ".join(parts) + "."


def evaluation_summary(ev: pd.DataFrame) -> pd.DataFrame:
    """Totals per controller over the period (the table the CLI prints).

    Parameters
    ----------
    ev : DataFrame
        ``evaluation`` rows.

    Returns
    -------
    DataFrame
        ``controller, net_cost, vs_rule_pct, benefit, negative_days, ramping_kwh, seconds_per_day``.
    """
    g = ev.groupby("controller")
    t = pd.DataFrame(
        {
            "net_cost": g["net_cost"].sum(),
            "benefit": g["benefit"].sum(),
            "negative_days": g["benefit"].apply(lambda b: int((b < -0.005).sum())),
            "ramping_kwh": g["ramping_kwh"].sum(),
            "seconds_per_day": g["seconds"].mean(),
        }
    )
    rule = t.loc["self_consumption", "net_cost"] if "self_consumption" in t.index else np.nan
    t["vs_rule_pct"] = 100 * (t["net_cost"] - rule) / abs(rule) if rule else np.nan
    t = t.reindex([c for c in CONTROLLERS if c in t.index])
    return t.reset_index()[
        [
            "controller",
            "net_cost",
            "vs_rule_pct",
            "benefit",
            "negative_days",
            "ramping_kwh",
            "seconds_per_day",
        ]
    ]


def write_evaluation_report(
    wh: Warehouse, cfg: CommunityConfig, first: dt.date, last: dt.date, out_dir: Path
) -> tuple[Path, pd.DataFrame]:
    """Write ``out_dir/<first>_<last>.html`` from the stored evaluation of the period.

    Returns
    -------
    path : Path
        The report.
    summary : DataFrame
        :func:`evaluation_summary` of the period.
    """
    ev = wh.query(
        "SELECT * FROM evaluation WHERE day BETWEEN ? AND ? ORDER BY day, controller", [first, last]
    )
    if ev.empty:
        raise ValueError(f"no evaluation stored between {first} and {last}")
    rf = wh.query(
        "SELECT r.day, r.controller, r.ts, r.import_kwh, r.export_kwh, p.price_per_kwh AS "
        "import_price FROM realised_flows r JOIN prices p ON p.ts = r.ts AND "
        "p.price_type = 'import' WHERE r.day BETWEEN ? AND ? AND r.member_id <> ?",
        [first, last, cfg.shared_assets.owner_id],
    )
    carbon = None
    if cfg.tariffs.carbon_intensity_source and not rf.empty:
        ts = pd.DatetimeIndex(rf["ts"]).tz_convert("UTC")
        carbon = carbon_intensity(
            cfg.resolve(cfg.tariffs.carbon_intensity_source),
            ts.min(),
            ts.max() + pd.Timedelta("1h"),
        )
        rf["ts"] = ts
    kpi = period_kpis(rf, carbon)
    cur = cfg.community.currency
    summary = evaluation_summary(ev)
    g = ev.groupby("controller")
    tot = g[["grid_cost", "incentive", "net_cost", "benefit", "co2_kg", "ramping_kwh"]].sum()
    rule_cost = float(tot.loc["self_consumption", "net_cost"])
    pf_cost, ecm_cost = (
        float(tot.loc["perfect_foresight", "net_cost"]),
        float(tot.loc["ecm", "net_cost"]),
    )
    gap = rule_cost - pf_cost
    totals = []
    for c in [c for c in CONTROLLERS if c in tot.index]:
        r = tot.loc[c]
        totals.append(
            {
                "controller": c,
                "grid_cost": f"{r['grid_cost']:,.2f}",
                "incentive": f"{r['incentive']:,.2f}",
                "net_cost": f"{r['net_cost']:,.2f}",
                "vs_rule": f"{100 * (r['net_cost'] - rule_cost) / abs(rule_cost):+.1f} %"
                if rule_cost
                else "n/a",
                "benefit": f"{r['benefit']:,.2f}",
                "negative_days": int((g.get_group(c)["benefit"] < -0.005).sum()),
                "co2_kg": f"{r['co2_kg']:,.1f}",
                "peak": f"{g.get_group(c)['peak_import_kwh'].max():,.1f}",
                "ramping": f"{r['ramping_kwh']:,.1f}",
                "fallback": int(g.get_group(c)["fallback_intervals"].sum()),
                "seconds": f"{g.get_group(c)['seconds'].mean():.1f}",
            }
        )
    kpis = [
        {
            "controller": c,
            **{
                k: f"{kpi.loc[c, k]:.3f}"
                for k in ("cost", "emissions", "ramping", "one_minus_load_factor")
            },
        }
        for c in kpi.index
        if "cost" in kpi.columns
    ]
    cum = go.Figure()
    for c in CONTROLLERS:
        d = ev[ev["controller"] == c]
        cum.add_trace(go.Scatter(x=d["day"].astype(str), y=d["net_cost"].cumsum(), name=c))
    cum.update_yaxes(title=f"cumulative net cost [{cur}]")
    e = ev[ev["controller"] == "ecm"]
    ben = go.Figure(
        go.Bar(
            x=e["day"].astype(str),
            y=e["benefit"],
            marker_color=np.where(e["benefit"] < 0, "#b00020", "#126b2f"),
            name="benefit",
        )
    )
    ben.update_yaxes(title=f"benefit [{cur}]")
    grid = go.Figure()
    for c in CONTROLLERS:
        d = ev[ev["controller"] == c]
        grid.add_trace(go.Scatter(x=d["day"].astype(str), y=d["ramping_kwh"], name=f"ramping {c}"))
        grid.add_trace(
            go.Scatter(
                x=d["day"].astype(str),
                y=d["peak_import_kwh"],
                name=f"peak {c}",
                line={"dash": "dot"},
            )
        )
    grid.update_yaxes(title="kWh")
    floor = wh.query(
        "SELECT day, min(price_per_kwh) AS p FROM prices WHERE price_type = 'import' "
        "AND day BETWEEN ? AND ? GROUP BY day",
        [first, last],
    ).set_index("day")["p"]
    negative = [
        {
            "day": str(day),
            "benefit": f"{float(b):,.2f}",
            "why": explain_negative_day(ev[ev["day"] == day], cur, float(floor.get(day, 0.0))),
        }
        for day, b in zip(e["day"], e["benefit"], strict=True)
        if b < -0.005
    ]
    html = _TEMPLATE.render(
        first=first,
        last=last,
        community=cfg.community.name,
        currency=cur,
        n_days=int(ev["day"].nunique()),
        n_homes=len(cfg.members),
        plotly_js=PLOTLY_JS,
        totals=totals,
        gap_closed=f"{100 * (rule_cost - ecm_cost) / gap:.0f} %" if gap > 0 else "n/a",
        kpis=kpis,
        fig_cum=_fig(cum, "cumulative"),
        fig_benefit=_fig(ben, "benefit"),
        fig_grid=_fig(grid, "grid"),
        negative=negative,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_plotlyjs(out_dir)
    path = out_dir / f"{first.isoformat()}_{last.isoformat()}.html"
    _atomic_write(path, html)
    return path, summary
