"""The settlement game: what each coalition of players saves by cooperating, on the realised day.

Players are the members and the community fund (which owns the shared assets). Acting alone,
a player runs its own battery by the greedy self-consumption rule (the fund: its plant exports,
its battery idle) and pays ``standalone_i``; that is the benchmark every amount is measured
against, so a player's standalone benefit is 0.

**The characteristic function** (money saved against acting alone, [currency]):
``v(∅) = 0`` and for every other coalition ``S``

``v(S) = max( Σ_{i∈S} s_i + r · shared(ECM flows of S),  r · shared(rule flows of S) )``

where ``s_i = standalone_i − realised_i`` is player i's grid-cost saving under ECM's real-time
layer, ``r`` the incentive rate, and ``shared(F) = Σ_t min(Σ_{i∈S} export_i,t, Σ_{i∈S}
import_i,t)`` the hourly shared energy of those flows.

*The approximation, stated*: a coalition's cost is not re-optimised per coalition; it is the
better of two operations that were actually run on the metered day: ECM's realised flows
restricted to the coalition, or every member of it running the self-consumption rule while
sharing energy. Both are achievable by the coalition, so ``v`` is a lower bound of the
re-optimised game. The money that exists is the realised benefit ``B = Σ s_i + r · shared(ECM
flows of N) ≤ v(N)`` (smaller when the rule would have done better for everyone that day).

**Allocation**: the Shapley value of ``v`` (exact for ≤ 20 players, permutation sampling with
antithetic pairs above), projected onto the individually rational set ``{x : x_i ≥ 0,
Σ x_i = B}`` (the Euclidean projection onto the scaled simplex) when ``B ≥ 0``: no player
receives less than acting alone. Since ``Σ φ = v(N) ≥ B`` the projection only lowers shares,
so a null player keeps 0 and equal players stay equal. The core check compares the settled
amounts with every proper coalition's value. When ``B < 0`` (the day cost more than everyone acting
alone) the loss is shared by the approved ``loss_sharing`` policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optimisation.allocation import MAX_EXACT_PLAYERS, AllocationError, shapley_exact


@dataclass(frozen=True, eq=False)
class SettlementGame:
    """One realised day as a cooperative game.

    Parameters
    ----------
    savings : ndarray, shape (P,)
        ``standalone_i − realised_i`` grid cost saved under ECM's operation [currency].
    incentive_per_kwh : float
        Incentive on hourly shared energy [currency/kWh].
    ecm_import, ecm_export : ndarray, shape (P, T)
        Realised grid flows under ECM's real-time layer [kWh].
    alone_import, alone_export : ndarray, shape (P, T)
        Grid flows of each player acting alone (the rule) [kWh].
    benefit : float
        The realised benefit ``B`` to distribute [currency].
    """

    savings: np.ndarray
    incentive_per_kwh: float
    ecm_import: np.ndarray
    ecm_export: np.ndarray
    alone_import: np.ndarray
    alone_export: np.ndarray
    benefit: float

    def __post_init__(self) -> None:
        n = len(self.savings)
        for name in ("ecm_import", "ecm_export", "alone_import", "alone_export"):
            arr = np.asarray(getattr(self, name), dtype=float)
            if arr.ndim != 2 or arr.shape[0] != n:
                raise AllocationError(f"{name}: expected shape ({n}, T), got {arr.shape}")
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise AllocationError(f"{name}: energies must be finite and non-negative")
            object.__setattr__(self, name, arr)
        s = np.asarray(self.savings, dtype=float)
        if not np.all(np.isfinite(s)):
            bad = int(np.flatnonzero(~np.isfinite(s))[0])
            raise AllocationError(f"savings: player {bad} has a non-finite saving")
        object.__setattr__(self, "savings", s)
        if not math.isfinite(self.benefit):
            raise AllocationError("benefit: not finite")

    @property
    def n(self) -> int:
        """Number of players."""
        return len(self.savings)

    def values(self, masks: np.ndarray) -> np.ndarray:
        """``v(S)`` for coalitions given as boolean rows.

        Parameters
        ----------
        masks : ndarray of bool, shape (M, P)

        Returns
        -------
        ndarray, shape (M,)
            [currency]
        """
        m = np.asarray(masks, dtype=bool)
        w = m.astype(float)
        r = self.incentive_per_kwh
        ecm = w @ self.savings + r * np.minimum(w @ self.ecm_export, w @ self.ecm_import).sum(1)
        rule = r * np.minimum(w @ self.alone_export, w @ self.alone_import).sum(axis=1)
        v = np.maximum(ecm, rule)
        v[~m.any(axis=1)] = 0.0
        return v

    def table(self) -> np.ndarray:
        """``v(S)`` of every coalition, indexed by bitmask (bit i = player i), P ≤ 20.

        Computed once per game (Shapley and the core check both read it).
        """
        cached = self.__dict__.get("_table")
        if cached is not None:
            return cached
        n = self.n
        if n > MAX_EXACT_PLAYERS:
            raise AllocationError(f"players: {n} > {MAX_EXACT_PLAYERS}; use sampling")
        out = np.empty(1 << n)
        bits = np.arange(n)
        chunk = 1 << 14
        for lo in range(0, 1 << n, chunk):
            idx = np.arange(lo, min(lo + chunk, 1 << n))
            out[idx] = self.values((idx[:, None] >> bits) & 1)
        out.setflags(write=False)
        object.__setattr__(self, "_table", out)
        return out


def shapley_sampled(
    game: SettlementGame, n_permutations: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values by permutation sampling with antithetic pairs.

    Every sampled permutation is used with its reverse; a player's marginal contributions in
    both are averaged into one draw, so the draws are independent. Marginals are computed
    incrementally: running coalition sums of savings and flows, O(P · T) per permutation.

    Parameters
    ----------
    game : SettlementGame
    n_permutations : int
        Permutations sampled (each also reversed) [-].
    seed : int
        Random seed: the same seed gives the same values.

    Returns
    -------
    phi : ndarray, shape (P,)
        Estimated Shapley values [currency], scaled so they sum exactly to ``v(N)``.
    se : ndarray, shape (P,)
        Standard error of each estimate [currency].
    """
    n = game.n
    rng = np.random.default_rng(seed)
    pairs = max(1, n_permutations // 2)
    total = np.zeros(n)
    total_sq = np.zeros(n)
    batch = max(1, min(pairs, 2_000_000 // max(n * game.ecm_import.shape[1], 1)))
    done = 0
    while done < pairs:
        k = min(batch, pairs - done)
        perms = np.argsort(rng.random((k, n)), axis=1)
        m1 = _marginals(game, perms)
        m2 = _marginals(game, perms[:, ::-1])
        draw = 0.5 * (m1 + m2)
        total += draw.sum(axis=0)
        total_sq += (draw**2).sum(axis=0)
        done += k
    mean = total / pairs
    var = np.maximum(total_sq / pairs - mean**2, 0.0) * pairs / max(pairs - 1, 1)
    se = np.sqrt(var / pairs)
    return mean, se


def _marginals(game: SettlementGame, perms: np.ndarray) -> np.ndarray:
    """Marginal contribution of every player in each permutation, shape (K, P)."""
    k, n = perms.shape
    t = game.ecm_import.shape[1]
    r = game.incentive_per_kwh
    sav = np.zeros(k)
    ee, ei = np.zeros((k, t)), np.zeros((k, t))
    ae, ai = np.zeros((k, t)), np.zeros((k, t))
    prev = np.zeros(k)
    out = np.empty((k, n))
    rows = np.arange(k)
    for pos in range(n):
        p = perms[:, pos]
        sav += game.savings[p]
        ee += game.ecm_export[p]
        ei += game.ecm_import[p]
        ae += game.alone_export[p]
        ai += game.alone_import[p]
        v = np.maximum(sav + r * np.minimum(ee, ei).sum(axis=1), r * np.minimum(ae, ai).sum(axis=1))
        out[rows, p] = v - prev
        prev = v
    return out


def shapley_values(
    game: SettlementGame, *, n_permutations: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Shapley values: exact for ≤ 20 players, sampled above.

    Returns
    -------
    phi : ndarray, shape (P,)
        [currency], summing to ``v(N)``.
    se : ndarray or None
        Standard errors when sampled [currency].
    method : str
        ``exact`` or ``sampled(<permutations>)``.
    """
    if game.n <= MAX_EXACT_PLAYERS:
        return shapley_exact(game.table(), game.n), None, "exact"
    phi, se = shapley_sampled(game, n_permutations, seed)
    v_n = float(game.values(np.ones((1, game.n), dtype=bool))[0])
    phi = phi + (v_n - phi.sum()) / game.n  # efficiency, exactly
    return phi, se, f"sampled({2 * max(1, n_permutations // 2)} permutations)"


def project_individually_rational(x: np.ndarray, total: float) -> np.ndarray:
    """The closest allocation (Euclidean) with every share ≥ 0 summing to ``total`` ≥ 0.

    The projection onto the scaled simplex: ``x'_i = max(x_i − τ, 0)`` with ``τ`` such that
    the shares sum to ``total``. An allocation already individually rational is unchanged.

    Raises
    ------
    AllocationError
        If ``total`` is negative (no individually rational allocation exists).
    """
    x = np.asarray(x, dtype=float)
    if total < 0:
        raise AllocationError(f"total: {total} < 0 has no individually rational allocation")
    if np.all(x >= 0) and math.isclose(x.sum(), total, rel_tol=0, abs_tol=1e-9):
        return x.copy()
    if total == 0:
        return np.zeros_like(x)
    u = np.sort(x)[::-1]
    css = np.cumsum(u) - total
    ks = np.arange(1, len(x) + 1)
    positive = np.flatnonzero(u - css / ks > 0)
    rho = positive[-1] if len(positive) else 0  # a total below float precision
    tau = css[rho] / (rho + 1)
    return np.maximum(x - tau, 0.0)


@dataclass(frozen=True)
class CoreCheck:
    """Whether an allocation is in the core: no coalition gets more by leaving."""

    in_core: bool
    max_violation: float
    """max over coalitions of v(S) − x(S) [currency]; ≤ 0 in the core"""
    worst_coalition: tuple[int, ...]
    method: str


def core_check(game: SettlementGame, x: np.ndarray, *, samples: int = 20000, seed: int = 0):
    """Check ``x`` against every coalition (≤ 20 players) or a sample of them (above).

    Above 20 players the coalitions checked are the prefixes of random permutations (every
    size equally represented) plus each player's complement, which is where a member who
    pays for others would want to leave; the result is then labelled ``sampled``.

    Returns
    -------
    CoreCheck
    """
    x = np.asarray(x, dtype=float)
    n = game.n
    tol = 1e-6
    if n <= MAX_EXACT_PLAYERS:
        v = game.table()
        xs = np.zeros(1 << n)
        for j in range(n):
            xs[1 << j : 2 << j] = xs[: 1 << j] + x[j]
        viol = v - xs
        viol[0] = viol[-1] = -np.inf
        k = int(np.argmax(viol))
        worst = tuple(int(i) for i in np.flatnonzero((k >> np.arange(n)) & 1))
        return CoreCheck(bool(viol[k] <= tol), float(max(viol[k], 0.0)), worst, "exact")
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((max(1, samples // n), n)), axis=1)
    sizes = rng.integers(1, n, size=len(perms))
    masks = np.zeros((len(perms) + n, n), dtype=bool)
    for r, (perm, s) in enumerate(zip(perms, sizes, strict=True)):
        masks[r, perm[:s]] = True
    masks[len(perms) :] = ~np.eye(n, dtype=bool)
    viol = game.values(masks) - masks.astype(float) @ x
    k = int(np.argmax(viol))
    worst = tuple(int(i) for i in np.flatnonzero(masks[k]))
    return CoreCheck(bool(viol[k] <= tol), float(max(viol[k], 0.0)), worst, "sampled")


def synthetic_game(
    n: int, intervals: int = 24, seed: int = 0, incentive: float = 0.1
) -> SettlementGame:
    """A random community day for benchmarks and tests: gamma-distributed imports (60 % of
    intervals) and exports (40 %), the rule's flows within ±30 % of them, savings ~ N(0.05,
    0.3) [currency]."""
    rng = np.random.default_rng(seed)
    imp = rng.gamma(1.0, 0.6, (n, intervals)) * (rng.random((n, intervals)) < 0.6)
    exp = rng.gamma(1.0, 0.8, (n, intervals)) * (rng.random((n, intervals)) < 0.4)
    a_imp = imp * rng.uniform(0.9, 1.3, (n, intervals))
    a_exp = exp * rng.uniform(0.8, 1.1, (n, intervals))
    savings = rng.normal(0.05, 0.3, n)
    b = savings.sum() + incentive * np.minimum(exp.sum(0), imp.sum(0)).sum()
    return SettlementGame(savings, incentive, imp, exp, a_imp, a_exp, float(b))


def bench_allocation(
    players: int, intervals: int = 24, permutations: int = 2000, seed: int = 0
) -> dict[str, float | int | str]:
    """Time the settlement of a synthetic game; for ≤ 20 players also the sampled values'
    largest error against exact, relative to the total.

    Returns
    -------
    dict
        ``players, method, seconds`` (and ``max_rel_error``, ``sampled_seconds``).
    """
    import time

    game = synthetic_game(players, intervals, seed)
    t0 = time.perf_counter()
    phi, se, method = shapley_values(game, n_permutations=permutations, seed=seed)
    x = project_individually_rational(phi, max(game.benefit, 0.0))
    seconds = time.perf_counter() - t0
    out: dict[str, float | int | str] = {
        "players": players,
        "intervals": intervals,
        "method": method,
        "seconds": round(seconds, 3),
        "min_amount": round(float(x.min()), 6),
    }
    if se is not None:
        out["max_standard_error"] = round(float(se.max()), 6)
    if players <= MAX_EXACT_PLAYERS:
        t0 = time.perf_counter()
        est, se_s = shapley_sampled(game, permutations, seed)
        out["sampled_seconds"] = round(time.perf_counter() - t0, 3)
        total = abs(float(phi.sum())) or 1.0
        out["max_rel_error"] = round(float(np.max(np.abs(est - phi)) / total), 6)
    return out
