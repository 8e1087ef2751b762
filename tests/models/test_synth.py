"""The synthetic community generator: valid configuration, documented draws, conserved energy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.config import load_config
from models.synth import SynthError, quarter_hours, synth_community


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 48), elements=st.floats(0, 50, allow_nan=False)))
def test_quarter_hours_conserve_each_hours_energy(hourly: np.ndarray) -> None:
    q = quarter_hours(hourly)
    assert q.shape == (hourly.size * 4,)
    assert (q >= 0).all()
    np.testing.assert_allclose(q.reshape(-1, 4).sum(axis=1), hourly, rtol=1e-12, atol=1e-12)
    # an hour of zero (PV at night) stays zero in every quarter
    assert (q.reshape(-1, 4)[hourly == 0] == 0).all()


def test_quarter_hours_follow_the_ramp_between_hours() -> None:
    q = quarter_hours(np.array([0.0, 4.0, 8.0]))
    middle = q[4:8]
    assert middle.sum() == pytest.approx(4.0)
    assert (np.diff(middle) > 0).all()  # rising towards the brighter hour


def test_synthetic_community_is_a_valid_community_with_its_files(tmp_path) -> None:
    s = synth_community(30, tmp_path / "c", days=3, seed=7)
    cfg = load_config(s.config)
    assert len(cfg.members) == 30
    assert cfg.community.interval_minutes == 60
    assert cfg.feed == "none" and cfg.inbox_dir == "inbox"
    meters = pd.concat(
        pd.read_parquet(p) for p in (tmp_path / "c" / "inbox" / "meters").glob("*.parquet")
    )
    mps = {mp.id for m in cfg.members for mp in m.metering_points}
    mps.add(cfg.shared_assets.pv.metering_point)
    assert set(meters["metering_point_id"]) == mps
    assert len(meters) == s.meter_rows
    # three local days of hours (no DST change in 2017-07-29..31) per metering point
    assert meters.groupby("metering_point_id").size().eq(72).all()
    assert (meters["kwh"] >= 0).all()
    kinds = {m.kind for m in cfg.members}
    assert "household" in kinds
    with_bat = sum(m.battery is not None for m in cfg.members)
    assert 0 < with_bat < 30  # 60 % of members draw one


def test_same_seed_same_files_other_seed_other_members(tmp_path) -> None:
    a = synth_community(12, tmp_path / "a", days=2, seed=3)
    b = synth_community(12, tmp_path / "b", days=2, seed=3)
    c = synth_community(12, tmp_path / "c", days=2, seed=4)

    def meters(s):
        return pd.concat(pd.read_parquet(p) for p in s.files if "meters" in p.name)

    pd.testing.assert_frame_equal(meters(a), meters(b))
    assert not meters(a)["kwh"].equals(meters(c)["kwh"])


def test_quarter_hour_community_conserves_the_hourly_energy(tmp_path) -> None:
    h = synth_community(15, tmp_path / "h", days=2, seed=1)
    q = synth_community(15, tmp_path / "q", interval_minutes=15, days=2, seed=1)
    assert load_config(q.config).community.interval_minutes == 15

    def meters(s):
        return pd.concat(pd.read_parquet(p) for p in s.files if "meters" in p.name)

    mh, mq = meters(h), meters(q)
    assert len(mq) == 4 * len(mh)
    mq["hour"] = pd.DatetimeIndex(mq["ts"]).floor("h")
    per_hour = mq.groupby(["metering_point_id", "hour"])["kwh"].sum()
    hourly = mh.set_index(["metering_point_id", "ts"])["kwh"]
    hourly.index = hourly.index.set_names(["metering_point_id", "hour"])
    # rounded to 0.1 Wh per quarter
    np.testing.assert_allclose(per_hour.loc[hourly.index], hourly, atol=4e-4)
    prices = pd.read_parquet(next(p for p in q.files if "prices" in p.name))
    assert len(prices) == 2 * 24 * 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_members": 0}, "--members"),
        ({"n_members": 5001}, "--members"),
        ({"n_members": 5, "interval_minutes": 30}, "--interval-minutes"),
        ({"n_members": 5, "days": 0}, "--days"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, message) -> None:
    with pytest.raises(SynthError, match=message):
        synth_community(out_dir=tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_an_existing_community_is_not_overwritten(tmp_path) -> None:
    synth_community(5, tmp_path, days=1)
    before = (tmp_path / "community.yaml").read_bytes()
    with pytest.raises(SynthError, match="exists"):
        synth_community(6, tmp_path, days=1)
    assert (tmp_path / "community.yaml").read_bytes() == before


def test_a_large_community_plant_is_plausible_but_a_household_spike_is_not(tmp_path) -> None:
    """The plausibility bound follows the configured size of each metering point."""
    from models.ingest import MAX_PLAUSIBLE_KW, check_readings_plausible, plausible_kw

    s = synth_community(200, tmp_path, days=1, seed=2)
    cfg = load_config(s.config)
    limits = plausible_kw(cfg)
    assert limits["MP-CPV-P"] == pytest.approx(1.5 * 480.0)
    assert limits["MP-0001-C"] == MAX_PLAUSIBLE_KW
    plant = pd.DataFrame({"metering_point_id": ["MP-CPV-P"], "kwh": [400.0]})
    assert not check_readings_plausible(plant, 60).passed  # the fixed household bound
    assert check_readings_plausible(plant, 60, limits).passed
    home = pd.DataFrame({"metering_point_id": ["MP-0001-C"], "kwh": [400.0]})
    res = check_readings_plausible(home, 60, limits)
    assert not res.passed and res.metadata["implausibly_high"] == 1
    # a quarter hour holds a quarter of the energy
    assert not check_readings_plausible(plant, 15, limits).passed
