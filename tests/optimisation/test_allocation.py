"""Tests for optimisation.allocation: Shapley values, rounding and the allocation frame.

Shapley values are checked against a brute-force average over all n! join orders (n ≤ 6), in
exact fractions for integer games. Property tests (hypothesis) cover random communities of
2–8 players over 1–6 intervals, with values biased towards round numbers so that rounding ties
(the hard case for order independence) actually occur.
"""

from __future__ import annotations

import itertools
import math
import time
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimisation.allocation import (
    CENT,
    COLUMNS,
    RULES,
    AllocationError,
    AllocationInputs,
    allocate,
    coalition_values,
    community_benefit,
    gini,
    hourly_shared_kwh,
    individually_rational,
    largest_remainder,
    pro_rata_shared_kwh,
    shapley_exact,
    shapley_fractions,
)

PROPERTY = settings(max_examples=100, deadline=None)

# --------------------------------------------------------------------------------------------
# Reference implementations
# --------------------------------------------------------------------------------------------


def brute_force_shapley(values: np.ndarray, n: int) -> list:
    """Average marginal contribution over all n! join orders (Fractions for integer games)."""
    exact = np.issubdtype(np.asarray(values).dtype, np.integer)
    v = [int(x) for x in values] if exact else [float(x) for x in values]
    phi = [Fraction(0) if exact else 0.0 for _ in range(n)]
    for order in itertools.permutations(range(n)):
        mask = 0
        for i in order:
            phi[i] += v[mask | (1 << i)] - v[mask]
            mask |= 1 << i
    return [Fraction(p, math.factorial(n)) if exact else p / math.factorial(n) for p in phi]


def brute_force_coalitions(imp: np.ndarray, exp: np.ndarray) -> list:
    n = imp.shape[0]
    out = []
    for mask in range(1 << n):
        members = [i for i in range(n) if mask >> i & 1]
        e = exp[members].sum(axis=0) if members else np.zeros(imp.shape[1], imp.dtype)
        m = imp[members].sum(axis=0) if members else np.zeros(imp.shape[1], imp.dtype)
        out.append(np.minimum(e, m).sum())
    return out


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

ENERGY = st.one_of(
    st.just(0.0),
    st.integers(0, 40).map(lambda k: k / 4),
    st.floats(0, 50, allow_nan=False, allow_infinity=False),
)
COST = st.one_of(
    st.integers(0, 3000).map(lambda k: k / 100),
    st.floats(0, 100, allow_nan=False, allow_infinity=False),
)
INCENTIVE = st.one_of(st.sampled_from([0.0, 0.1, 0.11, 0.3]), st.floats(0, 1, allow_nan=False))
PLAYER_ID = st.text(alphabet="abcxyz019_", min_size=1, max_size=4)


@st.composite
def communities(draw: st.DrawFn, min_players: int = 2, max_players: int = 8) -> AllocationInputs:
    p = draw(st.integers(min_players, max_players))
    t = draw(st.integers(1, 6))

    def matrix() -> np.ndarray:
        return np.array(draw(st.lists(ENERGY, min_size=p * t, max_size=p * t))).reshape(p, t)

    return AllocationInputs(
        players=tuple(draw(st.lists(PLAYER_ID, min_size=p, max_size=p, unique=True))),
        consumption_kwh=matrix(),
        import_kwh=matrix(),
        export_kwh=matrix(),
        standalone_cost=np.array(draw(st.lists(COST, min_size=p, max_size=p))),
        community_cost=np.array(draw(st.lists(COST, min_size=p, max_size=p))),
        incentive_per_kwh=draw(INCENTIVE),
    )


def permuted(inputs: AllocationInputs, order: list[int]) -> AllocationInputs:
    return AllocationInputs(
        players=tuple(inputs.players[i] for i in order),
        consumption_kwh=inputs.consumption_kwh[order],
        import_kwh=inputs.import_kwh[order],
        export_kwh=inputs.export_kwh[order],
        standalone_cost=inputs.standalone_cost[order],
        community_cost=inputs.community_cost[order],
        incentive_per_kwh=inputs.incentive_per_kwh,
        currency=inputs.currency,
    )


