"""Regulatory keys on hand-computed examples (docs/regulatory_keys.md) and their invariants."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimisation.allocation import AllocationError
from optimisation.keys import at_allocate, es_allocate, es_coefficient_file, it_tiad_split

SHARES = {"consumers": 0.5, "producers": 0.3, "community": 0.2}


def test_italian_split_by_hand():
    """Hour 1: A and B withdraw 2 and 6 kWh, P injects 4: shared 4 kWh, incentive 0.40.
    Consumers get 0.20 by withdrawal (A 0.05, B 0.15), P 0.12, the community 0.08.
    Hour 2: A withdraws 1, P injects 3: shared 1, incentive 0.10: A 0.05, P 0.03, C 0.02."""
    imp = np.array([[2.0, 1.0], [6.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    exp = np.array([[0.0, 0.0], [0.0, 0.0], [4.0, 3.0], [0.0, 0.0]])
    df = it_tiad_split(("A", "B", "P", "C"), imp, exp, 0.10, SHARES, "C").set_index("member_id")
    assert df["amount"].to_dict() == {
        "A": Decimal("0.10"),
        "B": Decimal("0.15"),
        "P": Decimal("0.15"),
        "C": Decimal("0.10"),
    }
    assert df.loc["P", "as_producer"] == pytest.approx(0.15)
    assert df.loc["A", "as_consumer"] == pytest.approx(0.10)


def test_italian_split_refuses_bad_shares():
    z = np.zeros((2, 1))
    with pytest.raises(AllocationError, match="sum to 1"):
        it_tiad_split(("A", "C"), z, z, 0.1, {**SHARES, "community": 0.3}, "C")
    with pytest.raises(AllocationError, match="not a player"):
        it_tiad_split(("A", "B"), z, z, 0.1, SHARES, "C")


def test_austrian_static_and_dynamic_keys_by_hand():
    cons = np.array([[3.0], [8.0]])
    alloc, surplus = at_allocate(cons, np.array([10.0]), key="static", static_shares=[0.5, 0.5])
    assert alloc[:, 0].tolist() == [3.0, 5.0] and surplus.tolist() == [2.0]
    alloc, surplus = at_allocate(cons, np.array([10.0]), key="dynamic")
    assert alloc[:, 0] == pytest.approx([30 / 11, 80 / 11]) and surplus == pytest.approx([0.0])
    alloc, surplus = at_allocate(cons, np.array([20.0]), key="dynamic")
    assert alloc[:, 0].tolist() == [3.0, 8.0] and surplus.tolist() == [9.0]
    with pytest.raises(AllocationError, match="static_shares"):
        at_allocate(cons, np.array([1.0]), key="static", static_shares=[0.7, 0.7])


@settings(max_examples=50, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.floats(0, 5), st.floats(0, 5), st.floats(0, 12)), min_size=1, max_size=8
    ),
    key=st.sampled_from(["static", "dynamic"]),
)
def test_austrian_keys_never_allocate_above_consumption_or_generation(data, key):
    cons = np.array([[a for a, _, _ in data], [b for _, b, _ in data]])
    gen = np.array([g for _, _, g in data])
    alloc, surplus = at_allocate(cons, gen, key=key, static_shares=[0.4, 0.6])
    assert np.all(alloc <= cons + 1e-12) and np.all(surplus >= -1e-9)
    assert np.allclose(alloc.sum(axis=0) + surplus, gen)


def test_spanish_coefficients_and_file():
    alloc = es_allocate(np.array([0.25, 0.75]), np.array([4.0, 8.0]))
    assert alloc.tolist() == [[1.0, 2.0], [3.0, 6.0]]
    with pytest.raises(AllocationError, match="hour 2 sums to 0.900000"):
        es_allocate(np.array([[0.5, 0.5], [0.5, 0.4]]), np.array([1.0, 1.0]))
    cups = ["ES0031000000000001AB", "ES0031000000000002CD", "ES0031000000000003EF"]
    text = es_coefficient_file(cups, np.full((3, 8760), 1 / 3), 2021)
    lines = text.splitlines()
    assert len(lines) == 3 * 8760 and lines[0] == "ES0031000000000001AB;1;0.333334"
    first_hour = [ln for ln in lines if ln.split(";")[1] == "1"]
    assert sum(Decimal(ln.split(";")[2]) for ln in first_hour) == Decimal("1.000000")
