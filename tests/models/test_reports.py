"""Tests for models.reports: the plan report and the member statements, rendered offline.

The synthetic community has two members (one of them with a hostile name) and the community
owner holding a shared PV plant and a shared battery. The main day is 2016-11-06 in
America/Los_Angeles, the 25-hour day when daylight-saving time ends.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.reports import (
    COMMUNITY_FUND_LABEL,
    PLOTLY_JS,
    SUMMARY_KEYS,
    key_figures,
    render_member_statements,
    render_plan_report,
)
from models.timeutil import day_intervals_utc

TZ = "America/Los_Angeles"
DST_DAY = dt.date(2016, 11, 6)
EVIL = "<script>alert(1)</script>"
OWNER = "COMMUNITY"
MEMBERS = ("M01", "M02")


def _members() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "member_id": ["M01", "M02"],
            "name": ["Household 1", EVIL],
            "kind": ["household", "business"],
            "pv_kwp": [4.0, 5.0],
        }
    )


def _forecasts(day: dt.date) -> pd.DataFrame:
    ts = day_intervals_utc(day, TZ)
    hours = np.arange(len(ts))
    rows = []
    for uid, target, base in (
        ("M01", "load", 1.0),
        ("M02", "load", 1.5),
        ("M01", "pv", 0.8),
        ("CPV", "pv", 3.0),
        ("import", "price", 0.2),
    ):
        point = base * (1 + 0.5 * np.sin(hours / 4))
        for t, p in zip(ts, point, strict=True):
            rows.append(
                {
                    "target": target,
                    "unique_id": uid,
                    "model": "lgbm",
                    "ts": t,
                    "point": p,
                    "q10": 0.8 * p,
                    "q50": p,
                    "q90": 1.2 * p,
                }
            )
    return pd.DataFrame(rows)


def _plan(day: dt.date, kind: str = "optimal") -> pd.DataFrame:
    ts = day_intervals_utc(day, TZ)
    rows = []
    for scenario, prob in (("expected", 1.0), ("s0", 0.5), ("s1", 0.5)):
        for mid, scale in (("M01", 1.0), ("M02", 1.5), (OWNER, 0.0)):
            for i, t in enumerate(ts):
                rows.append(
                    {
                        "member_id": mid,
                        "ts": t,
                        "scenario": scenario,
                        "probability": prob,
                        "load_kwh": scale,
                        "pv_kwh": 0.5 if mid != OWNER else 3.0,
                        "charge_kwh": 0.2 if i % 2 else 0.0,
                        "discharge_kwh": 0.0 if i % 2 else 0.2,
                        "soc_kwh": 2.0 + 0.1 * (i % 2),
                        "import_kwh": 0.5 * scale,
                        "export_kwh": 1.0 if mid == OWNER else 0.0,
                        "import_price": 0.2,
                        "export_price": 0.05,
                        "community_shared_kwh": 1.0,
                        "plan_kind": kind,
                    }
                )
    return pd.DataFrame(rows)


def _summary() -> dict[str, float]:
    return {
        "expected_cost": 12.5,
        "expected_incentive": 2.75,
        "expected_net_cost": 9.75,
        "no_battery_cost": 14.0,
        "no_battery_incentive": 2.5,
        "no_battery_net_cost": 11.5,
        "expected_savings": 1.75,
        "expected_shared_kwh": 25.0,
    }


def _anomalies(day: dt.date, n: int = 3) -> pd.DataFrame:
    ts = day_intervals_utc(day, TZ)
    sev = ["low", "high", "medium"]
    return pd.DataFrame(
        {
            "day": [day] * n,
            "rule": ["spike"] * n,
            "severity": [sev[i % 3] for i in range(n)],
            "subject_id": [f"MP-0{i}-C" for i in range(n)],
            "ts_start": [ts[1 + i % 20] for i in range(n)],
            "ts_end": [ts[2 + i % 20] for i in range(n)],
            "message": [f"reading <b>{i}</b> is 10x the median" for i in range(n)],
            "evidence": ["{}"] * n,
        }
    )


AMOUNTS = {
    "pro_rata_consumption": {"M01": "1.10", "M02": "2.20", OWNER: "0.33"},
    "shapley": {"M01": "1234.57", "M02": "0.01", OWNER: "-0.05"},
}


def _allocations(day: dt.date, rule: str = "shapley") -> pd.DataFrame:
    rows = []
    for r, amounts in AMOUNTS.items():
        for mid, amount in amounts.items():
            rows.append(
                {
                    "day": day,
                    "member_id": mid,
                    "rule": r,
                    "shared_kwh": 3.25,
                    "amount": Decimal(amount),
                    "currency": "USD",
                    "consumption_kwh": 20.0,
                    "import_kwh": 12.0,
                    "export_kwh": 1.5,
                    "standalone_cost": 4.0,
                    "community_cost": 3.5,
                    "is_settlement": r == rule,
                    "explanation": f"{mid} gets {amount} because <i>reasons</i> under {r}",
                }
            )
    return pd.DataFrame(rows)


def _render_plan(
    tmp_path: Path,
    day: dt.date = DST_DAY,
    kind: str = "optimal",
    solve_info: dict[str, object] | None = None,
    **kw: object,
) -> Path:
    args: dict[str, object] = {
        "community_name": "Sierra <Crest>",
        "currency": "USD",
        "tz": TZ,
        "forecasts": _forecasts(day),
        "plan": _plan(day, kind),
        "summary": _summary(),
        "anomalies": _anomalies(day),
        "allocations": _allocations(day),
        "settlement_rule": "shapley",
        "solve_info": solve_info
        if solve_info is not None
        else {
            "termination": "optimal",
            "solver": "highs",
            "build_seconds": 0.42,
            "solve_seconds": 1.5,
            "iterations": 1234,
        },
        "members": _members(),
    }
    args.update(kw)
    return render_plan_report(day, tmp_path, **args)  # type: ignore[arg-type]


def _render_statements(tmp_path: Path, day: dt.date = DST_DAY, rule: str = "shapley") -> list[Path]:
    return render_member_statements(
        day,
        tmp_path,
        community_name="Sierra <Crest>",
        currency="USD",
        allocations=_allocations(day, rule),
        members=_members(),
        settlement_rule=rule,
        incentive_per_kwh=0.11,
    )


# ---------------------------------------------------------------------------------------------
# Plan report
# ---------------------------------------------------------------------------------------------


def test_plan_report_written_with_local_plotlyjs(tmp_path: Path) -> None:
    path = _render_plan(tmp_path)
    assert path == tmp_path / "2016-11-06" / "plan.html"
    assert path.is_file()
    js = path.parent / PLOTLY_JS
    assert js.is_file() and js.stat().st_size > 1_000_000
    assert js.read_bytes().startswith(b"/**") and b"plotly" in js.read_bytes()[:2000].lower()
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others, not mkstemp's 0600
    text = path.read_text(encoding="utf-8")
    assert f'<script src="{PLOTLY_JS}"></script>' in text
    assert "cdn.plot.ly" not in text and "https://" not in text
    for div in ("fig-forecasts", "fig-batteries", "fig-grid"):
        assert f'id="{div}"' in text


def test_plotlyjs_written_once(tmp_path: Path) -> None:
    js = _render_plan(tmp_path).parent / PLOTLY_JS
    before = js.stat().st_mtime_ns
    _render_plan(tmp_path, kind="fallback")
    assert js.stat().st_mtime_ns == before
    assert not list(js.parent.glob(".*.tmp"))


def test_plan_report_dst_day_shows_both_one_oclocks(tmp_path: Path) -> None:
    assert len(day_intervals_utc(DST_DAY, TZ)) == 25
    text = _render_plan(tmp_path).read_text(encoding="utf-8")
    assert "01:00 PDT" in text and "01:00 PST" in text
    assert "25 intervals" in text
    assert "America/Los_Angeles (PDT/PST)" in text


def test_plan_report_escapes_data(tmp_path: Path) -> None:
    text = _render_plan(tmp_path).read_text(encoding="utf-8")
    assert EVIL not in text
    assert html.escape(EVIL) in text  # the member name, escaped, in the tables
    assert "Sierra &lt;Crest&gt;" in text
    assert "<b>0</b>" not in text and "reading &lt;b&gt;0&lt;/b&gt;" in text
    assert COMMUNITY_FUND_LABEL in text


def test_fallback_banner_only_for_fallback_plans(tmp_path: Path) -> None:
    optimal = _render_plan(tmp_path / "a").read_text(encoding="utf-8")
    assert "fallback-banner" not in optimal
    assert "rule-based fallback plan" not in optimal
    fallback = _render_plan(
        tmp_path / "b",
        kind="fallback",
        solve_info={"termination": "infeasible", "reason": "solver <highs> reported infeasible"},
    ).read_text(encoding="utf-8")
    assert "fallback-banner" in fallback
    banner = re.search(r'<div class="banner" id="fallback-banner">(.*?)</div>', fallback, re.S)
    assert banner is not None
    assert " ".join(banner.group(1).split()) == (
        "rule-based fallback plan: the optimiser failed: solver &lt;highs&gt; reported infeasible"
    )


def test_plan_report_headline_and_solver_info(tmp_path: Path) -> None:
    text = _render_plan(tmp_path).read_text(encoding="utf-8")
    key = re.search(r'<table id="key-costs">(.*?)</table>', text, re.S)
    assert key is not None
    for value in ("9.75", "11.50", "-1.75", "12.50", "14.00", "2.75", "2.50"):
        assert f">{value}<" in key.group(1)
    assert "Solver: termination</th><td>optimal" in text
    assert "Solver: solve seconds</th><td>1.5 s" in text
    assert "Solver: iterations</th><td>1,234" in text
    assert "Anomalies</th><td>3 (high 1, medium 1, low 1)" in text


def test_anomalies_top_ten_sorted_by_severity(tmp_path: Path) -> None:
    text = _render_plan(tmp_path, anomalies=_anomalies(DST_DAY, 14)).read_text(encoding="utf-8")
    table = re.search(r'<table id="anomalies">(.*?)</table>', text, re.S)
    assert table is not None
    sevs = re.findall(r'<td class="sev-(\w+)">', table.group(1))
    assert len(sevs) == 10
    assert sevs == sorted(sevs, key=["high", "medium", "low"].index)
    assert "4 more not shown" in text
    assert "PDT –" in table.group(1) or "PST –" in table.group(1)


def test_empty_anomalies(tmp_path: Path) -> None:
    empty = _anomalies(DST_DAY).iloc[0:0]
    text = _render_plan(tmp_path, anomalies=empty).read_text(encoding="utf-8")
    assert 'id="no-anomalies"' in text


def test_plan_report_allocation_totals_are_decimal_sums(tmp_path: Path) -> None:
    text = _render_plan(tmp_path).read_text(encoding="utf-8")
    for rule, amounts in AMOUNTS.items():
        m = re.search(rf'id="alloc-total-{rule}">([^<]*)<', text)
        assert m is not None
        expected = sum((Decimal(a) for a in amounts.values()), Decimal("0"))
        assert Decimal(m.group(1).replace(",", "")) == expected
        table = re.search(rf'<table class="allocation" id="alloc-{rule}">(.*?)</table>', text, re.S)
        assert table is not None
        shown = re.findall(r'<td class="num">(-?[\d,]+\.\d\d)</td>\s*</tr>', table.group(1))
        assert sum(Decimal(s.replace(",", "")) for s in shown) == expected
    assert "1,234.57" in text


def test_plan_report_accepts_float_amounts(tmp_path: Path) -> None:
    alloc = _allocations(DST_DAY)
    alloc["amount"] = [0.1, 0.2, 0.3, 0.1, 0.2, 0.3]
    text = _render_plan(tmp_path, allocations=alloc).read_text(encoding="utf-8")
    assert re.search(r'id="alloc-total-shapley">0.60<', text)


def test_plan_report_requires_expected_scenario(tmp_path: Path) -> None:
    plan = _plan(DST_DAY)
    with pytest.raises(ValueError, match="expected"):
        _render_plan(tmp_path, plan=plan[plan["scenario"] != "expected"])


def test_plan_report_normal_summer_day(tmp_path: Path) -> None:
    day = dt.date(2017, 6, 14)
    text = _render_plan(tmp_path, day=day).read_text(encoding="utf-8")
    assert "24 intervals" in text and "01:00 PDT" in text and "PST" not in text


# ---------------------------------------------------------------------------------------------
# Key figures
# ---------------------------------------------------------------------------------------------


def test_key_figures_match_summary() -> None:
    kf = key_figures(_summary(), _allocations(DST_DAY), _anomalies(DST_DAY, 5), "shapley")
    for key in SUMMARY_KEYS:
        assert kf[key] == _summary()[key]
    assert kf["settlement_rule"] == "shapley"
    assert kf["settlement_total"] == float(Decimal("1234.57") + Decimal("0.01") - Decimal("0.05"))
    assert kf["settlement_shared_kwh"] == pytest.approx(3 * 3.25)
    assert kf["members_allocated"] == 3
    assert (kf["anomalies"], kf["anomalies_high"], kf["anomalies_medium"], kf["anomalies_low"]) == (
        5,
        2,
        1,
        2,
    )
    assert all(isinstance(v, float | int | str) for v in kf.values())


def test_key_figures_empty_inputs_and_missing_keys() -> None:
    kf = key_figures(
        _summary(), _allocations(DST_DAY).iloc[0:0], _anomalies(DST_DAY).iloc[0:0], "shapley"
    )
    assert kf["settlement_total"] == 0.0 and kf["anomalies"] == 0 and kf["anomalies_high"] == 0
    summary = _summary()
    del summary["expected_savings"]
    with pytest.raises(KeyError, match="expected_savings"):
        key_figures(summary, _allocations(DST_DAY), _anomalies(DST_DAY), "shapley")


# ---------------------------------------------------------------------------------------------
# Member statements
# ---------------------------------------------------------------------------------------------


def test_statements_written_for_every_member_and_index(tmp_path: Path) -> None:
    paths = _render_statements(tmp_path)
    st = tmp_path / "2016-11-06" / "statements"
    assert paths == [st / "M01.html", st / "M02.html", st / f"{OWNER}.html", st / "index.html"]
    assert all(p.is_file() for p in paths)


def test_statement_escapes_name_and_shows_credit(tmp_path: Path) -> None:
    _render_statements(tmp_path)
    text = (tmp_path / "2016-11-06" / "statements" / "M02.html").read_text(encoding="utf-8")
    assert EVIL not in text
    assert f'<strong id="member-name">{html.escape(EVIL)}</strong>' in text
    assert '<p class="credit" id="credit">0.01 USD</p>' in text
    assert "&lt;i&gt;reasons&lt;/i&gt;" in text and "<i>" not in text
    rules = re.search(r'<table id="rules">(.*?)</table>', text, re.S)
    assert rules is not None
    assert ">2.20<" in rules.group(1) and ">0.01<" in rules.group(1)  # both rules compared
    assert "3.25 kWh" in text and "20.00 kWh" in text and "12.00 kWh" in text
    assert "1.50 kWh" in text
    assert "0.11 USD per kWh" in text and "Shapley" in text


def test_statement_big_amount_and_community_fund(tmp_path: Path) -> None:
    _render_statements(tmp_path)
    st = tmp_path / "2016-11-06" / "statements"
    m01 = (st / "M01.html").read_text(encoding="utf-8")
    assert '<p class="credit" id="credit">1,234.57 USD</p>' in m01
    fund = (st / f"{OWNER}.html").read_text(encoding="utf-8")
    assert f'<strong id="member-name">{COMMUNITY_FUND_LABEL}</strong>' in fund
    assert '<p class="credit" id="credit">-0.05 USD</p>' in fund


def test_statements_under_other_settlement_rule(tmp_path: Path) -> None:
    _render_statements(tmp_path, rule="pro_rata_consumption")
    st = tmp_path / "2016-11-06" / "statements"
    text = (st / "M01.html").read_text(encoding="utf-8")
    assert '<p class="credit" id="credit">1.10 USD</p>' in text
    assert "in proportion to each member&#39;s consumption" in text


def test_statement_index_total_is_decimal_sum(tmp_path: Path) -> None:
    _render_statements(tmp_path)
    index = (tmp_path / "2016-11-06" / "statements" / "index.html").read_text(encoding="utf-8")
    m = re.search(r'id="statements-total">([^<]*)<', index)
    assert m is not None
    assert Decimal(m.group(1).replace(",", "")) == sum(
        (Decimal(a) for a in AMOUNTS["shapley"].values()), Decimal("0")
    )
    assert 'href="M02.html"' in index and html.escape(EVIL) in index and EVIL not in index


def test_statements_reject_unsafe_ids_and_unknown_rule(tmp_path: Path) -> None:
    alloc = _allocations(DST_DAY)
    alloc.loc[alloc["member_id"] == "M01", "member_id"] = "../evil"
    with pytest.raises(ValueError, match="file name"):
        render_member_statements(
            DST_DAY,
            tmp_path,
            community_name="c",
            currency="USD",
            allocations=alloc,
            members=_members(),
            settlement_rule="shapley",
            incentive_per_kwh=0.1,
        )
    with pytest.raises(ValueError, match="settlement rule"):
        render_member_statements(
            DST_DAY,
            tmp_path,
            community_name="c",
            currency="USD",
            allocations=_allocations(DST_DAY),
            members=_members(),
            settlement_rule="nucleolus",
            incentive_per_kwh=0.1,
        )
    assert not (tmp_path / "../evil.html").exists()