def usable_rules(inputs: AllocationInputs) -> tuple[str, ...]:
    return RULES if inputs.consumption_kwh.sum() > 0 else ("shapley",)


def amounts(df: pd.DataFrame, rule: str) -> dict[str, Decimal]:
    rows = df[df["rule"] == rule]
    return dict(zip(rows["member_id"], rows["amount"], strict=True))


# --------------------------------------------------------------------------------------------
# Hand-computed example
# --------------------------------------------------------------------------------------------


def three_players() -> AllocationInputs:
    """A exports 6 kWh; B and C each import 4 kWh, in one interval.

    v(A) = v(B) = v(C) = v(BC) = 0, v(AB) = v(AC) = 4, v(ABC) = 6 kWh. Over the 6 join orders
    A's marginals are 0, 0, 4, 6, 4, 6 → φ_A = 20/6 = 10/3 kWh; B's are 4, 2, 0, 0, 2, 0 →
    φ_B = φ_C = 4/3 kWh. With 0.30 EUR/kWh: 1.00, 0.40, 0.40 EUR, plus own savings 0.50, 0.25,
    0.05 EUR → 1.50, 0.65, 0.45 EUR; B = 0.30 × 6 + 0.80 = 2.60 EUR.
    """
    return AllocationInputs(
        players=("A", "B", "C"),
        consumption_kwh=[[2.0], [4.0], [4.0]],
        import_kwh=[[0.0], [4.0], [4.0]],
        export_kwh=[[6.0], [0.0], [0.0]],
        standalone_cost=[1.00, 2.00, 2.00],
        community_cost=[0.50, 1.75, 1.95],
        incentive_per_kwh=0.30,
    )


def test_three_player_example_by_hand() -> None:
    inputs = three_players()
    values = coalition_values(inputs.import_kwh, inputs.export_kwh)
    assert values.tolist() == [0, 0, 0, 4, 0, 4, 0, 6]
    assert shapley_exact(values, 3) == pytest.approx([10 / 3, 4 / 3, 4 / 3], abs=1e-12)
    assert shapley_fractions(values.astype(np.int64), 3) == [
        Fraction(10, 3),
        Fraction(4, 3),
        Fraction(4, 3),
    ]
    assert community_benefit(inputs) == Decimal("2.60")

    df = allocate(inputs)
    assert amounts(df, "shapley") == {
        "A": Decimal("1.50"),
        "B": Decimal("0.65"),
        "C": Decimal("0.45"),
    }
    # pro rata: consumption 2, 4, 4 of 10 kWh × 2.60
    assert amounts(df, "pro_rata_consumption") == {
        "A": Decimal("0.52"),
        "B": Decimal("1.04"),
        "C": Decimal("1.04"),
    }
    shap = df[df["rule"] == "shapley"].set_index("member_id")
    assert shap["shared_kwh"].tolist() == pytest.approx([10 / 3, 4 / 3, 4 / 3])
    # shared 6 of 8 kWh withdrawn: B and C get 3 kWh each, A (no withdrawal) none
    prr = df[df["rule"] == "pro_rata_consumption"].set_index("member_id")
    assert prr["shared_kwh"].tolist() == pytest.approx([0.0, 3.0, 3.0])
    assert shap.loc["A", "explanation"] == (
        "Shapley value of the community game (exact, 8 coalitions) 1.50 EUR (own saving vs "
        "acting alone 0.50, 3.33 kWh shared) = 1.50 EUR"
    )
    assert prr.loc["B", "explanation"] == (
        "pro rata: 40.0% of the community's consumption (4.0 of 10.0 kWh) × benefit 2.60 EUR"
        " = 1.04 EUR"
    )


