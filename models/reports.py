"""HTML reports: the operators' daily plan report and the members' statements.

Both are static HTML files that work offline. The plan report embeds plotly figures and loads
``plotly.min.js`` from the same directory (written once per day directory, the equivalent of
plotly's ``include_plotlyjs="directory"``), so no internet access is needed to view it.

Layout of the output::

    out_dir/<day>/plan.html
    out_dir/<day>/plotly.min.js
    out_dir/<day>/statements/<member_id>.html
    out_dir/<day>/statements/index.html

Conventions (see :mod:`models.contracts`): timestamps in the input frames are UTC interval
starts; reports show them in the community's local time with the zone's abbreviation, so the
repeated hour of a 25-hour autumn day reads ``01:00 PDT``, ``01:00 PST``. Energies are [kWh] per
interval, prices [currency/kWh], allocated amounts are whole-cent :class:`~decimal.Decimal`
values and every total shown is an exact Decimal sum of the amounts shown.

Templates are module-level strings rendered by jinja2 with autoescaping on: member names,
ids, anomaly messages and solver messages are data and are always escaped.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
import zoneinfo
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from models.contracts import TABLES

PLOTLY_JS = "plotly.min.js"
"""File name of the local plotly.js bundle written beside ``plan.html``."""

COMMUNITY_FUND_LABEL = "Community fund"
"""Display name of the community owner (the id that holds shared assets, not in members)."""

SUMMARY_KEYS = (
    "expected_cost",
    "expected_incentive",
    "expected_net_cost",
    "no_battery_cost",
    "no_battery_incentive",
    "no_battery_net_cost",
    "expected_savings",
    "expected_shared_kwh",
)
"""Keys the plan summary must provide [currency, or kWh for ``expected_shared_kwh``]."""

SEVERITIES = ("high", "medium", "low")
"""Anomaly severities, most severe first."""

TOP_ANOMALIES = 10
"""Number of anomalies listed under "What looks wrong"."""

RULE_LABELS = {
    "pro_rata_consumption": "Pro rata to consumption",
    "shapley": "Shapley value",
}
"""Human names of the fairness rules."""

RULE_DESCRIPTIONS = {
    "pro_rata_consumption": (
        "The day's community benefit (the incentive earned on energy shared inside the "
        "community plus what the members save on their grid bills against acting alone) is "
        "divided in proportion to each member's consumption over the day: a member who used 10% "
        "of the community's energy receives 10% of the benefit. Amounts are rounded to the cent "
        "so that they add up exactly to the benefit."
    ),
    "shapley": (
        "Each member receives its Shapley value: its average marginal contribution to what "
        "the community saves against everyone acting alone, over every order in which the "
        "members could have joined (each group of members is valued on the metered day, by the "
        "better of ECM's operation and the self-consumption rule). On a day that gains, the "
        "values are adjusted as little as possible so that nobody receives less than acting "
        "alone; a day that loses is shared by the approved loss-sharing policy. Amounts are "
        "rounded to the cent so that they add up exactly to the benefit."
    ),
}
"""Plain-language explanation of each fairness rule, shown in the statements' footnote."""

_CENT = Decimal("0.01")

_PLAN_COLUMNS = tuple(c for c in TABLES["dispatch_plan"].column_names if c != "day")
_FORECAST_COLUMNS = ("target", "unique_id", "ts", "point", "q10", "q90")
_ANOMALY_COLUMNS = ("rule", "severity", "subject_id", "ts_start", "ts_end", "message")
_ALLOCATION_COLUMNS = (
    "member_id",
    "rule",
    "shared_kwh",
    "amount",
    "consumption_kwh",
    "import_kwh",
    "export_kwh",
)

# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------

