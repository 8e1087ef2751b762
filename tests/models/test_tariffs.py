"""Tariffs as configuration: flat, time-of-use (months, weekdays, holidays, hours), inbox."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config import PriceSpec, Tariffs
from models.prices import tariff_rows

HTNT = PriceSpec.model_validate(
    {
        "time_of_use": [
            {"name": "NT", "price_per_kwh": 0.25, "days": ["holiday", "sun"]},
            {"name": "summer-peak", "price_per_kwh": 0.40, "months": [6, 7, 8], "hours": ["17-21"]},
            {"name": "HT", "price_per_kwh": 0.32, "hours": ["06-22"]},
            {"name": "NT", "price_per_kwh": 0.25},
        ]
    }
)


@settings(max_examples=60, deadline=None)
@given(
    day=st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2030, 12, 31)),
    tz=st.sampled_from(["Europe/Berlin", "America/Los_Angeles", "Australia/Adelaide"]),
)
def test_every_local_interval_priced_once_on_23_24_25_hour_days(day, tz):
    df = tariff_rows(HTNT, "import", [day], tz=tz, currency="EUR")
    start = pd.Timestamp(day, tz=tz)
    hours = int((pd.Timestamp(day + dt.timedelta(days=1), tz=tz) - start) / pd.Timedelta(hours=1))
    assert len(df) == hours and df["ts"].is_unique and hours in (23, 24, 25)
    assert set(df["price_per_kwh"]) <= {0.25, 0.32, 0.40}
    local = pd.DatetimeIndex(df["ts"]).tz_convert(tz)
    for t, p in zip(local, df["price_per_kwh"], strict=True):
        if t.weekday() == 6:
            expect = 0.25
        elif t.month in (6, 7, 8) and 17 <= t.hour < 21:
            expect = 0.40
        elif 6 <= t.hour < 22:
            expect = 0.32
        else:
            expect = 0.25
        assert p == expect, (t, p)


def test_holiday_priced_by_holiday_periods_only():
    wed = dt.date(2021, 6, 2)
    holiday = dt.date(2021, 6, 3)  # a Thursday
    df = tariff_rows(
        HTNT, "import", [wed, holiday], tz="Europe/Berlin", currency="EUR", holidays=(holiday,)
    )
    by_day = df.groupby("day")["price_per_kwh"].agg(["min", "max"])
    assert by_day.loc[holiday].tolist() == [0.25, 0.25]
    assert by_day.loc[wed].tolist() == [0.25, 0.40]
    assert set(df["source"]) >= {"tariff:time_of_use:NT", "tariff:time_of_use:HT"}


def test_flat_and_inbox_prices():
    flat = PriceSpec.model_validate(0.07)
    df = tariff_rows(flat, "export", [dt.date(2021, 3, 28)], tz="Europe/Berlin", currency="EUR")
    assert len(df) == 23 and (df["price_per_kwh"] == 0.07).all()
    inbox = PriceSpec.model_validate("inbox")
    assert tariff_rows(inbox, "import", [dt.date(2021, 3, 28)], tz="UTC", currency="EUR").empty


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"time_of_use": [{"name": "day", "price_per_kwh": 0.3, "hours": ["06-22"]}]}, "unpriced"),
        ({"time_of_use": [{"name": "x", "price_per_kwh": 0.3, "hours": ["22-06"]}]}, "from < to"),
        ({"time_of_use": [{"name": "x", "price_per_kwh": 0.3, "months": [13]}]}, "between 1"),
        ({"flat": 0.1, "inbox": True}, "exactly one"),
        ("tomorrow", "a number, 'inbox'"),
        (-0.1, "greater than or equal"),
    ],
)
def test_invalid_price_specs_refused(value, message):
    with pytest.raises(ValueError, match=message):
        Tariffs.model_validate({"import_price": value, "export_price": 0.05})