def test_output_frame_layout() -> None:
    df = allocate(three_players())
    assert list(df.columns) == list(COLUMNS)
    assert list(zip(df["rule"], df["member_id"], strict=True)) == [
        (r, p) for r in RULES for p in ("A", "B", "C")
    ]
    assert all(isinstance(a, Decimal) and a.as_tuple().exponent == -2 for a in df["amount"])
    row = df.iloc[1]
    assert (row["consumption_kwh"], row["import_kwh"], row["export_kwh"]) == (4.0, 4.0, 0.0)
    assert (row["standalone_cost"], row["community_cost"]) == (2.0, 1.75)
    only = allocate(three_players(), rules="shapley")
    assert set(only["rule"]) == {"shapley"} and len(only) == 3


# --------------------------------------------------------------------------------------------
# Shapley values
# --------------------------------------------------------------------------------------------


@PROPERTY
@given(
    n=st.integers(1, 6),
    data=st.data(),
)
def test_shapley_matches_permutation_average_on_random_games(n: int, data: st.DataObject) -> None:
    floats = data.draw(
        st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1 << n, max_size=1 << n)
    )
    v = np.array(floats)
    assert shapley_exact(v, n) == pytest.approx(brute_force_shapley(v, n), rel=1e-9, abs=1e-9)

    ints = np.array(
        data.draw(st.lists(st.integers(-(2**40), 2**40), min_size=1 << n, max_size=1 << n)),
        dtype=np.int64,
    )
    assert shapley_fractions(ints, n) == brute_force_shapley(ints, n)


@st.composite
def energy_pairs(draw: st.DrawFn) -> np.ndarray:
    """(2, P, T) int64 imports and exports, 1–6 players, 1–5 intervals."""
    p, t = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    xs = draw(st.lists(st.integers(0, 10**7), min_size=2 * p * t, max_size=2 * p * t))
    return np.array(xs, dtype=np.int64).reshape(2, p, t)


@PROPERTY
@given(energies=energy_pairs(), chunk=st.sampled_from([1, 8, 2**20]))
def test_energy_game_values_and_efficiency(energies: np.ndarray, chunk: int) -> None:
    imp, exp = energies
    n = imp.shape[0]
    values = coalition_values(imp, exp, max_chunk_elements=chunk)
    assert values.dtype == np.int64
    assert values.tolist() == brute_force_coalitions(imp, exp)
    fvalues = coalition_values(imp / 1e3, exp / 1e3, max_chunk_elements=chunk)
    assert fvalues == pytest.approx(values / 1e3, rel=1e-12, abs=1e-9)

    phi = shapley_fractions(values, n)
    assert phi == brute_force_shapley(values, n)
    assert sum(phi) == values[-1] == hourly_shared_kwh(imp, exp).sum()  # efficiency, exact
    assert all(p >= 0 for p in phi)  # the shared-energy game is monotone
    assert shapley_exact(fvalues, n).sum() == pytest.approx(fvalues[-1], rel=1e-12, abs=1e-9)


def test_shapley_limits_and_shapes() -> None:
    with pytest.raises(AllocationError, match="n=21 > 20"):
        shapley_exact(np.zeros(1), 21)
    with pytest.raises(AllocationError, match="values: expected shape"):
        shapley_exact(np.zeros(7), 3)
    with pytest.raises(AllocationError, match="limited to 20"):
        coalition_values(np.zeros((21, 1)), np.zeros((21, 1)))
    assert shapley_exact(np.zeros(1), 0).shape == (0,)


# --------------------------------------------------------------------------------------------
# Fairness axioms
# --------------------------------------------------------------------------------------------


def test_symmetric_players_split_by_player_id() -> None:
    """Equal exact shares → amounts differ by at most 0.01, the extra cents going to the ids
    that sort first. Three identical members split 1.00 → 0.34 for "m1", 0.33 for the others,
    whatever the input order; "m1" is listed last on purpose."""
    inputs = AllocationInputs(
        players=("m3", "m2", "m1"),
        consumption_kwh=[[1.0], [1.0], [1.0]],
        import_kwh=[[0.0], [0.0], [0.0]],
        export_kwh=[[0.0], [0.0], [0.0]],
        standalone_cost=[1.0, 1.0, 1.0],
        community_cost=[2 / 3, 2 / 3, 2 / 3],
        incentive_per_kwh=0.1,
    )
    # each saves 1 − 0.6666666666666666 (the float as printed) → 1.0000000000000002 in total
    assert community_benefit(inputs) == Decimal("1.00")
    df = allocate(inputs)
    for rule in RULES:
        assert amounts(df, rule) == {
            "m1": Decimal("0.34"),
            "m2": Decimal("0.33"),
            "m3": Decimal("0.33"),
        }