_BASE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %}</title>
{% block head %}{% endblock %}
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #1f2933; }
h1 { margin-bottom: 0.2em; }
.sub { color: #52606d; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; }
th, td { border-bottom: 1px solid #d9e2ec; padding: 0.3em 0.7em; text-align: left; }
th { background: #f0f4f8; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; border-top: 2px solid #52606d; }
.banner { background: #fde8e8; border: 2px solid #c81e1e; color: #8a1c1c; padding: 0.8em 1em;
          font-weight: bold; margin: 1em 0; }
.sev-high { color: #c81e1e; font-weight: bold; }
.sev-medium { color: #b45309; }
.sev-low { color: #52606d; }
.credit { font-size: 2.6em; font-weight: bold; margin: 0.2em 0; }
.note { color: #52606d; font-size: 0.9em; }
footer { margin-top: 2em; color: #7b8794; font-size: 0.85em; }
</style>
</head>
<body>
{% block body %}{% endblock %}
<footer>Generated by ECM, the Energy Community Manager.</footer>
</body>
</html>
"""

_PLAN_TEMPLATE = """{% extends "base.html" %}
{% block title %}{{ community_name }}: plan for {{ day }}{% endblock %}
{% block head %}<script src="{{ plotly_js }}"></script>{% endblock %}
{% block body %}
<h1>{{ community_name }}: dispatch plan for {{ day }}</h1>
<p class="sub">Times are local time, {{ tz }} ({{ tz_abbrevs }}); {{ n_intervals }} intervals.
Energies in kWh, money in {{ currency }}.</p>
{% if approval %}
<p id="plan-approval" class="approval-{{ approval.state }}">Plan version
<code>{{ approval.plan_version }}</code>: <strong>{{ approval.state }}</strong>
{%- if approval.get("decided_by") %} by {{ approval.decided_by }} at {{ approval.decided_at }}
({{ approval.source }}){% if approval.comment %}: &ldquo;{{ approval.comment }}&rdquo;{% endif %}
{%- else %}: not yet approved; its export (<code>ecm export plan</code>) is marked proposed
until an operator runs <code>ecm plan approve</code>{% endif %}.</p>
{% endif %}
{% if fallback %}
<div class="banner" id="fallback-banner">rule-based fallback plan: the optimiser failed:
{{ fallback_reason }}</div>
{% endif %}
{% if stale_models %}
<div class="banner" id="model-banner">Forecast model fallback: {{ stale_models }}</div>
{% endif %}
{% if no_weather %}
<div class="banner" id="weather-banner">No weather forecast was stored for this day: PV was
forecast from clear-sky physics (pvlib) and load without weather features.</div>
{% endif %}

<h2>Key figures</h2>
<table id="key-costs">
<tr><th></th><th class="num">with plan</th><th class="num">no-battery baseline</th>
<th class="num">difference</th></tr>
{% for row in cost_rows %}
<tr><td>{{ row.label }}</td><td class="num">{{ row.plan }}</td>
<td class="num">{{ row.baseline }}</td><td class="num">{{ row.diff }}</td></tr>
{% endfor %}
</table>
<table id="key-figures">
{% for label, value in headline %}
<tr><th>{{ label }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table>

<h2>Plan and what was realised</h2>
{% if realised_rows %}
<p>The expected figures above are the day-ahead plan's own promise. What settles is the metered
day under ECM's real-time layer (self-consumption on each actual interval plus the plan's
deliberate deviations, re-planned every interval), shown beside the simple rules and the
perfect-foresight bound, with the state of charge carried from the day before.</p>
<table id="realised">
<tr><th>controller</th><th class="num">grid cost</th><th class="num">incentive</th>
<th class="num">net cost</th><th class="num">benefit vs acting alone</th>
<th class="num">peak import [kWh]</th><th class="num">ramping [kWh]</th>
<th class="num">fallback intervals</th></tr>
{% for r in realised_rows %}
<tr><td>{{ r.controller }}</td><td class="num">{{ r.grid_cost }}</td>
<td class="num">{{ r.incentive }}</td><td class="num"><b>{{ r.net_cost }}</b></td>
<td class="num">{{ r.benefit }}</td><td class="num">{{ r.peak }}</td>
<td class="num">{{ r.ramping }}</td><td class="num">{{ r.fallback }}</td></tr>
{% endfor %}
</table>
<p>Plan's expected net cost {{ plan_net_cost }}; realised under ECM {{ realised_net_cost }}
({{ realised_vs_plan }}).</p>
{% else %}
<p class="note">Not yet realised: the day's metered replay (realised_flows) is not stored.</p>
{% endif %}

<h2>Forecasts: community load, PV and price</h2>
{{ fig_forecasts }}
<p class="note">Load is summed over members, PV over rooftops and the shared plant; the bands
add the members' q10 and q90 forecasts (a conservative, wider-than-joint range).</p>
{% if forecast_models %}
<table id="forecast-models">
<tr><th>target</th><th>champion given to the dispatch</th><th>trained at</th>
<th class="num">q10-q90 coverage of the issued forecasts, last 28 days</th>
<th class="num">q10-q90 coverage, yesterday</th><th>note</th></tr>
{% for r in forecast_models %}
<tr><td>{{ r.target }}</td><td>{{ r.model }}</td><td>{{ r.origin }}</td>
<td class="num">{{ r.window }}</td><td class="num">{{ r.yesterday }}</td><td>{{ r.note }}</td></tr>
{% endfor %}
</table>
<p class="note">Intervals are calibrated to cover 80 % (split conformal on the 28 days before
the day). PV nights are left out of coverage.</p>
{% endif %}
<h2>Battery schedules (expected case)</h2>
{{ fig_batteries }}
<h2>Community import, export and shared energy</h2>
{{ fig_grid }}
<p class="note">Bold lines: expected case; faint lines: one per scenario.</p>

<h2>Per member (expected case)</h2>
<table id="members">
<tr><th>member</th><th>id</th><th class="num">load [kWh]</th><th class="num">PV [kWh]</th>
<th class="num">import [kWh]</th><th class="num">export [kWh]</th>
<th class="num">battery throughput [kWh]</th><th class="num">grid cost [{{ currency }}]</th></tr>
{% for r in member_rows %}
<tr{% if r.total %} class="total"{% endif %}><td>{{ r.label }}</td><td>{{ r.member_id }}</td>
<td class="num">{{ r.load }}</td><td class="num">{{ r.pv }}</td>
<td class="num">{{ r.imp }}</td><td class="num">{{ r.exp }}</td>
<td class="num">{{ r.throughput }}</td><td class="num">{{ r.cost }}</td></tr>
{% endfor %}
</table>
<p class="note">Battery throughput = charge + discharge [kWh]; grid cost = import &times; import
price &minus; export &times; export price, before incentives.</p>

{% if flexible_rows %}
<h2>Flexible loads</h2>
<table id="flexible">
<tr><th>asset</th><th>kind</th><th>member</th><th class="num">planned [kWh]</th>
<th class="num">peak [kW]</th><th>when</th><th>check</th></tr>
{% for r in flexible_rows %}
<tr><td>{{ r.asset_id }}</td><td>{{ r.kind }}</td><td>{{ r.member_id }}</td>
<td class="num">{{ r.kwh }}</td><td class="num">{{ r.peak }}</td><td>{{ r.when }}</td>
<td>{{ r.check }}</td></tr>
{% endfor %}
</table>
<p class="note">Their electricity is part of the owner's load above. Air conditioners keep
the dwelling inside its comfort band (indoor range shown); EVs reach their energy by
departure unless a shortfall is shown; a cycle runs once inside its window.</p>
{% endif %}

<h2>What looks wrong</h2>
{% if anomalies %}
<p class="note" id="case-counts">{{ anomaly_cases }}</p>
<table id="anomalies">
<tr><th>case</th><th>severity</th><th>rule</th><th>subject</th><th>when ({{ tz }})</th>
<th>message</th></tr>
{% for a in anomalies %}
<tr class="case-{{ a.case_class }}"><td>{{ a.case }}</td>
<td class="sev-{{ a.severity_class }}">{{ a.severity }}</td><td>{{ a.rule }}</td>
<td>{{ a.subject }}</td><td>{{ a.when }}</td><td>{{ a.message }}</td></tr>
{% endfor %}
</table>
{% if anomalies_hidden %}<p class="note">{{ anomalies_hidden }} more not shown.</p>{% endif %}
{% else %}
<p id="no-anomalies">No anomalies flagged.</p>
{% endif %}

<h2>Allocation of the community benefit</h2>
{% if settlement %}<p id="settlement-version">Settlement version {{ settlement.version }}
({{ settlement.reason }}), created {{ settlement.created_at }}; policy approved as
{{ settlement.approval_reference }}. Shapley computed {{ settlement.method }}. Core check
({{ settlement.core_method }}): {% if settlement.in_core %}in the core, no group of members
would gain by leaving{% else %}not in the core: a group of members would gain up to
{{ "%.2f"|format(settlement.core_max_violation) }} {{ currency }} by leaving{% endif %}.</p>
{% endif %}
{% for t in allocation_tables %}
<h3>{{ t.label }}{% if t.settles %} (settlement rule){% endif %}</h3>
<table class="allocation" id="alloc-{{ t.rule }}">
<tr><th>member</th><th>id</th><th class="num">shared [kWh]</th>
<th class="num">amount [{{ currency }}]</th></tr>
{% for r in t.rows %}
<tr><td>{{ r.label }}</td><td>{{ r.member_id }}</td><td class="num">{{ r.shared }}</td>
<td class="num">{{ r.amount }}</td></tr>
{% endfor %}
<tr class="total"><td>Total</td><td></td><td class="num">{{ t.total_shared }}</td>
<td class="num" id="alloc-total-{{ t.rule }}">{{ t.total_amount }}</td></tr>
</table>
{% else %}
<p>No allocations for this day.</p>
{% endfor %}
{% endblock %}
"""

_STATEMENT_TEMPLATE = """{% extends "base.html" %}
{% block title %}{{ community_name }}: statement for {{ name }}, {{ day }}{% endblock %}
{% block body %}
<h1>{{ community_name }}</h1>
<p class="sub">Statement for <strong id="member-name">{{ name }}</strong> ({{ member_id }}{% if
kind %}, {{ kind }}{% endif %}) &middot; {{ day }}</p>

<p>Your credit for {{ day }} under the {{ rule_label }} rule:</p>
<p class="credit" id="credit">{{ credit }} {{ currency }}</p>
<p>Shared energy allocated to you: <strong id="shared">{{ shared }} kWh</strong></p>
{% if explanation %}<p id="explanation">{{ explanation }}</p>{% endif %}
{% if settlement %}<p id="settlement">Settlement version {{ settlement.version }}
({{ settlement.reason }}){% if delta %}: {{ delta }} {{ currency }} against the previous
version{% endif %}. Settled under the fairness policy approved as
{{ settlement.approval_reference }}.</p>{% endif %}

<h2>Under every rule</h2>
<table id="rules">
<tr><th>rule</th><th class="num">shared [kWh]</th><th class="num">amount [{{ currency }}]</th>
<th></th></tr>
{% for r in rules %}
<tr><td>{{ r.label }}</td><td class="num">{{ r.shared }}</td><td class="num">{{ r.amount }}</td>
<td>{% if r.settles %}billed{% endif %}</td></tr>
{% endfor %}
</table>

<h2>Your energy</h2>
<table id="energy">
<tr><th>consumption</th><td class="num">{{ consumption }} kWh</td></tr>
<tr><th>import from the grid</th><td class="num">{{ imported }} kWh</td></tr>
<tr><th>export to the grid</th><td class="num">{{ exported }} kWh</td></tr>
{% if estimated %}<tr id="estimated"><th>of your metered energy, estimated</th>
<td class="num">{{ estimated.kwh }} kWh of {{ estimated.total }} kWh ({{ estimated.share }})</td>
</tr>{% endif %}
{% if standalone_cost %}<tr><th>grid cost acting alone</th>
<td class="num">{{ standalone_cost }} {{ currency }}</td></tr>{% endif %}
{% if community_cost %}<tr><th>grid cost with the community plan</th>
<td class="num">{{ community_cost }} {{ currency }}</td></tr>{% endif %}
</table>

{% if estimated %}<p class="note" id="estimated-note">{{ estimated.intervals }} interval(s) of
your meter data had no reading when this was settled and were estimated ({{ estimated.rule }}).
When the meter's reading arrives, the day is settled again and the difference shown.</p>{% endif %}
<p class="note" id="footnote">How this works: {{ rule_description }} The community earns an
incentive of {{ incentive_rate }} {{ currency }} per kWh of shared energy; shared energy in each
interval is the smaller of the community's total injection and total withdrawal. The
{{ rule_label }} rule is the one billed, as approved by the community.</p>
{% endblock %}
"""

_INDEX_TEMPLATE = """{% extends "base.html" %}
{% block title %}{{ community_name }}: statements for {{ day }}{% endblock %}
{% block body %}
<h1>{{ community_name }}: member statements for {{ day }}</h1>
<p class="sub">Settlement rule: {{ rule_label }}. Amounts in {{ currency }}.</p>
<table id="statements">
<tr><th>member</th><th>id</th><th class="num">shared [kWh]</th>
<th class="num">credit [{{ currency }}]</th></tr>
{% for r in rows %}
<tr><td><a href="{{ r.href }}">{{ r.label }}</a></td><td>{{ r.member_id }}</td>
<td class="num">{{ r.shared }}</td><td class="num">{{ r.amount }}</td></tr>
{% endfor %}
<tr class="total"><td>Total</td><td></td><td class="num">{{ total_shared }}</td>
<td class="num" id="statements-total">{{ total_amount }}</td></tr>
</table>
{% endblock %}
"""

_ENV = jinja2.Environment(
    loader=jinja2.DictLoader(
        {
            "base.html": _BASE_TEMPLATE,
            "plan.html": _PLAN_TEMPLATE,
            "statement.html": _STATEMENT_TEMPLATE,
            "index.html": _INDEX_TEMPLATE,
        }
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)

# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def key_figures(
    summary: Mapping[str, float],
    allocations: pd.DataFrame,
    anomalies: pd.DataFrame,
    settlement_rule: str,
) -> dict[str, float | int | str]:
    """The numbers shown at the top of the plan report (also usable as run metadata).

    Parameters
    ----------
    summary : Mapping[str, float]
        Plan summary with every key of :data:`SUMMARY_KEYS` [currency; ``expected_shared_kwh``
        in kWh].
    allocations : pandas.DataFrame
        Allocation rows (``member_id``, ``rule``, ``shared_kwh``, ``amount``, ...).
    anomalies : pandas.DataFrame
        Anomaly rows (``severity``, ...); may be empty.
    settlement_rule : str
        The rule that is billed.

    Returns
    -------
    dict[str, float | int | str]
        The summary values as floats [currency or kWh], ``settlement_rule``,
        ``settlement_total`` (exact Decimal sum of the settlement amounts, as float [currency]),
        ``settlement_shared_kwh`` [kWh], ``members_allocated`` [-], ``anomalies`` [-] and
        ``anomalies_high``/``anomalies_medium``/``anomalies_low`` [-].

    Raises
    ------
    KeyError
        If the summary lacks one of :data:`SUMMARY_KEYS`.
    """
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if missing:
        raise KeyError(f"plan summary lacks {', '.join(missing)}")
    out: dict[str, float | int | str] = {k: float(summary[k]) for k in SUMMARY_KEYS}
    settle = _settlement_rows(allocations, settlement_rule)
    out["settlement_rule"] = settlement_rule
    out["settlement_total"] = float(_decimal_sum(settle["amount"]) if len(settle) else 0)
    out["settlement_shared_kwh"] = float(settle["shared_kwh"].sum()) if len(settle) else 0.0
    out["members_allocated"] = int(settle["member_id"].nunique()) if len(settle) else 0
    counts = _severity_counts(anomalies)
    out["anomalies"] = int(len(anomalies))
    for sev in SEVERITIES:
        out[f"anomalies_{sev}"] = counts.get(sev, 0)
    return out


def _forecast_quality_context(fq: pd.DataFrame | None) -> dict[str, Any]:
    if fq is None or fq.empty:
        return {"forecast_models": [], "stale_models": ""}

    def pct(v: object) -> str:
        return "" if v is None or pd.isna(v) else f"{float(v):.0%}"

    rows = [
        {
            "target": r.target,
            "model": r.model,
            "origin": "" if pd.isna(r.origin) else str(r.origin)[:10],
            "window": pct(r.window_coverage)
            + (f" ({r.window_days} d)" if getattr(r, "window_days", 0) else ""),
            "yesterday": pct(r.yesterday_coverage),
            "note": "" if pd.isna(r.note) else str(r.note),
        }
        for r in fq.itertuples()
    ]
    stale = "; ".join(f"{r['target']}: {r['note']}" for r in rows if "failed" in r["note"])
    return {"forecast_models": rows, "stale_models": stale}


def render_plan_report(
    day: dt.date,
    out_dir: Path,
    *,
    community_name: str,
    currency: str,
    tz: str,
    forecasts: pd.DataFrame,
    plan: pd.DataFrame,
    summary: Mapping[str, float],
    anomalies: pd.DataFrame,
    allocations: pd.DataFrame,
    settlement_rule: str,
    solve_info: Mapping[str, object],
    members: pd.DataFrame | None = None,
    owner_id: str = "COMMUNITY",
    realised: pd.DataFrame | None = None,
    settlement: Mapping[str, Any] | None = None,
    forecast_quality: pd.DataFrame | None = None,
    approval: Mapping[str, Any] | None = None,
    flexible: pd.DataFrame | None = None,
) -> Path:
    """Write the operators' daily plan report.

    ``flexible`` (optional) holds the day's ``flexible_plan`` rows: one line per air
    conditioner, EV and deferrable load with its planned energy, when it runs and its check
    (indoor range and comfort, EV shortfall).

    ``approval`` (optional) is the plan's approval state (``models.plan_store.approval_state``):
    proposed, approved or rejected, by whom, when and why.

    ``forecast_quality`` (optional) has one row per target: ``target, model, origin,
    window_coverage, yesterday_coverage`` [-] and ``note`` (training failures and fallbacks).

    ``settlement`` (optional) is the day's latest ``settlement_versions`` row: version,
    reason, approval and the core check are shown with the allocations.

    ``realised`` (optional) holds the day's ``evaluation`` rows: the metered day under every
    controller, shown beside the plan.

    Parameters
    ----------
    day : datetime.date
        The community's local day.
    out_dir : pathlib.Path
        Report root; the report goes to ``out_dir / f"{day}" / "plan.html"`` and
        ``plotly.min.js`` beside it.
    community_name : str
        Display name of the community.
    currency : str
        ISO 4217 currency of all money amounts.
    tz : str
        IANA time zone of the community; times are shown in it.
    forecasts : pandas.DataFrame
        Champion forecasts: ``target`` (load | pv | price), ``unique_id``, ``model``, ``ts``
        (UTC), ``point``, ``q10``, ``q50``, ``q90`` [kWh; price in currency/kWh].
    plan : pandas.DataFrame
        Dispatch plan rows (see ``dispatch_plan`` in :mod:`models.contracts`) [kWh,
        currency/kWh]; must contain the ``'expected'`` scenario.
    summary : Mapping[str, float]
        Plan summary, keys :data:`SUMMARY_KEYS` [currency or kWh].
    anomalies : pandas.DataFrame
        Anomaly rows (may be empty).
    allocations : pandas.DataFrame
        Allocation rows, ``amount`` in whole cents [currency].
    settlement_rule : str
        The rule that is billed.
    solve_info : Mapping[str, object]
        Solver information (termination, timings [s], ...); ``reason`` explains a fallback.
    members : pandas.DataFrame, optional
        Members (``member_id``, ``name``); when given, tables show names.
    owner_id : str, default "COMMUNITY"
        Member id of the community owner holding the shared PV and shared battery.

    Returns
    -------
    pathlib.Path
        Path of the written ``plan.html``.
    """
    zone = zoneinfo.ZoneInfo(tz)
    _require(plan, _PLAN_COLUMNS, "plan")
    _require(forecasts, _FORECAST_COLUMNS, "forecasts")
    _require(anomalies, _ANOMALY_COLUMNS, "anomalies")
    _require(allocations, _ALLOCATION_COLUMNS, "allocations")
    figures = key_figures(summary, allocations, anomalies, settlement_rule)

    plan = plan.assign(ts=pd.to_datetime(plan["ts"], utc=True))
    forecasts = forecasts.assign(ts=pd.to_datetime(forecasts["ts"], utc=True))
    expected = plan[plan["scenario"].astype(str) == "expected"]
    if expected.empty:
        raise ValueError("plan has no rows for the 'expected' scenario")
    names = _member_names(members, owner_id)

    axis = pd.DatetimeIndex(sorted(set(plan["ts"]) | set(forecasts["ts"])))
    labels = _time_labels(axis, zone, day)

    kinds = set(plan["plan_kind"].astype(str))
    settle = _settlement_rows(allocations, settlement_rule)
    settlement_total = _decimal_sum(settle["amount"]) if len(settle) else Decimal("0.00")
    fallback = "fallback" in kinds
    reason = solve_info.get("reason")
    fallback_reason = str(reason) if reason not in (None, "") else "no reason recorded"

    local = axis.tz_convert(zone)
    tz_abbrevs = "/".join(dict.fromkeys(t.tzname() or "" for t in local)) or tz
    context = {
        "community_name": community_name,
        "day": f"{day}",
        "tz": tz,
        "tz_abbrevs": tz_abbrevs,
        "n_intervals": int(expected["ts"].nunique()),
        "currency": currency,
        "plotly_js": PLOTLY_JS,
        "fallback": fallback,
        "fallback_reason": fallback_reason,
        "no_weather": bool(
            "weather_basis" in forecasts.columns
            and (forecasts["weather_basis"].astype(str) == "clearsky").any()
        ),
        **_forecast_quality_context(forecast_quality),
        "cost_rows": _cost_rows(figures),
        "headline": _headline(figures, settlement_total, kinds, solve_info, currency),
        "fig_forecasts": _figure_html(
            _forecast_figure(forecasts, labels, tz, currency), "fig-forecasts"
        ),
        "fig_batteries": _figure_html(
            _battery_figure(expected, labels, tz, owner_id), "fig-batteries"
        ),
        "fig_grid": _figure_html(_grid_figure(plan, labels, tz), "fig-grid"),
        "member_rows": _member_plan_rows(expected, names, owner_id),
        **_anomaly_context(anomalies, zone),
        "allocation_tables": _allocation_tables(allocations, settlement_rule, names, owner_id),
        "settlement": settlement,
        "approval": approval,
        "flexible_rows": _flexible_rows(flexible, tz),
        **_realised_context(realised, summary, currency),
    }
    html = _ENV.get_template("plan.html").render(**context)

    day_dir = Path(out_dir) / f"{day}"
    day_dir.mkdir(parents=True, exist_ok=True)
    write_plotlyjs(day_dir)
    path = day_dir / "plan.html"
    _atomic_write(path, html)
    return path


def _flexible_rows(flex: pd.DataFrame | None, tz: str) -> list[dict[str, str]]:
    """One line per flexible asset of the plan (see :func:`render_plan_report`)."""
    if flex is None or flex.empty:
        return []
    rows = []
    for aid, g in flex.sort_values(["asset_id", "ts"]).groupby("asset_id", sort=True):
        kind = str(g["kind"].iloc[0])
        local = pd.DatetimeIndex(pd.to_datetime(g["ts"], utc=True)).tz_convert(tz)
        on = local[g["energy_kwh"].to_numpy(dtype=float) > 1e-6]
        when = f"{on[0]:%H:%M}-{on[-1]:%H:%M}" if len(on) else "off"
        if kind == "air_conditioner":
            worst = float(g["outside_band_k"].max())
            check = (
                f"indoor {g['indoor_temp_c'].min():.1f}-{g['indoor_temp_c'].max():.1f} degC, "
                + ("in the comfort band" if worst < 1e-3 else f"{worst:.2f} K outside the band")
            )
        elif kind == "ev":
            short = float(g["shortfall_kwh"].iloc[0])
            check = f"{g['delivered_kwh'].iloc[0]:.2f} kWh delivered" + (
                f", short by {short:.2f} kWh" if short > 1e-6 else ", need met"
            )
        else:
            start = local[g["starts"].to_numpy(dtype=bool)]
            check = f"starts {start[0]:%H:%M}" if len(start) else "not scheduled"
        rows.append(
            {
                "asset_id": str(aid),
                "kind": kind.replace("_", " "),
                "member_id": str(g["member_id"].iloc[0]),
                "kwh": f"{g['energy_kwh'].sum():.2f}",
                "peak": f"{g['power_kw'].max():.2f}",
                "when": when,
                "check": check,
            }
        )
    return rows


def _estimated_shares(readings: pd.DataFrame | None) -> dict[str, dict[str, str]]:
    """Per member with estimated readings: estimated and metered energy [kWh], the share, the
    number of intervals and the estimation rule (the estimates' ``source``)."""
    if readings is None or readings.empty:
        return {}
    r = readings.assign(kwh=readings["kwh"].astype(float).abs())
    out = {}
    for mid, g in r.groupby(r["member_id"].astype(str)):
        est = g[g["quality"] == "estimated"]
        if est.empty:
            continue
        total = float(g["kwh"].sum())
        rule = "; ".join(sorted(set(est["source"].astype(str))))
        out[mid] = {
            "kwh": _kwh(float(est["kwh"].sum())),
            "total": _kwh(total),
            "share": f"{float(est['kwh'].sum()) / total:.1%}" if total > 0 else "n/a",
            "intervals": str(len(est)),
            "rule": rule.removeprefix("ecm:estimate(").removesuffix(")"),
        }
    return out


def render_member_statements(
    day: dt.date,
    out_dir: Path,
    *,
    community_name: str,
    currency: str,
    allocations: pd.DataFrame,
    members: pd.DataFrame,
    settlement_rule: str,
    incentive_per_kwh: float,
    settlement: Mapping[str, Any] | None = None,
    readings: pd.DataFrame | None = None,
) -> list[Path]:
    """Write one statement per allocated member (and the community fund) plus an index.

    ``settlement`` (optional) is the day's ``settlement_versions`` row: each statement names
    the version, why it was made, its delta against the previous version and the approval.

    Parameters
    ----------
    day : datetime.date
        The community's local day.
    out_dir : pathlib.Path
        Report root; statements go to ``out_dir / f"{day}" / "statements"``.
    community_name : str
        Display name of the community.
    currency : str
        ISO 4217 currency of the amounts.
    allocations : pandas.DataFrame
        Allocation rows for every rule (``member_id``, ``rule``, ``shared_kwh`` [kWh],
        ``amount`` [currency, whole cents], ``consumption_kwh``, ``import_kwh``, ``export_kwh``
        [kWh], ``standalone_cost``, ``community_cost`` [currency], ``explanation``).
    members : pandas.DataFrame
        Members: ``member_id``, ``name``, ``kind``. An allocated id not listed here is the
        community owner and is labelled "Community fund".
    settlement_rule : str
        The rule that is billed; its amount is the member's credit.
    incentive_per_kwh : float
        Incentive rate on shared energy [currency/kWh].
    readings : pandas.DataFrame, optional
        The day's meter readings with their owner (``member_id``, ``kwh`` [kWh], ``quality``,
        ``source``): a member with estimated intervals sees their energy, share and rule.

    Returns
    -------
    list[pathlib.Path]
        The statements, in member order, then ``index.html``.

    Raises
    ------
    ValueError
        If no allocation row uses ``settlement_rule``, or a member id cannot be a file name.
    """
    _require(allocations, _ALLOCATION_COLUMNS, "allocations")
    _require(members, ("member_id", "name"), "members")
    if not (allocations["rule"] == settlement_rule).any():
        raise ValueError(f"allocations have no rows for settlement rule {settlement_rule!r}")
    names = _member_names(members, None)
    kinds = (
        dict(zip(members["member_id"].astype(str), members["kind"], strict=True))
        if "kind" in members.columns
        else {}
    )
    ids = _ordered_ids(allocations["member_id"].astype(str), set(names))
    for mid in ids:
        _check_filename(mid)
    rules = _ordered_rules(allocations["rule"].astype(str), settlement_rule)
    rule_label = RULE_LABELS.get(settlement_rule, settlement_rule)

    estimated = _estimated_shares(readings)
    st_dir = Path(out_dir) / f"{day}" / "statements"
    st_dir.mkdir(parents=True, exist_ok=True)
    template = _ENV.get_template("statement.html")
    paths: list[Path] = []
    index_rows = []
    total_amount = Decimal("0.00")
    total_shared = 0.0
    for mid in ids:
        rows = allocations[allocations["member_id"].astype(str) == mid]
        by_rule = {str(r["rule"]): r for _, r in rows.iterrows()}
        settle = by_rule.get(settlement_rule)
        label = names.get(mid, COMMUNITY_FUND_LABEL)
        credit = _to_cents(settle["amount"]) if settle is not None else None
        shared = float(settle["shared_kwh"]) if settle is not None else math.nan
        ref = settle if settle is not None else next(iter(by_rule.values()))
        html = template.render(
            community_name=community_name,
            day=f"{day}",
            name=label,
            member_id=mid,
            kind=_text(kinds.get(mid)),
            currency=currency,
            rule_label=rule_label,
            credit=_money(credit) if credit is not None else "n/a",
            shared=_kwh(shared),
            explanation=_text(settle.get("explanation")) if settle is not None else "",
            rules=[
                {
                    "label": RULE_LABELS.get(rule, rule),
                    "shared": _kwh(by_rule[rule]["shared_kwh"]),
                    "amount": _money(_to_cents(by_rule[rule]["amount"])),
                    "settles": rule == settlement_rule,
                }
                for rule in rules
                if rule in by_rule
            ],
            consumption=_kwh(ref["consumption_kwh"]),
            imported=_kwh(ref["import_kwh"]),
            exported=_kwh(ref["export_kwh"]),
            standalone_cost=_optional_money(ref.get("standalone_cost")),
            community_cost=_optional_money(ref.get("community_cost")),
            rule_description=RULE_DESCRIPTIONS.get(
                settlement_rule, f"the {settlement_rule} rule divides the community's benefit."
            ),
            incentive_rate=_rate(incentive_per_kwh),
            settlement=settlement,
            estimated=estimated.get(mid),
            delta=(
                _money(_to_cents(settle["delta"]))
                if settle is not None
                and "delta" in settle.index
                and settle["delta"] is not None
                and not pd.isna(settle["delta"])
                else ""
            ),
        )
        path = st_dir / f"{mid}.html"
        _atomic_write(path, html)
        paths.append(path)
        if credit is not None:
            total_amount += credit
            total_shared += shared
        index_rows.append(
            {
                "href": f"{quote(mid)}.html",
                "label": label,
                "member_id": mid,
                "shared": _kwh(shared),
                "amount": _money(credit) if credit is not None else "n/a",
            }
        )
    index = _ENV.get_template("index.html").render(
        community_name=community_name,
        day=f"{day}",
        currency=currency,
        rule_label=rule_label,
        rows=index_rows,
        total_shared=_kwh(total_shared),
        total_amount=_money(total_amount),
    )
    index_path = st_dir / "index.html"
    _atomic_write(index_path, index)
    paths.append(index_path)
    return paths


def _realised_context(
    realised: pd.DataFrame | None, summary: Mapping[str, float], currency: str
) -> dict[str, Any]:
    """Rows of the plan-vs-realised table (empty when the day is not realised)."""
    if realised is None or realised.empty:
        return {"realised_rows": []}
    rows = []
    for _, r in realised.iterrows():
        rows.append(
            {
                "controller": str(r["controller"]),
                "grid_cost": _fmt(r["grid_cost"]),
                "incentive": _fmt(r["incentive"]),
                "net_cost": _fmt(r["net_cost"]),
                "benefit": _fmt(r["benefit"]),
                "peak": _fmt(r["peak_import_kwh"], 1),
                "ramping": _fmt(r["ramping_kwh"], 1),
                "fallback": int(r["fallback_intervals"]),
            }
        )
    ecm = realised[realised["controller"] == "ecm"]
    plan_net = float(summary.get("expected_net_cost", float("nan")))
    real_net = float(ecm["net_cost"].iloc[0]) if len(ecm) else float("nan")
    return {
        "realised_rows": rows,
        "plan_net_cost": f"{_fmt(plan_net)} {currency}",
        "realised_net_cost": f"{_fmt(real_net)} {currency}",
        "realised_vs_plan": f"{real_net - plan_net:+.2f} {currency} against the plan",
    }


def write_plotlyjs(directory: Path) -> Path:
    """Write the bundled ``plotly.min.js`` into ``directory`` unless an identical one is there.

    Parameters
    ----------
    directory : pathlib.Path
        Target directory (must exist).

    Returns
    -------
    pathlib.Path
        Path of the plotly.js file.
    """
    js = get_plotlyjs()
    path = Path(directory) / PLOTLY_JS
    data = js.encode("utf-8")
    if not (path.is_file() and path.stat().st_size == len(data)):
        _atomic_write(path, data)
    return path


# ---------------------------------------------------------------------------------------------
# Helpers: validation, formatting, files
# ---------------------------------------------------------------------------------------------


def _require(df: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")


def _atomic_write(path: Path, content: str | bytes) -> None:
    """Write via a temporary file and rename, so readers never see a partial file."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_filename(member_id: str) -> None:
    bad = (
        not member_id
        or member_id in {".", ".."}
        or member_id.startswith(".")
        or any(c in member_id for c in "/\\\0:")
        or member_id.lower() == "index"
    )
    if bad:
        raise ValueError(f"member id {member_id!r} cannot be used as a statement file name")


def _to_cents(value: Any) -> Decimal:
    """A money amount as a whole-cent Decimal [currency]."""
    if isinstance(value, Decimal):
        d = value
    else:
        try:
            d = Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError(f"amount {value!r} is not a number") from exc
    if not d.is_finite():
        raise ValueError(f"amount {value!r} is not finite")
    return d.quantize(_CENT, rounding=ROUND_HALF_UP)


def _decimal_sum(values: Iterable[Any]) -> Decimal:
    return sum((_to_cents(v) for v in values), Decimal("0.00"))


def _money(d: Decimal) -> str:
    """Format a Decimal amount with 2 decimals and thousands separators."""
    d = d.quantize(_CENT, rounding=ROUND_HALF_UP)
    if d == 0:
        d = Decimal("0.00")  # no "-0.00"
    return f"{d:,.2f}"


def _fmt(x: Any, decimals: int = 2) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    if round(v, decimals) == 0:
        v = 0.0
    return f"{v:,.{decimals}f}"


def _kwh(x: Any) -> str:
    return _fmt(x, 2)


def _missing(x: Any) -> bool:
    return x is None or (pd.api.types.is_scalar(x) and bool(pd.isna(x)))


def _optional_money(x: Any) -> str:
    if _missing(x):
        return ""
    return _money(_to_cents(x))


def _rate(x: float) -> str:
    """A rate with at least 2 and at most 6 decimals [currency/kWh]."""
    s = f"{float(x):.6f}".rstrip("0")
    whole, _, frac = s.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _text(x: Any) -> str:
    if _missing(x):
        return ""
    return str(x)


def _member_names(members: pd.DataFrame | None, owner_id: str | None) -> dict[str, str]:
    names: dict[str, str] = {}
    if members is not None and len(members):
        for mid, name in zip(members["member_id"].astype(str), members["name"], strict=True):
            names[mid] = _text(name) or mid
    if owner_id is not None:
        names.setdefault(owner_id, COMMUNITY_FUND_LABEL)
    return names


def _ordered_ids(
    ids: Iterable[str], known: set[str] | None = None, owner: str | None = None
) -> list[str]:
    """Unique ids, sorted, with the community owner (unknown ids or ``owner``) last."""

    def is_owner(m: str) -> bool:
        return m == owner or (known is not None and owner is None and m not in known)

    return sorted(dict.fromkeys(ids), key=lambda m: (is_owner(m), m))


def _ordered_rules(rules: Iterable[str], settlement_rule: str) -> list[str]:
    return sorted(dict.fromkeys(rules), key=lambda r: (r != settlement_rule, r))


def _settlement_rows(allocations: pd.DataFrame, settlement_rule: str) -> pd.DataFrame:
    if allocations.empty:
        return allocations
    return allocations[allocations["rule"].astype(str) == settlement_rule]


def _severity_counts(anomalies: pd.DataFrame) -> dict[str, int]:
    if anomalies.empty:
        return {}
    vc = anomalies["severity"].astype(str).str.lower().value_counts()
    return {str(k): int(v) for k, v in vc.items()}


def _time_labels(
    axis: pd.DatetimeIndex, zone: zoneinfo.ZoneInfo, day: dt.date
) -> dict[pd.Timestamp, str]:
    """Unique local-time labels of UTC timestamps: ``HH:MM TZ`` (with the date if off ``day``).

    The zone abbreviation keeps the repeated hour of an autumn DST day distinct.
    """
    local = axis.tz_convert(zone)
    same_day = all(t.date() == pd.Timestamp(day).date() for t in local)
    fmt = "%H:%M %Z" if same_day else "%Y-%m-%d %H:%M %Z"
    labels = [t.strftime(fmt) for t in local]
    if len(set(labels)) < len(labels):  # cannot happen with real zones; stay unique anyway
        labels = [t.isoformat() for t in local]
    return dict(zip(axis, labels, strict=True))


def _local_when(start: Any, end: Any, zone: zoneinfo.ZoneInfo) -> str:
    s = pd.Timestamp(start) if start is not None and not pd.isna(start) else None
    e = pd.Timestamp(end) if end is not None and not pd.isna(end) else None
    if s is None:
        return "n/a"
    s = (s.tz_localize("UTC") if s.tzinfo is None else s).tz_convert(zone)
    text = s.strftime("%Y-%m-%d %H:%M %Z")
    if e is not None:
        e = (e.tz_localize("UTC") if e.tzinfo is None else e).tz_convert(zone)
        text += " – " + e.strftime("%H:%M %Z" if e.date() == s.date() else "%Y-%m-%d %H:%M %Z")
    return text


# ---------------------------------------------------------------------------------------------
# Helpers: report content
# ---------------------------------------------------------------------------------------------


def _cost_rows(figures: Mapping[str, float | int | str]) -> list[dict[str, str]]:
    def row(label: str, plan_key: str, base_key: str) -> dict[str, str]:
        p, b = float(figures[plan_key]), float(figures[base_key])
        return {"label": label, "plan": _fmt(p), "baseline": _fmt(b), "diff": _fmt(p - b)}

    return [
        row("Expected grid cost", "expected_cost", "no_battery_cost"),
        row("Expected incentive", "expected_incentive", "no_battery_incentive"),
        row("Expected net cost", "expected_net_cost", "no_battery_net_cost"),
    ]


def _solve_value(key: str, value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    unit = " s" if key.endswith(("_s", "_seconds", "seconds", "time")) else ""
    if isinstance(value, int):
        return f"{value:,}{unit}"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return f"{text}{unit}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_solve_value(str(k), v)}" for k, v in value.items())
    return str(value)


def _headline(
    figures: Mapping[str, float | int | str],
    settlement_total: Decimal,
    kinds: set[str],
    solve_info: Mapping[str, object],
    currency: str,
) -> list[tuple[str, str]]:
    rule = str(figures["settlement_rule"])
    rows = [
        (f"Expected savings [{currency}]", _fmt(figures["expected_savings"])),
        (f"Expected incentive [{currency}]", _fmt(figures["expected_incentive"])),
        ("Expected shared energy [kWh]", _kwh(figures["expected_shared_kwh"])),
        (f"Allocated under {RULE_LABELS.get(rule, rule)} [{currency}]", _money(settlement_total)),
        ("Plan kind", ", ".join(sorted(kinds)) or "n/a"),
    ]
    for key, value in solve_info.items():
        if key in ("reason", "plan_kind") and value in (None, ""):
            continue
        rows.append((f"Solver: {str(key).replace('_', ' ')}", _solve_value(str(key), value)))
    sev = ", ".join(f"{s} {figures[f'anomalies_{s}']}" for s in SEVERITIES)
    rows.append(("Anomalies", f"{figures['anomalies']} ({sev})"))
    return rows


def _figure_html(fig: go.Figure, div_id: str) -> Markup:
    html = fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False}
    )
    return Markup(html)  # plotly's own output; its JSON escapes "<" in data strings


def _category_axis(fig: go.Figure, labels: Mapping[pd.Timestamp, str], tz: str) -> None:
    fig.update_xaxes(
        type="category",
        categoryorder="array",
        categoryarray=list(labels.values()),
        title_text=f"local time ({tz})",
    )
    fig.update_layout(
        height=420,
        margin={"l": 60, "r": 60, "t": 30, "b": 60},
        legend={"orientation": "h", "y": -0.25},
        hovermode="x unified",
    )


def _x(index: Iterable[pd.Timestamp], labels: Mapping[pd.Timestamp, str]) -> list[str]:
    return [labels[t] for t in index]


def _forecast_totals(forecasts: pd.DataFrame, target: str) -> pd.DataFrame:
    """Community totals of one target by ts: series averaged over models, summed over ids."""
    f = forecasts[forecasts["target"].astype(str) == target]
    cols = ["point", "q10", "q90"]
    if f.empty:
        return pd.DataFrame(columns=cols, index=pd.DatetimeIndex([], tz="UTC", name="ts"))
    per_series = f.groupby(["unique_id", "ts"])[cols].mean()
    return per_series.groupby(level="ts").sum(min_count=1).sort_index()


def _band(
    fig: go.Figure,
    x: list[str],
    lo: pd.Series,
    hi: pd.Series,
    name: str,
    rgba: str,
    secondary_y: bool = False,
) -> None:
    if lo.isna().all() or hi.isna().all():
        return
    fig.add_trace(
        go.Scatter(
            x=x,
            y=hi.to_numpy(),
            mode="lines",
            line={"width": 0},
            showlegend=False,
            hoverinfo="skip",
            legendgroup=name,
        ),
        secondary_y=secondary_y,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=lo.to_numpy(),
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=rgba,
            name=name,
            legendgroup=name,
        ),
        secondary_y=secondary_y,
    )


def _forecast_figure(
    forecasts: pd.DataFrame, labels: Mapping[pd.Timestamp, str], tz: str, currency: str
) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for target, color, rgba in (
        ("load", "#1f77b4", "rgba(31,119,180,0.2)"),
        ("pv", "#ff9f1c", "rgba(255,159,28,0.25)"),
    ):
        tot = _forecast_totals(forecasts, target)
        if tot.empty:
            continue
        x = _x(tot.index, labels)
        name = "load" if target == "load" else "PV"
        _band(fig, x, tot["q10"], tot["q90"], f"{name} q10–q90", rgba)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=tot["point"].to_numpy(),
                mode="lines",
                name=f"{name} forecast [kWh]",
                line={"color": color},
            )
        )
    price = forecasts[forecasts["target"].astype(str) == "price"]
    if (price["unique_id"].astype(str) == "import").any():
        price = price[price["unique_id"].astype(str) == "import"]
    if not price.empty:
        p = price.groupby("ts")["point"].mean().sort_index()
        fig.add_trace(
            go.Scatter(
                x=_x(p.index, labels),
                y=p.to_numpy(),
                mode="lines",
                name=f"import price [{currency}/kWh]",
                line={"color": "#6c757d", "dash": "dot", "shape": "hv"},
            ),
            secondary_y=True,
        )
    _category_axis(fig, labels, tz)
    fig.update_yaxes(title_text="energy per interval [kWh]", secondary_y=False)
    fig.update_yaxes(title_text=f"price [{currency}/kWh]", secondary_y=True)
    return fig


def _battery_figure(
    expected: pd.DataFrame, labels: Mapping[pd.Timestamp, str], tz: str, owner_id: str
) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    is_owner = expected["member_id"].astype(str) == owner_id
    groups = (
        ("home batteries", expected[~is_owner], "#2a9d8f", "#264653"),
        ("shared battery", expected[is_owner], "#e76f51", "#9c2c13"),
    )
    for name, rows, bar_color, line_color in groups:
        if rows.empty:
            continue
        g = rows.groupby("ts")[["charge_kwh", "discharge_kwh", "soc_kwh"]].sum().sort_index()
        x = _x(g.index, labels)
        fig.add_trace(
            go.Bar(
                x=x,
                y=g["charge_kwh"].to_numpy(),
                name=f"{name}: charge [kWh]",
                marker_color=bar_color,
                opacity=0.9,
            )
        )
        fig.add_trace(
            go.Bar(
                x=x,
                y=-g["discharge_kwh"].to_numpy(),
                name=f"{name}: discharge [kWh]",
                marker_color=bar_color,
                opacity=0.5,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=g["soc_kwh"].to_numpy(),
                mode="lines",
                name=f"{name}: state of charge [kWh]",
                line={"color": line_color},
            ),
            secondary_y=True,
        )
    _category_axis(fig, labels, tz)
    fig.update_layout(barmode="relative")
    fig.update_yaxes(title_text="charge (+) / discharge (−) [kWh]", secondary_y=False)
    fig.update_yaxes(
        title_text="state of charge at interval end [kWh]", secondary_y=True, rangemode="tozero"
    )
    return fig


def _community_shared(rows: pd.DataFrame) -> pd.Series:
    """Community shared energy by ts for one scenario [kWh].

    The column holds the community-level value, repeated on every member row; if it instead
    varies between the rows of an interval, it is read as per-member shares and summed.
    """
    g = rows.groupby("ts")["community_shared_kwh"]
    if rows["member_id"].nunique() > 1 and (g.nunique(dropna=False) <= 1).all():
        return g.first().sort_index()
    return g.sum().sort_index()


def _grid_figure(plan: pd.DataFrame, labels: Mapping[pd.Timestamp, str], tz: str) -> go.Figure:
    fig = go.Figure()
    scen = plan["scenario"].astype(str)
    first = True
    for s in sorted(set(scen) - {"expected"}):
        g = plan[scen == s].groupby("ts")[["import_kwh", "export_kwh"]].sum().sort_index()
        x = _x(g.index, labels)
        for col, color in (
            ("import_kwh", "rgba(31,119,180,0.18)"),
            ("export_kwh", "rgba(214,39,40,0.18)"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=g[col].to_numpy(),
                    mode="lines",
                    line={"color": color, "width": 1},
                    name=f"scenarios: {col.split('_')[0]}",
                    legendgroup=f"scen-{col}",
                    showlegend=first,
                    hoverinfo="skip",
                )
            )
        first = False
    exp = plan[scen == "expected"]
    g = exp.groupby("ts")[["import_kwh", "export_kwh"]].sum().sort_index()
    x = _x(g.index, labels)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=g["import_kwh"].to_numpy(),
            mode="lines",
            name="import, expected [kWh]",
            line={"color": "#1f77b4", "width": 3},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=g["export_kwh"].to_numpy(),
            mode="lines",
            name="export, expected [kWh]",
            line={"color": "#d62728", "width": 3},
        )
    )
    shared = _community_shared(exp)
    fig.add_trace(
        go.Scatter(
            x=_x(shared.index, labels),
            y=shared.to_numpy(),
            mode="lines",
            name="shared energy, expected [kWh]",
            fill="tozeroy",
            line={"color": "#2ca02c", "width": 2},
            fillcolor="rgba(44,160,44,0.2)",
        )
    )
    _category_axis(fig, labels, tz)
    fig.update_yaxes(title_text="energy per interval [kWh]", rangemode="tozero")
    return fig


def _member_plan_rows(
    expected: pd.DataFrame, names: Mapping[str, str], owner_id: str
) -> list[dict[str, Any]]:
    e = expected.assign(
        member_id=expected["member_id"].astype(str),
        throughput=expected["charge_kwh"] + expected["discharge_kwh"],
        cost=expected["import_kwh"] * expected["import_price"]
        - expected["export_kwh"] * expected["export_price"],
    )
    cols = ["load_kwh", "pv_kwh", "import_kwh", "export_kwh", "throughput", "cost"]
    g = e.groupby("member_id")[cols].sum()
    rows: list[dict[str, Any]] = []

    def row(label: str, mid: str, r: pd.Series, total: bool = False) -> dict[str, Any]:
        return {
            "label": label,
            "member_id": mid,
            "load": _kwh(r["load_kwh"]),
            "pv": _kwh(r["pv_kwh"]),
            "imp": _kwh(r["import_kwh"]),
            "exp": _kwh(r["export_kwh"]),
            "throughput": _kwh(r["throughput"]),
            "cost": _fmt(r["cost"]),
            "total": total,
        }

    for mid in _ordered_ids(g.index, owner=owner_id):
        rows.append(row(names.get(mid, mid), mid, g.loc[mid]))
    rows.append(row("Total", "", g.sum(), total=True))
    return rows


def _anomaly_context(anomalies: pd.DataFrame, zone: zoneinfo.ZoneInfo) -> dict[str, Any]:
    if anomalies.empty:
        return {"anomalies": [], "anomalies_hidden": 0, "anomaly_cases": ""}
    if "case_status" not in anomalies:
        anomalies = anomalies.assign(case_id=None, case_status=None, case_new=False)
    # new cases first, then the other active ones, then what a dismissal swallows
    new = anomalies["case_new"].fillna(False).astype(bool)
    status = anomalies["case_status"].astype(object)
    stage = np.where(new, 0, np.where(status.isin(["dismissed", "resolved"]), 2, 1))
    a = anomalies.assign(
        _stage=stage,
        _rank=anomalies["severity"]
        .astype(str)
        .str.lower()
        .map({s: i for i, s in enumerate(SEVERITIES)})
        .fillna(len(SEVERITIES)),
        _start=pd.to_datetime(anomalies["ts_start"], utc=True),
    ).sort_values(
        ["_stage", "_rank", "_start", "rule", "subject_id"], kind="stable", na_position="last"
    )
    top = a.head(TOP_ANOMALIES)
    rows = []
    for _, r in top.iterrows():
        sev = _text(r["severity"]).lower()
        cid, st = r.get("case_id"), r.get("case_status")
        known = isinstance(cid, str)
        case = (
            f"{cid} new" if known and bool(r.get("case_new")) else (f"{cid} {st}" if known else "")
        )
        rows.append(
            {
                "case": case,
                "case_class": "new" if known and bool(r.get("case_new")) else _text(st or "none"),
                "severity": _text(r["severity"]),
                "severity_class": sev if sev in SEVERITIES else "low",
                "rule": _text(r["rule"]),
                "subject": _text(r["subject_id"]),
                "when": _local_when(r["ts_start"], r["ts_end"], zone),
                "message": _text(r["message"]),
            }
        )
    n_new = int(new.sum())
    n_quiet = int((stage == 2).sum())
    summary = (
        f"{len(a)} flags: {n_new} open a new case, {len(a) - n_new - n_quiet} join open cases"
        + (f", {n_quiet} fall under dismissed cases" if n_quiet else "")
        + " (ecm triage list)."
    )
    return {
        "anomalies": rows,
        "anomalies_hidden": max(0, len(a) - TOP_ANOMALIES),
        "anomaly_cases": summary,
    }


def _allocation_tables(
    allocations: pd.DataFrame, settlement_rule: str, names: Mapping[str, str], owner_id: str
) -> list[dict[str, Any]]:
    if allocations.empty:
        return []
    tables = []
    rule_col = allocations["rule"].astype(str)
    for rule in _ordered_rules(rule_col, settlement_rule):
        sub = allocations[rule_col == rule].assign(member_id=lambda d: d["member_id"].astype(str))
        rows = []
        total = Decimal("0.00")
        for mid in _ordered_ids(sub["member_id"], owner=owner_id):
            r = sub[sub["member_id"] == mid]
            amount = _decimal_sum(r["amount"])
            total += amount
            rows.append(
                {
                    "label": names.get(mid, mid),
                    "member_id": mid,
                    "shared": _kwh(r["shared_kwh"].sum()),
                    "amount": _money(amount),
                }
            )
        tables.append(
            {
                "rule": rule,
                "label": RULE_LABELS.get(rule, rule),
                "settles": rule == settlement_rule,
                "rows": rows,
                "total_shared": _kwh(sub["shared_kwh"].sum()),
                "total_amount": _money(total),
            }
        )
    return tables
