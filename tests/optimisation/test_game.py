"""The settlement game: individually rational Shapley, sampling accuracy, the core check."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimisation.allocation import AllocationInputs, allocate, community_benefit
from optimisation.game import (
    SettlementGame,
    core_check,
    project_individually_rational,
    shapley_sampled,
    shapley_values,
    synthetic_game,
)


def random_game(n: int, t: int = 24, seed: int = 0, incentive: float = 0.1) -> SettlementGame:
    return synthetic_game(n, t, seed, incentive)


def test_hand_example_raw_shapley_negative_projected_to_zero():
    """A saves 1.00, B loses 0.30 under ECM's operation; no incentive, no flows.

    v(A) = 1.00, v(B) = 0 (B alone is better off with the rule), v(AB) = max(0.70, 0) = 0.70.
    φ_A = (1.00 + 0.70) / 2 = 0.85, φ_B = (0 + 0.70 − 1.00) / 2 = −0.15: projected onto
    {x ≥ 0, x_A + x_B = 0.70}: A 0.70, B 0.00.
    """
    zeros = np.zeros((2, 1))
    game = SettlementGame(np.array([1.0, -0.3]), 0.0, zeros, zeros, zeros, zeros, 0.7)
    phi, se, method = shapley_values(game)
    assert phi == pytest.approx([0.85, -0.15]) and se is None and method == "exact"
    assert project_individually_rational(phi, 0.7) == pytest.approx([0.7, 0.0])
    inputs = AllocationInputs(
        players=("A", "B"),
        consumption_kwh=[[1.0], [1.0]],
        import_kwh=zeros,
        export_kwh=zeros,
        standalone_cost=[2.0, 1.0],
        community_cost=[1.0, 1.3],
        incentive_per_kwh=0.0,
    )
    df = allocate(inputs, ["shapley"])
    assert df.set_index("member_id")["amount"].to_dict() == {
        "A": Decimal("0.70"),
        "B": Decimal("0.00"),
    }
    assert (
        "-0.15 so that no player below acting alone" in df["explanation"].iloc[1].replace("+", "")
        or "so that no player below acting alone" in df["explanation"].iloc[0]
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 7),
    seed=st.integers(0, 10_000),
    incentive=st.sampled_from([0.0, 0.05, 0.1, 0.3]),
)
def test_no_member_below_acting_alone_when_the_day_gains(n, seed, incentive):
    rng = np.random.default_rng(seed)
    t = 6
    imp = rng.gamma(1.0, 0.6, (n, t)) * (rng.random((n, t)) < 0.6)
    exp = rng.gamma(1.0, 0.8, (n, t)) * (rng.random((n, t)) < 0.4)
    standalone = rng.uniform(0.5, 3.0, n)
    community = standalone - rng.normal(0.0, 0.4, n)
    inputs = AllocationInputs(
        players=tuple(f"P{i}" for i in range(n)),
        consumption_kwh=imp + 0.1,
        import_kwh=imp,
        export_kwh=exp,
        standalone_cost=standalone,
        community_cost=community,
        incentive_per_kwh=incentive,
        alone_import_kwh=imp * 1.1,
        alone_export_kwh=exp * 0.9,
    )
    benefit = community_benefit(inputs)
    df = allocate(inputs)
    for rule, g in df.groupby("rule"):
        assert sum(g["amount"]) == benefit, rule  # efficiency, to the cent
        if benefit >= 0:
            assert min(g["amount"]) >= Decimal("0.00"), (rule, g["amount"].tolist())


def test_sampled_shapley_close_to_exact_with_standard_errors():
    game = random_game(12, seed=3)
    exact, _, _ = shapley_values(game)
    est, se = shapley_sampled(game, n_permutations=4000, seed=1)
    total = abs(est.sum())
    assert np.max(np.abs(est - exact)) / total < 0.01
    assert np.all(np.abs(est - exact) < 5 * se + 1e-9)
    again, _ = shapley_sampled(game, n_permutations=4000, seed=1)
    assert np.array_equal(est, again)  # the same seed gives the same cents


def test_large_community_settles_by_sampling_and_sums_exactly():
    n = 40
    game = random_game(n, seed=5)
    phi, se, method = shapley_values(game, n_permutations=200)
    assert method.startswith("sampled") and se is not None and se.shape == (n,)
    v_n = game.values(np.ones((1, n), dtype=bool))[0]
    assert phi.sum() == pytest.approx(v_n, abs=1e-9)
    x = project_individually_rational(phi, max(game.benefit, 0.0))
    check = core_check(game, x, samples=2000)
    assert check.method == "sampled" and check.max_violation >= 0.0


def test_core_check_exact_finds_a_violating_coalition():
    zeros = np.zeros((3, 1))
    game = SettlementGame(np.array([0.5, 0.5, 0.0]), 0.0, zeros, zeros, zeros, zeros, 1.0)
    ok = core_check(game, np.array([0.5, 0.5, 0.0]))
    assert ok.in_core and ok.max_violation == 0.0 and ok.method == "exact"
    bad = core_check(game, np.array([0.9, 0.05, 0.05]))
    assert not bad.in_core and bad.max_violation == pytest.approx(0.45)
    assert bad.worst_coalition == (1,)


@settings(max_examples=50, deadline=None)
@given(
    x=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=12),
    total=st.floats(0, 10, allow_nan=False),
)
def test_projection_is_individually_rational_and_efficient(x, total):
    y = project_individually_rational(np.array(x), total)
    assert np.all(y >= 0) and y.sum() == pytest.approx(total, abs=1e-9)


def test_non_finite_costs_name_the_member():
    from optimisation.allocation import AllocationError

    zeros = np.zeros((2, 1))
    with pytest.raises(AllocationError, match="standalone_cost: not finite for B"):
        AllocationInputs(
            players=("A", "B"),
            consumption_kwh=zeros,
            import_kwh=zeros,
            export_kwh=zeros,
            standalone_cost=[1.0, float("nan")],
            community_cost=[1.0, 1.0],
            incentive_per_kwh=0.1,
        )