def test_exact_ties_between_different_players_go_to_the_smaller_id() -> None:
    """Savings 1.0 − 0.665 and 0.9 − 0.565 are both exactly 0.335 (as printed), although in
    binary floating point the first is below and the second above 0.335. Exact arithmetic sees
    the tie, so the odd cent of 0.67 goes to "a", not to whichever float is larger."""
    inputs = AllocationInputs(
        players=("b", "a"),
        consumption_kwh=[[1.0], [1.0]],
        import_kwh=[[0.0], [0.0]],
        export_kwh=[[0.0], [0.0]],
        standalone_cost=[0.9, 1.0],
        community_cost=[0.565, 0.665],
        incentive_per_kwh=0.1,
    )
    assert 0.9 - 0.565 > 1.0 - 0.665  # the trap
    df = allocate(inputs)
    for rule in RULES:
        assert amounts(df, rule) == {"a": Decimal("0.34"), "b": Decimal("0.33")}


@PROPERTY
@given(inputs=communities(min_players=3), twin=st.integers(0, 7))
def test_symmetric_players_random(inputs: AllocationInputs, twin: int) -> None:
    p = len(inputs.players)
    j = 1 + twin % (p - 1)  # player j becomes an exact copy of player 0
    arrays = {
        name: np.array(getattr(inputs, name))
        for name in (
            "consumption_kwh",
            "import_kwh",
            "export_kwh",
            "standalone_cost",
            "community_cost",
        )
    }
    for arr in arrays.values():
        arr[j] = arr[0]
    twins = AllocationInputs(
        players=inputs.players, incentive_per_kwh=inputs.incentive_per_kwh, **arrays
    )
    df = allocate(twins, usable_rules(twins))
    a, b = inputs.players[0], inputs.players[j]
    first, second = sorted((a, b))
    for rule in usable_rules(twins):
        got = amounts(df, rule)
        assert got[first] - got[second] in (Decimal("0.00"), Decimal("0.01"))
    shap = df[df["rule"] == "shapley"].set_index("member_id")["shared_kwh"]
    assert shap[a] == shap[b]


@PROPERTY
@given(inputs=communities(max_players=7), position=st.integers(0, 7))
def test_null_player_gets_nothing(inputs: AllocationInputs, position: int) -> None:
    p = len(inputs.players)
    k = position % (p + 1)
    zeros_row = np.zeros((1, inputs.import_kwh.shape[1]))

    def insert(arr: np.ndarray, row: np.ndarray) -> np.ndarray:
        return np.concatenate([arr[:k], row, arr[k:]])

    with_null = AllocationInputs(
        players=inputs.players[:k] + ("null",) + inputs.players[k:],
        consumption_kwh=insert(inputs.consumption_kwh, zeros_row),
        import_kwh=insert(inputs.import_kwh, zeros_row),
        export_kwh=insert(inputs.export_kwh, zeros_row),
        standalone_cost=insert(inputs.standalone_cost, np.array([7.25])),
        community_cost=insert(inputs.community_cost, np.array([7.25])),
        incentive_per_kwh=inputs.incentive_per_kwh,
    )
    df = allocate(with_null, usable_rules(with_null))
    for rule in usable_rules(with_null):
        assert amounts(df, rule)["null"] == Decimal("0.00")
    assert df.loc[df["member_id"] == "null", "shared_kwh"].tolist() == [0.0] * len(
        usable_rules(with_null)
    )


# --------------------------------------------------------------------------------------------
# Allocation properties
# --------------------------------------------------------------------------------------------


