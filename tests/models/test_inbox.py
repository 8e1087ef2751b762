"""The inbox: each file once by SHA-256, validated whole, stored or rejected with its error;
corrections keep what they replace; price and weather files checked for unit and range."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pandas as pd
import pytest

from models.inbox import (
    InboxContext,
    parse_price_file,
    parse_weather_file,
    pending_files,
    process_inbox,
)
from models.meters import MeterFileError, MeteringPointInfo
from models.warehouse import Warehouse

TZ = "Europe/Berlin"
MPS = {
    "MP-A-C": MeteringPointInfo("A", 60, dt.date(2021, 1, 1)),
    "MP-A-P": MeteringPointInfo("A", 60, dt.date(2021, 1, 1)),
}
CTX = InboxContext(tz=TZ, currency="EUR", interval_minutes=60, metering_points=MPS)


def _raw(text: str) -> pd.DataFrame:
    import io

    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def _meters(day: str = "2021-06-01", scale: float = 1.0, mp: str = "MP-A-C") -> str:
    start = pd.Timestamp(f"{day}T00:00", tz=TZ)
    rows = [
        f"{mp},{(start + pd.Timedelta(hours=h)).isoformat()},{(0.5 + h / 100) * scale:.4f}"
        for h in range(24)
    ]
    return "metering_point_id,ts,kwh\n" + "\n".join(rows) + "\n"


@pytest.fixture()
def wh(tmp_path):
    w = Warehouse(tmp_path / "wh.duckdb")
    w.init_schema()
    return w


def _process(inbox: Path, wh: Warehouse):
    return process_inbox(
        inbox,
        CTX,
        status_of=wh.inbox_status,
        store=wh.store_inbox_file,
        record=wh.record_inbox_file,
    )


def _drop(inbox: Path, kind: str, name: str, text: str, age_s: int = 0) -> Path:
    p = inbox / kind / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    if age_s:
        t = p.stat().st_mtime - age_s
        os.utime(p, (t, t))
    return p


def test_file_stored_once_moved_to_processed_and_duplicate_ignored(tmp_path, wh):
    inbox = tmp_path / "inbox"
    _drop(inbox, "meters", "june.csv", _meters())
    out = _process(inbox, wh)
    assert [(o.status, o.rows) for o in out] == [("processed", 24)]
    assert (inbox / "meters" / "processed" / "june.csv").exists()
    assert not (inbox / "meters" / "june.csv").exists()
    assert wh.row_counts()["meter_readings"] == 24
    rec = wh.read("inbox_files")
    assert rec["status"].tolist() == ["processed"] and rec["new_rows"].tolist() == [24]
    # the same bytes again, under another name: recognised, nothing stored twice
    _drop(inbox, "meters", "june-again.csv", _meters())
    out = _process(inbox, wh)
    assert [o.status for o in out] == ["duplicate"]
    assert wh.row_counts()["meter_readings"] == 24
    assert (inbox / "meters" / "processed" / "june-again.csv").exists()
    assert _process(inbox, wh) == []


def test_malformed_file_rejected_with_error_beside_it_and_nothing_stored(tmp_path, wh):
    inbox = tmp_path / "inbox"
    _drop(inbox, "meters", "good.csv", _meters(), age_s=10)
    bad = _meters("2021-06-02").replace("0.5300", "0,53", 1)
    _drop(inbox, "meters", "bad.csv", bad)
    before = None
    out = _process(inbox, wh)
    assert [o.status for o in out] == ["processed", "rejected"]
    rejected = inbox / "meters" / "rejected" / "bad.csv"
    assert rejected.exists()
    err = (inbox / "meters" / "rejected" / "bad.csv.error.txt").read_text()
    assert "bad.csv" in err and "row" in err and "README" in err
    assert out[1].error is not None and "bad.csv" in out[1].error
    before = wh.read("meter_readings")
    assert {pd.Timestamp(d).date() for d in before["day"]} == {
        dt.date(2021, 6, 1)
    }  # nothing of bad.csv
    rec = wh.read("inbox_files").set_index("file_name")
    assert rec.loc["bad.csv", "status"] == "rejected" and rec.loc["bad.csv", "rows"] == 0


def test_correction_replaces_readings_and_keeps_the_replaced_ones(tmp_path, wh):
    inbox = tmp_path / "inbox"
    _drop(inbox, "meters", "routine.csv", _meters())
    _process(inbox, wh)
    old = wh.read("meter_readings").set_index("ts")["kwh"]
    _drop(inbox, "meters", "correction.csv", _meters(scale=1.25))
    out = _process(inbox, wh)
    assert out[0].corrected_rows == 24 and out[0].corrected_days == (dt.date(2021, 6, 1),)
    new = wh.read("meter_readings").set_index("ts")["kwh"]
    assert (new / old).round(6).eq(1.25).all()
    hist = wh.read("meter_readings_history")
    assert len(hist) == 24 and set(hist["superseded_by"]) == {"correction.csv"}
    assert hist.set_index("ts")["kwh"].sort_index().equals(old.sort_index())
    rec = wh.read("inbox_files").set_index("file_name")
    assert rec.loc["correction.csv", "corrected_days"] == "2021-06-01"
    # the routine file delivered again is the same bytes: it never overwrites the correction
    _drop(inbox, "meters", "routine.csv", _meters())
    assert [o.status for o in _process(inbox, wh)] == ["duplicate"]
    assert wh.read("meter_readings").set_index("ts")["kwh"].equals(new)


def test_conflicting_duplicates_are_quarantined_flagged_and_released_by_a_clean_file(tmp_path, wh):
    """The same interval twice with different values: the file's other readings are stored,
    both conflicting rows are held back with their file rows (nothing billed on a guess),
    the interval is flagged high until a later file delivers it once, and then settles."""
    from models.anomalies import quarantine_anomalies

    inbox = tmp_path / "inbox"
    text = _meters()
    lines = text.splitlines()
    mp, ts, _ = lines[6].split(",")  # 05:00 local, file row 7 (row 1 is the header)
    lines.append(f"{mp},{ts},9.9999")  # file row 26: the same interval, another value
    lines.append(lines[3])  # file row 27: an identical duplicate of row 3 (no conflict)
    _drop(inbox, "meters", "june.csv", "\n".join(lines) + "\n")
    out = _process(inbox, wh)
    assert [(o.status, o.rows, o.quarantined_rows) for o in out] == [("processed", 23, 2)]
    stored = wh.query("SELECT metering_point_id, ts, kwh FROM meter_readings")
    assert len(stored) == 23
    when = pd.Timestamp(ts).tz_convert("UTC")
    assert not (stored["ts"] == when).any()  # the conflicting interval is not stored
    q = wh.query("SELECT * FROM quarantined_readings ORDER BY file_row")
    assert q["file_row"].tolist() == [7, 26]
    assert sorted(q["kwh"].round(4).tolist()) == [0.55, 9.9999]
    assert (q["source"] == "june.csv").all() and q["reason"].str.contains("2 times").all()
    rec = wh.query("SELECT rows, quarantined_rows FROM inbox_files")
    assert rec.iloc[0].tolist() == [23, 2]
    day = dt.date(2021, 6, 1)
    flags = quarantine_anomalies(q, stored, day)
    assert len(flags) == 1 and flags.iloc[0]["severity"] == "high"
    assert flags.iloc[0]["rule"] == "conflicting_duplicate"
    assert flags.iloc[0]["ts_start"] == when
    # the distributor sends the interval again, once: stored, flag gone, quarantine kept
    _drop(inbox, "meters", "june-fix.csv", "metering_point_id,ts,kwh\n" + f"{mp},{ts},0.5400\n")
    assert [(o.status, o.rows, o.quarantined_rows) for o in _process(inbox, wh)] == [
        ("processed", 1, 0)
    ]
    stored = wh.query("SELECT metering_point_id, ts, kwh FROM meter_readings")
    assert len(stored) == 24
    assert quarantine_anomalies(q, stored, day).empty
    assert wh.row_counts()["quarantined_readings"] == 2


def test_a_file_of_only_conflicting_rows_stores_nothing_but_is_recorded(tmp_path, wh):
    inbox = tmp_path / "inbox"
    row = _meters().splitlines()[1]
    mp, ts, _ = row.split(",")
    _drop(inbox, "meters", "bad.csv", f"metering_point_id,ts,kwh\n{row}\n{mp},{ts},3.0\n")
    out = _process(inbox, wh)
    assert [(o.status, o.rows, o.quarantined_rows) for o in out] == [("processed", 0, 2)]
    assert wh.row_counts()["meter_readings"] == 0


def test_files_taken_in_arrival_order(tmp_path, wh):
    inbox = tmp_path / "inbox"
    _drop(inbox, "meters", "b-first.csv", _meters(scale=2.0), age_s=100)
    _drop(inbox, "meters", "a-second.csv", _meters(scale=3.0), age_s=50)
    assert [p.name for _, p in pending_files(inbox)] == ["b-first.csv", "a-second.csv"]
    _process(inbox, wh)
    kwh = wh.read("meter_readings").sort_values("ts")["kwh"].iloc[0]
    assert kwh == pytest.approx(0.5 * 3.0)  # the later delivery wins


def test_half_written_files_are_left_alone(tmp_path, wh):
    inbox = tmp_path / "inbox"
    _drop(inbox, "meters", "june.csv.part", _meters())
    assert _process(inbox, wh) == []


PRICES = "ts,price_type,price_per_kwh,unit\n" + "".join(
    f"2021-06-01T{h:02d}:00:00+02:00,import,{80 + h},EUR/MWh\n" for h in range(24)
)


def test_price_file_in_mwh_converted_to_per_kwh():
    df = parse_price_file(_raw(PRICES), source="p.csv", currency="EUR", tz=TZ)
    assert len(df) == 24 and df["price_per_kwh"].iloc[0] == pytest.approx(0.080)
    assert set(df["day"]) == {dt.date(2021, 6, 1)}
    assert df["ts"].iloc[0] == pd.Timestamp("2021-05-31T22:00Z")


@pytest.mark.parametrize(
    ("edit", "row", "field", "message"),
    [
        (lambda t: t.replace(",import,85,", ",imprt,85,"), 7, "price_type", "import or export"),
        (lambda t: t.replace("EUR/MWh", "EUR/kWh"), 2, "price_per_kwh", "EUR/MWh"),
        (lambda t: t.replace(",86,EUR/MWh", ",86,USD/MWh"), 8, "unit", "settles in EUR"),
        (lambda t: t.replace(",87,", ",-87,"), 9, "price_per_kwh", "negative"),
        (lambda t: t.replace(",88,", ",8x8,"), 10, "price_per_kwh", "not a number"),
        (lambda t: t.replace("T05:00:00+02:00", "T05:00:00"), 7, "ts", "no UTC offset"),
        (lambda t: t.replace("T05:00:00+02:00", "T05:30:00+02:00"), 7, "ts", "not aligned"),
    ],
)
def test_price_file_errors_name_row_and_field(edit, row, field, message):
    with pytest.raises(MeterFileError, match=message) as err:
        parse_price_file(_raw(edit(PRICES)), source="p.csv", currency="EUR", tz=TZ)
    assert err.value.row == row and err.value.field == field and err.value.path == "p.csv"


def test_price_file_conflicting_duplicate_refused():
    text = PRICES + "2021-06-01T03:00:00+02:00,import,99,EUR/MWh\n"
    with pytest.raises(MeterFileError, match="different price_per_kwh"):
        parse_price_file(_raw(text), source="p.csv", currency="EUR", tz=TZ)


WEATHER = "ts,temperature_2m,relative_humidity_2m,diffuse_radiation,direct_normal_irradiance\n" + (
    "".join(
        f"2021-06-01T{h:02d}:00:00+00:00,{15 + h / 4},{60},{h * 5},{h * 20}\n" for h in range(24)
    )
)


def test_weather_observations_known_at_the_end_of_their_hour():
    df = parse_weather_file(_raw(WEATHER), source="w.csv", tz=TZ)
    assert (df["kind"] == "observation").all()
    assert ((df["issue_time"] - df["ts"]) == pd.Timedelta(hours=1)).all()


def test_weather_forecast_file_with_issue_time():
    lines = WEATHER.splitlines()
    text = lines[0] + ",issue_time\n" + "\n".join(f"{ln},2021-05-31T22:00:00Z" for ln in lines[1:])
    df = parse_weather_file(_raw(text), source="w.csv", tz=TZ)
    assert (df["kind"] == "forecast").all()
    assert df["lead_hours"].min() == 2 and df["lead_hours"].max() == 25


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (lambda t: t.replace(",60,", ",160,", 1), "relative_humidity_2m", "plausible range"),
        (lambda t: t.replace("15.0,", "95.0,", 1), "temperature_2m", "plausible range"),
        (lambda t: t.replace("diffuse_radiation", "dhi"), None, "missing column"),
    ],
)
def test_weather_file_errors_named(edit, field, message):
    with pytest.raises(MeterFileError, match=message) as err:
        parse_weather_file(_raw(edit(WEATHER)), source="w.csv", tz=TZ)
    assert err.value.field == field


def test_weather_forecast_issued_after_valid_time_refused():
    lines = WEATHER.splitlines()
    text = lines[0] + ",issue_time\n" + "\n".join(f"{ln},2021-06-01T05:00:00Z" for ln in lines[1:])
    with pytest.raises(MeterFileError, match="after the valid time") as err:
        parse_weather_file(_raw(text), source="w.csv", tz=TZ)
    assert err.value.row == 2 and err.value.field == "issue_time"


def test_price_and_weather_files_through_the_inbox(tmp_path, wh):
    inbox = tmp_path / "inbox"
    _drop(inbox, "prices", "dayahead.csv", PRICES)
    _drop(inbox, "weather", "obs.csv", WEATHER)
    out = _process(inbox, wh)
    assert [(o.kind, o.status) for o in out] == [("prices", "processed"), ("weather", "processed")]
    assert wh.row_counts()["prices"] == 24 and wh.row_counts()["weather"] == 24
    assert set(wh.read("prices")["source"]) == {"inbox:dayahead.csv"}


def test_estimates_fill_only_the_gaps_from_the_same_hour_of_previous_days():
    from models.ingest import check_readings_complete, estimate_missing_readings

    days = [dt.date(2021, 6, d) for d in range(1, 9)]
    rows = pd.concat(
        [_raw(_meters(str(d), scale=1.0 + i / 10)).assign(day=d) for i, d in enumerate(days)]
    )
    rows["ts"] = pd.to_datetime(rows["ts"], utc=True)
    rows["kwh"] = rows["kwh"].astype(float)
    rows["quality"] = "measured"
    last = days[-1]
    gap = (rows["day"] == last) & rows["ts"].dt.hour.isin([8, 9])
    mps = {"MP-A-C": MPS["MP-A-C"]}
    check = check_readings_complete(rows[~gap], last, TZ, mps)
    assert not check.passed and "MP-A-C: 2 of 24 intervals missing (10:00-12:00 local)" in (
        check.description
    )
    est = estimate_missing_readings(rows[~gap], last, TZ, mps)
    assert len(est) == 2 and (est["quality"] == "estimated").all()
    expect = rows[(rows["ts"].dt.hour == 8) & (rows["day"] != last)]  # 10:00 local, 7 days
    assert est.sort_values("ts")["kwh"].iloc[0] == pytest.approx(expect["kwh"].mean())
    filled = pd.concat([rows[~gap], est])
    assert check_readings_complete(filled, last, TZ, mps).passed


def test_a_day_without_prices_is_refused_by_name():
    from models.ingest import check_prices

    day = dt.date(2021, 6, 1)
    df = parse_price_file(_raw(PRICES), source="p.csv", currency="EUR", tz=TZ)
    res = check_prices(df, day, TZ)
    assert not res.passed
    assert "2021-06-01 is not planned without prices" in res.description
    assert "export price missing 00:00-24:00 local" in res.description  # the whole day
    part = df[pd.DatetimeIndex(df["ts"]).tz_convert(TZ).hour < 20]
    both = pd.concat([part, part.assign(price_type="export")])
    res = check_prices(both, day, TZ)
    assert "import price missing 20:00-24:00 local" in res.description
