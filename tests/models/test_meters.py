"""Meter file parsing: typed errors naming file, row and field; DST-safe; fuzzed."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.master_data import metering_point_index
from models.meters import (
    MeterFileError,
    MeteringPointInfo,
    load_meter_file,
    read_meter_file,
    validate_meter_frame,
)


@pytest.fixture(scope="module")
def mps(demo_config):
    return metering_point_index(demo_config)


def write(tmp_path, text, name="m.csv", encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


GOOD = "metering_point_id,ts,kwh\nMP-01-C,2017-06-14T07:00:00Z,1.25\nMP-01-C,2017-06-14T08:00:00Z,0.5\n"


def test_good_file_parses_with_day_and_hash(tmp_path, mps):
    df = load_meter_file(write(tmp_path, GOOD), metering_points=mps, tz="America/Los_Angeles")
    assert list(df.kwh) == [1.25, 0.5]
    assert df.day.iloc[0] == dt.date(2017, 6, 14)
    assert str(df.ts.dt.tz) == "UTC" and len(df.source_sha256.iloc[0]) == 64


def test_byte_order_mark_accepted(tmp_path, mps):
    p = write(tmp_path, "\ufeff" + GOOD)
    assert len(load_meter_file(p, metering_points=mps, tz="America/Los_Angeles")) == 2


@pytest.mark.parametrize(
    ("text", "row", "field", "words"),
    [
        (
            "metering_point_id,ts,kwh\nMP-01-C,2017-06-14T07:00:00Z,1,25\n",
            2,
            None,
            "expected 3 fields",
        ),
        (
            'metering_point_id,ts,kwh\nMP-01-C,2017-06-14T07:00:00Z,"1,25"\n',
            2,
            "kwh",
            "decimal comma",
        ),
        ("metering_point_id;ts;kwh\nMP-01-C;2017-06-14T07:00:00Z;1.2\n", 1, None, "delimiter"),
        ("metering_point_id,ts,kwh\nMP-01-C,2017-06-14T07:00:00Z,abc\n", 2, "kwh", "not a number"),
        (
            "metering_point_id,ts,kwh\nMP-99-C,2017-06-14T07:00:00Z,1\n",
            2,
            "metering_point_id",
            "unknown metering point",
        ),
        ("metering_point_id,ts,kwh\nMP-01-C,2016-11-06 01:00:00,1\n", 2, "ts", "no UTC offset"),
        ("metering_point_id,ts,kwh\nMP-01-C,2017-06-14T07:30:00Z,1\n", 2, "ts", "aligned"),
        ("metering_point_id,ts,kwh\nMP-01-C,2015-06-14T07:00:00Z,1\n", 2, "ts", "membership"),
        ("metering_point_id,ts\nMP-01-C,2017-06-14T07:00:00Z\n", 1, None, "missing column"),
        (
            "metering_point_id,ts,kwh\nMP-01-C,2017-06-14T07:00:00Z,1\nMP-01-C,2017-06-14T07:00:00Z,2\n",
            3,
            "kwh",
            "different values",
        ),
    ],
)
def test_bad_files_raise_typed_errors_naming_file_row_field(tmp_path, mps, text, row, field, words):
    p = write(tmp_path, text)
    with pytest.raises(MeterFileError) as exc:
        load_meter_file(p, metering_points=mps, tz="America/Los_Angeles")
    err = exc.value
    assert str(p) in str(err) and words in str(err)
    if row is not None:
        assert err.row == row
    assert err.field == field


@pytest.mark.parametrize(
    ("cut", "words"),
    [
        ("MP-01-C,2017-06-14T08:0", "the file ends mid-row: truncated?"),
        ('MP-01-C,2017-06-14T08:00:00Z,"0.5', "ends inside a quoted field: truncated?"),
    ],
)
def test_a_truncated_csv_is_refused_at_its_last_row(tmp_path, mps, cut, words):
    """Reliability item 7: a file cut off mid-transfer names its file and last row."""
    p = write(tmp_path, GOOD.rsplit("MP-01-C,2017-06-14T08", 1)[0] + cut)
    with pytest.raises(MeterFileError) as exc:
        load_meter_file(p, metering_points=mps, tz="America/Los_Angeles")
    assert str(p) in str(exc.value) and words in str(exc.value) and exc.value.row == 3


@pytest.mark.parametrize("suffix", ["parquet", "xlsx"])
def test_truncated_parquet_and_excel_files_are_refused_by_name(tmp_path, mps, suffix):
    raw = pd.DataFrame(
        {"metering_point_id": ["MP-01-C"] * 2, "ts": ["2017-06-14T07:00:00Z"] * 2, "kwh": [1.0, 1]}
    )
    whole = tmp_path / f"whole.{suffix}"
    raw.to_parquet(whole) if suffix == "parquet" else raw.to_excel(whole, index=False)
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(MeterFileError, match=rf"{cut.name}: cannot parse file"):
        load_meter_file(cut, metering_points=mps, tz="America/Los_Angeles")


def test_a_file_above_the_size_limit_is_refused_before_it_is_read(tmp_path, mps, monkeypatch):
    """Reliability item 7, huge file: refused by its size (MAX_FILE_BYTES, 512 MB; lowered
    here so the test does not write half a gigabyte), naming the file and the limit."""
    import models.meters as meters

    p = write(tmp_path, GOOD * 200)
    monkeypatch.setattr(meters, "MAX_FILE_BYTES", p.stat().st_size - 1)
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: pytest.fail("a huge file was read"))
    with pytest.raises(MeterFileError, match=rf"{p.name}: file larger than {p.stat().st_size - 1}"):
        load_meter_file(p, metering_points=mps, tz="America/Los_Angeles")


def test_identical_duplicate_is_a_noop(tmp_path, mps):
    text = GOOD + "MP-01-C,2017-06-14T07:00:00Z,1.25\n"
    df = load_meter_file(write(tmp_path, text), metering_points=mps, tz="America/Los_Angeles")
    assert len(df) == 2


def test_explicit_offsets_resolve_the_autumn_change(tmp_path, mps):
    text = (
        "metering_point_id,ts,kwh\nMP-01-C,2016-11-06T01:00:00-07:00,1\n"
        "MP-01-C,2016-11-06T01:00:00-08:00,2\n"
    )
    df = load_meter_file(write(tmp_path, text), metering_points=mps, tz="America/Los_Angeles")
    assert len(df) == 2 and df.ts.diff().iloc[1] == pd.Timedelta(hours=1)


def test_excel_and_parquet_go_through_the_same_path(tmp_path, mps):
    raw = pd.DataFrame(
        {"metering_point_id": ["MP-01-C"], "ts": ["2017-06-14T07:00:00Z"], "kwh": [1.5]}
    )
    raw.to_excel(tmp_path / "m.xlsx", index=False)
    raw.to_parquet(tmp_path / "m.parquet")
    for name in ("m.xlsx", "m.parquet"):
        df = load_meter_file(tmp_path / name, metering_points=mps, tz="America/Los_Angeles")
        assert df.kwh.iloc[0] == 1.5


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_fuzzed_bytes_never_crash_the_parser(tmp_path_factory, mps, data):
    p = tmp_path_factory.mktemp("fuzz") / "f.csv"
    p.write_bytes(data)
    try:
        raw = read_meter_file(p)
        validate_meter_frame(raw, source=str(p), metering_points=mps, tz="America/Los_Angeles")
    except MeterFileError:
        pass


VIENNA_QH = {"MP-Q": MeteringPointInfo("M1", 15, dt.date(2017, 1, 1))}


def _quarter_hours(idx: list[str], path) -> None:
    pd.DataFrame({"metering_point_id": "MP-Q", "ts": idx, "kwh": "0.1"}).to_csv(path, index=False)


@pytest.mark.parametrize(
    ("day", "offset", "expected", "row"),
    [("2017-03-26", "+01:00", 92, 10), ("2017-10-29", "+02:00", 100, 14)],
)
def test_a_96_interval_file_on_a_clock_change_day_is_refused(tmp_path, day, offset, expected, row):
    """Reliability item 1: 96 quarter-hours written with one offset on a 23- or 25-hour day
    are refused at the first row past the change, with the day's interval count."""
    start = pd.Timestamp(f"{day}T00:00:00")
    p = tmp_path / "q.csv"
    _quarter_hours(
        [(start + pd.Timedelta(minutes=15 * k)).isoformat() + offset for k in range(96)], p
    )
    with pytest.raises(MeterFileError) as exc:
        load_meter_file(p, metering_points=VIENNA_QH, tz="Europe/Vienna")
    assert f"expected {expected}, got 96" in str(exc.value) and "q.csv" in str(exc.value)
    assert exc.value.row == row and exc.value.field == "ts"


@pytest.mark.parametrize(
    ("day", "n"), [("2017-03-26", 92), ("2017-10-29", 100), ("2017-06-14", 96)]
)
def test_local_quarter_hours_of_any_day_are_complete(tmp_path, day, n):
    from models.ingest import check_readings_complete

    idx = pd.date_range(day, periods=n, freq="15min", tz="Europe/Vienna")
    p = tmp_path / "q.csv"
    _quarter_hours([t.isoformat() for t in idx], p)
    df = load_meter_file(p, metering_points=VIENNA_QH, tz="Europe/Vienna")
    assert len(df) == n and set(df["day"]) == {dt.date.fromisoformat(day)}
    assert check_readings_complete(
        df, dt.date.fromisoformat(day), "Europe/Vienna", VIENNA_QH
    ).passed
    utc = pd.DataFrame(
        {
            "metering_point_id": "MP-Q",
            "ts": [t.tz_convert("UTC").isoformat() for t in idx],
            "kwh": "0.1",
        }
    )
    utc.to_csv(p, index=False)  # the same instants written in UTC
    assert len(load_meter_file(p, metering_points=VIENNA_QH, tz="Europe/Vienna")) == n