@PROPERTY
@given(inputs=communities(), data=st.data())
def test_allocation_is_exact_and_order_independent(
    inputs: AllocationInputs, data: st.DataObject
) -> None:
    rules = usable_rules(inputs)
    if len(rules) < len(RULES):
        with pytest.raises(AllocationError, match="consumption_kwh"):
            allocate(inputs, ("pro_rata_consumption",))
    benefit = community_benefit(inputs)
    assert benefit == benefit.quantize(CENT)
    df = allocate(inputs, rules)
    order = data.draw(st.permutations(range(len(inputs.players))))
    df_perm = allocate(permuted(inputs, order), rules)
    assert community_benefit(permuted(inputs, order)) == benefit
    for rule in rules:
        got = amounts(df, rule)
        assert all(a == a.quantize(CENT) and a.as_tuple().exponent == -2 for a in got.values())
        assert sum(got.values()) == benefit
        assert amounts(df_perm, rule) == got  # exactly, cent for cent
        shared = df[df["rule"] == rule].set_index("member_id")["shared_kwh"]
        shared_perm = df_perm[df_perm["rule"] == rule].set_index("member_id")["shared_kwh"]
        assert shared_perm[shared.index].tolist() == pytest.approx(shared.tolist(), abs=1e-9)
        # both rules hand out the day's shared energy (Shapley at 1 mWh resolution)
        total_shared = hourly_shared_kwh(inputs.import_kwh, inputs.export_kwh).sum()
        assert shared.sum() == pytest.approx(total_shared, rel=1e-9, abs=1e-5)


@PROPERTY
@given(inputs=communities())
def test_pro_rata_energy_within_withdrawal_and_shared(inputs: AllocationInputs) -> None:
    alloc = pro_rata_shared_kwh(inputs.import_kwh, inputs.export_kwh)
    shared = hourly_shared_kwh(inputs.import_kwh, inputs.export_kwh)
    assert alloc.shape == inputs.import_kwh.shape
    assert np.all(alloc >= 0)
    assert np.all(alloc <= inputs.import_kwh)  # exactly, in every interval
    assert np.all(alloc.sum(axis=0) <= shared * (1 + 1e-12) + 1e-12)
    assert alloc.sum(axis=0) == pytest.approx(shared, rel=1e-12, abs=1e-12)


def test_pro_rata_with_no_consumption_is_refused() -> None:
    base = three_players()
    inputs = AllocationInputs(
        players=base.players,
        consumption_kwh=np.zeros((3, 1)),
        import_kwh=base.import_kwh,
        export_kwh=base.export_kwh,
        standalone_cost=base.standalone_cost,
        community_cost=base.community_cost,
        incentive_per_kwh=base.incentive_per_kwh,
    )
    with pytest.raises(AllocationError, match="consumption_kwh: the community consumed nothing"):
        allocate(inputs)
    assert sum(amounts(allocate(inputs, ["shapley"]), "shapley").values()) == Decimal("2.60")


@pytest.mark.parametrize(
    ("rules", "message"),
    [(["fifty_fifty"], "rules: unknown"), (["shapley", "shapley"], "rules: repeated"), ([], "")],
)
def test_allocate_refuses_bad_rules(rules: list[str], message: str) -> None:
    with pytest.raises(AllocationError, match=message or "rules: at least one"):
        allocate(three_players(), rules)


# --------------------------------------------------------------------------------------------
# Largest remainder
# --------------------------------------------------------------------------------------------


