"""The triage queue: daily flags join active cases, dismissals suppress, changes recorded."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.triage import TriageError, case_id, change, list_cases, update_cases
from models.warehouse import Warehouse

D0 = dt.date(2017, 6, 1)


def _day(i: int) -> dt.date:
    return D0 + dt.timedelta(days=i)


def _flags(day: dt.date, *items: tuple[str, str, str]) -> pd.DataFrame:
    start = pd.Timestamp(day, tz="UTC")
    return pd.DataFrame(
        {
            "day": day,
            "rule": [r for r, _, _ in items],
            "severity": [s for _, _, s in items],
            "subject_id": [x for _, x, _ in items],
            "ts_start": start,
            "ts_end": start + pd.Timedelta(hours=1),
            "message": "m",
            "evidence": "{}",
        }
    )


@pytest.fixture()
def wh(tmp_path):
    w = Warehouse(tmp_path / "w.duckdb")
    w.init_schema()
    return w


def _run(wh: Warehouse, day: dt.date, *items) -> dict[str, int]:
    flags = _flags(day, *items)
    wh.replace("anomalies", flags, {"day": day})
    return update_cases(wh, day, flags)


def test_a_flag_repeated_daily_is_one_case(wh):
    for i in range(5):
        _run(wh, _day(i), ("spike", "MP-01-C", "medium" if i < 4 else "high"))
    cases = list_cases(wh)
    assert len(cases) == 1
    c = cases.iloc[0]
    assert c["case_id"] == case_id("spike", "MP-01-C", D0)
    assert (pd.Timestamp(c["first_seen"]).date(), pd.Timestamp(c["last_seen"]).date()) == (
        D0,
        _day(4),
    )
    assert c["severity"] == "high" and c["days_flagged"] == 5 and c["status"] == "open"


def test_re_running_a_day_changes_nothing(wh):
    for i in range(3):
        _run(wh, _day(i), ("gap", "MP-02-C", "high"), ("spike", "MP-01-C", "low"))
    before = wh.read("anomaly_cases").drop(columns="updated_at")
    assert _run(wh, _day(1), ("gap", "MP-02-C", "high"), ("spike", "MP-01-C", "low")) == {
        "new": 0,
        "joined": 0,
        "suppressed": 0,
        "covered": 2,
    }
    after = wh.read("anomaly_cases").drop(columns="updated_at")
    pd.testing.assert_frame_equal(before, after)


def test_a_dismissal_suppresses_for_its_period_then_a_new_case_opens(wh):
    _run(wh, _day(0), ("flatline", "MP-05-C", "medium"))
    cid = case_id("flatline", "MP-05-C", D0)
    change(wh, cid, "dismiss", by="ops", note="vacant flat", suppress_days=3)
    for i in (1, 2, 3):
        assert _run(wh, _day(i), ("flatline", "MP-05-C", "medium"))["suppressed"] == 1
    assert list_cases(wh).empty  # nothing active
    assert _run(wh, _day(4), ("flatline", "MP-05-C", "medium"))["new"] == 1
    assert list_cases(wh)["case_id"].tolist() == [case_id("flatline", "MP-05-C", _day(4))]


def test_a_resolved_fault_that_returns_is_a_new_case(wh):
    _run(wh, _day(0), ("negative", "MP-03-C", "high"))
    cid = case_id("negative", "MP-03-C", D0)
    change(wh, cid, "ack", by="Ana")
    change(wh, cid, "confirm", by="Ana", note="meter swapped wrongly")
    change(wh, cid, "resolve", by="Ana", note="meter fixed")
    assert _run(wh, _day(2), ("negative", "MP-03-C", "high"))["new"] == 1
    events = wh.read("anomaly_case_events").sort_values("changed_at")
    assert events["action"].tolist() == ["ack", "confirm", "resolve"]
    assert events["from_status"].tolist() == ["open", "acknowledged", "confirmed"]
    assert events["actor"].tolist() == ["Ana"] * 3
    case = wh.query("SELECT * FROM anomaly_cases WHERE case_id = ?", [cid]).iloc[0]
    assert case["owner"] == "Ana" and case["note"] == "meter fixed"


def test_bad_changes_are_refused_and_not_recorded(wh):
    _run(wh, _day(0), ("spike", "MP-01-C", "low"))
    cid = case_id("spike", "MP-01-C", D0)
    with pytest.raises(TriageError, match="no case"):
        change(wh, "nope", "ack", by="x")
    with pytest.raises(TriageError, match="action"):
        change(wh, cid, "delete", by="x")
    with pytest.raises(TriageError, match="--by"):
        change(wh, cid, "ack", by=" ")
    with pytest.raises(TriageError, match="dismiss only"):
        change(wh, cid, "ack", by="x", suppress_days=3)
    with pytest.raises(TriageError, match="already open"):
        change(wh, cid, "reopen", by="x")
    assert wh.read("anomaly_case_events").empty


@settings(max_examples=20, deadline=None)
@given(st.lists(st.sets(st.sampled_from(["A", "B", "C"]), max_size=3), min_size=1, max_size=8))
def test_every_flag_day_lies_in_exactly_one_case(days):
    """Property: each (subject, day) flagged is covered by one case; active cases never overlap."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(Path(tmp) / "w.duckdb")
        wh.init_schema()
        _check_cover(wh, days)


def _check_cover(wh: Warehouse, days: list[set[str]]) -> None:
    for i, subjects in enumerate(days):
        _run(wh, _day(i), *[("spike", s, "low") for s in sorted(subjects)])
    cases = wh.read("anomaly_cases")
    for i, subjects in enumerate(days):
        for s in subjects:
            mine = cases[cases["subject_id"] == s]
            cover = (pd.to_datetime(mine["first_seen"]).dt.date <= _day(i)) & (
                pd.to_datetime(mine["last_seen"]).dt.date >= _day(i)
            )
            assert cover.sum() == 1
    assert not cases["subject_id"].duplicated().any()  # no dismissal: one case each