@PROPERTY
@given(
    values=st.lists(
        st.decimals(min_value=-1000, max_value=1000, places=4), min_size=1, max_size=12
    ),
    quantum=st.sampled_from([Decimal("0.01"), Decimal("0.05"), Decimal("1")]),
    data=st.data(),
)
def test_largest_remainder_properties(
    values: list[Decimal], quantum: Decimal, data: st.DataObject
) -> None:
    exact = sum(values, Decimal(0))
    total = (exact / quantum).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * quantum
    keys = [f"p{i:02d}" for i in range(len(values))]
    got = largest_remainder(values, total, quantum, keys)
    assert sum(got, Decimal(0)) == total
    for g, v in zip(got, values, strict=True):
        assert (g / quantum) == (g / quantum).to_integral_value()
        assert abs(g - v) < quantum
        if v % quantum == 0:
            assert g == v
    # the extra quanta went to the largest remainders, ties to the smaller key
    rem = [(v / quantum) % 1 for v in values]  # Decimal % keeps the sign: make it a floor
    rem = [r + 1 if r < 0 else r for r in rem]
    up = [g > v and rem[i] != 0 for i, (g, v) in enumerate(zip(got, values, strict=True))]
    for i, j in itertools.permutations(range(len(values)), 2):
        if up[i] and not up[j]:
            assert (rem[i], keys[j]) > (rem[j], keys[i]) or rem[j] == 0
    order = data.draw(st.permutations(range(len(values))))
    got_perm = largest_remainder(
        [values[i] for i in order], total, quantum, [keys[i] for i in order]
    )
    assert dict(zip([keys[i] for i in order], got_perm, strict=True)) == dict(
        zip(keys, got, strict=True)
    )


def test_largest_remainder_examples() -> None:
    third = Fraction(1, 3)
    assert largest_remainder([third] * 3, Decimal("1.00"), keys=["c", "a", "b"]) == [
        Decimal("0.33"),
        Decimal("0.34"),
        Decimal("0.33"),
    ]
    # negatives floor towards −∞; the tie goes to the smaller key
    assert largest_remainder([-0.005, -0.005], Decimal("-0.01"), keys=["b", "a"]) == [
        Decimal("-0.01"),
        Decimal("0.00"),
    ]
    # largest remainder, not nearest-to-zero: −1.6 and 0.6 cents → −2 and 1 cents
    assert largest_remainder([-0.016, 0.006], Decimal("-0.01")) == [
        Decimal("-0.02"),
        Decimal("0.01"),
    ]
    # floats are read as printed: 0.145 has remainder exactly one half
    assert largest_remainder([0.145, 0.145], Decimal("0.29")) == [
        Decimal("0.15"),
        Decimal("0.14"),
    ]
    # a total further off than rounding, but within n quanta, moves everyone
    assert largest_remainder([0.004] * 3, Decimal("0.03")) == [Decimal("0.01")] * 3
    assert largest_remainder([], Decimal("0.00")) == []
    with pytest.raises(AllocationError, match="at most 3 quanta"):
        largest_remainder([0.004] * 3, Decimal("0.05"))
    with pytest.raises(AllocationError, match="not a multiple"):
        largest_remainder([0.5], Decimal("0.505"))
    with pytest.raises(AllocationError, match="keys"):
        largest_remainder([0.5], Decimal("0.50"), keys=["a", "b"])
    with pytest.raises(AllocationError, match="not finite"):
        largest_remainder([float("nan")], Decimal("0.00"))


# --------------------------------------------------------------------------------------------
# Inputs, metrics
# --------------------------------------------------------------------------------------------


def _fields(**override: object) -> dict:
    base = {
        "players": ("A", "B"),
        "consumption_kwh": [[1.0, 2.0], [3.0, 4.0]],
        "import_kwh": [[1.0, 0.0], [0.0, 1.0]],
        "export_kwh": [[0.0, 1.0], [1.0, 0.0]],
        "standalone_cost": [1.0, 1.0],
        "community_cost": [0.5, 0.5],
        "incentive_per_kwh": 0.1,
    }
    return base | override


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"players": ("A", "A")}, "players"),
        ({"players": ()}, "players"),
        ({"players": "AB"}, "players"),
        ({"consumption_kwh": [[1.0, 2.0]]}, "consumption_kwh"),
        ({"import_kwh": [[1.0], [1.0]]}, "import_kwh"),
        ({"import_kwh": [[-1.0, 0.0], [0.0, 1.0]]}, "import_kwh"),
        ({"export_kwh": [[np.nan, 1.0], [1.0, 0.0]]}, "export_kwh"),
        ({"standalone_cost": [1.0]}, "standalone_cost"),
        ({"community_cost": [np.inf, 0.0]}, "community_cost"),
        ({"incentive_per_kwh": -0.1}, "incentive_per_kwh"),
        ({"incentive_per_kwh": "ten"}, "incentive_per_kwh"),
    ],
)
def test_inputs_validation_names_the_field(override: dict, field: str) -> None:
    with pytest.raises(AllocationError, match=f"^{field}:"):
        AllocationInputs(**_fields(**override))


def test_inputs_are_read_only_copies() -> None:
    source = np.array([[1.0, 0.0], [0.0, 1.0]])
    inputs = AllocationInputs(**_fields(import_kwh=source))
    source[0, 0] = 99.0
    assert inputs.import_kwh[0, 0] == 1.0
    with pytest.raises(ValueError):
        inputs.import_kwh[0, 0] = 5.0


def test_gini() -> None:
    assert gini([2.0, 2.0, 2.0]) == 0.0
    assert gini([0, 0, 0, 1]) == pytest.approx(0.75)
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 3, 9)
    brute = np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean())
    assert gini(x) == pytest.approx(brute)
    assert gini([Decimal("0.10"), Decimal("0.30")]) == pytest.approx(0.25)
    with pytest.raises(AllocationError, match="positive mean"):
        gini([-1.0, 0.5])
    with pytest.raises(AllocationError, match="undefined"):
        gini([])


def test_individually_rational_lists_players_worse_off() -> None:
    inputs = AllocationInputs(
        **_fields(standalone_cost=[1.0, 1.0], community_cost=[0.5, 1.6], incentive_per_kwh=0.0)
    )
    df = allocate(inputs)
    # savings 0.50 and −0.60, no incentive: the day lost 0.10 against acting alone, and the
    # approved loss-sharing policy (pro rata to consumption, 3 : 7) spreads it under both rules
    assert amounts(df, "shapley") == amounts(df, "pro_rata_consumption")
    assert individually_rational(df, "shapley") == ["A", "B"]
    assert individually_rational(df, "pro_rata_consumption") == ["A", "B"]
    assert individually_rational(allocate(three_players()), "shapley") == []
    with pytest.raises(AllocationError, match="no rows"):
        individually_rational(df, "nucleolus")


# --------------------------------------------------------------------------------------------
# Performance (measured ~0.3 s for P=18 and ~0.9 s for P=20, T=24, on 2 cores)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_players", [18, 20])
def test_exact_shapley_speed(n_players: int) -> None:
    rng = np.random.default_rng(n_players)
    shape = (n_players, 24)
    imp = np.rint(rng.uniform(0, 5e6, shape) * (rng.random(shape) < 0.6)).astype(np.int64)
    exp = np.rint(rng.uniform(0, 5e6, shape) * (rng.random(shape) < 0.4)).astype(np.int64)
    start = time.perf_counter()
    values = coalition_values(imp, exp)
    phi = shapley_fractions(values, n_players)
    elapsed = time.perf_counter() - start
    assert sum(phi) == values[-1] == hourly_shared_kwh(imp, exp).sum()
    assert elapsed < 10.0, f"exact Shapley for {n_players} players took {elapsed:.1f} s"


@pytest.mark.parametrize(
    ("saving", "expected"), [(0.125, "0.32"), (0.135, "0.34"), (-0.125, "0.08"), (0.13, "0.33")]
)
def test_community_benefit_rounds_half_to_even(saving: float, expected: str) -> None:
    """Incentive 0.1 × 2 kWh shared (1 kWh in each interval) = 0.20, plus the saving: 0.325,
    0.335 and 0.075 are exact ties (savings are read as printed) and go to the even cent."""
    inputs = AllocationInputs(**_fields(standalone_cost=[saving, 0.0], community_cost=[0.0, 0.0]))
    assert community_benefit(inputs) == Decimal(expected)


def test_a_loss_is_shared_even_when_consumption_is_subnormal() -> None:
    """Found by hypothesis: a loss of 0.04 with one player's consumption at 5e-324 kWh
    underflowed to nothing (b x cons before the division) and the cents did not add up."""
    z = np.zeros((4, 1))
    inputs = AllocationInputs(
        players=("0", "1", "00", "000"),
        consumption_kwh=np.array([[0.0], [0.0], [0.0], [5e-324]]),
        import_kwh=z.copy(),
        export_kwh=z.copy(),
        standalone_cost=np.zeros(4),
        community_cost=np.array([0.0, 0.0, 0.0, 0.04]),
        incentive_per_kwh=0.0,
        currency="EUR",
        alone_import_kwh=z.copy(),
        alone_export_kwh=z.copy(),
        loss_sharing="pro_rata_consumption",
    )
    df = allocate(inputs, ("shapley",))
    assert amounts(df, "shapley") == {
        "0": Decimal("0.00"),
        "1": Decimal("0.00"),
        "00": Decimal("0.00"),
        "000": Decimal("-0.04"),
    }


# --------------------------------------------------------------------------------------------
# Quarter-hour meters, hourly incentive
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "minutes", "n_intervals", "n_periods"),
    [
        ("2021-06-01", 60, 24, 24),
        ("2021-06-01", 15, 96, 24),
        ("2021-03-28", 15, 92, 23),  # spring forward: 23 local hours
        ("2021-10-31", 15, 100, 25),  # fall back: the repeated hour is two periods
    ],
)
def test_incentive_periods_are_local_clock_hours(day, minutes, n_intervals, n_periods) -> None:
    from models.timeutil import day_intervals_utc
    from optimisation.allocation import incentive_periods

    ts = day_intervals_utc(pd.Timestamp(day).date(), "Europe/Rome", minutes)
    assert len(ts) == n_intervals
    p = incentive_periods(ts, "Europe/Rome")
    assert p.tolist() == sorted(p.tolist()) and p[0] == 0 and p[-1] == n_periods - 1
    assert np.bincount(p).tolist() == [60 // minutes] * n_periods


def test_quarter_hours_are_settled_on_the_hours_min_of_sums() -> None:
    """A injects in the first quarter of an hour, B withdraws in the second: no quarter-hour
    has both, but the hour shares 1 kWh, and the incentive is paid on it (ARERA: hourly)."""
    from models.timeutil import day_intervals_utc
    from optimisation.allocation import incentive_periods, per_period
    from optimisation.control import DayFlows
    from optimisation.evaluation import day_totals

    ts = day_intervals_utc(pd.Timestamp("2021-06-01").date(), "Europe/Rome", 15)
    t_n = len(ts)
    imp, exp = np.zeros((2, t_n)), np.zeros((2, t_n))
    exp[0, 40] = 1.0  # A, 10:00-10:15
    imp[1, 41] = 1.0  # B, 10:15-10:30
    hours = incentive_periods(ts, "Europe/Rome")
    assert hourly_shared_kwh(imp, exp).sum() == 0.0  # per quarter-hour: nothing shared
    assert hourly_shared_kwh(per_period(imp, hours), per_period(exp, hours)).sum() == 1.0
    inputs = AllocationInputs(
        players=("A", "B"),
        consumption_kwh=per_period(imp, hours),
        import_kwh=per_period(imp, hours),
        export_kwh=per_period(exp, hours),
        standalone_cost=np.array([-0.05, 0.30]),
        community_cost=np.array([-0.05, 0.30]),
        incentive_per_kwh=0.11,
    )
    assert community_benefit(inputs) == Decimal("0.11")
    assert allocate(inputs, "pro_rata_consumption")["amount"].sum() == Decimal("0.11")
    flows = DayFlows(
        np.zeros((2, t_n)),
        np.zeros((2, t_n)),
        np.zeros((2, t_n)),
        imp,
        exp,
        np.full(t_n, "optimised", dtype=object),
    )
    prices = np.full(t_n, 0.3), np.full(t_n, 0.05)
    assert day_totals(flows, *prices, 0.11, None, 0.0)["shared_kwh"] == 0.0
    assert day_totals(flows, *prices, 0.11, None, 0.0, hours)["incentive"] == pytest.approx(0.11)
