"""Allocation of a community's daily benefit to its players under fairness rules.

The community benefit of a day is the incentive earned on energy shared inside the community
plus what the players save, on their grid bills, against acting alone::

    B = incentive × Σ_t min(Σ_p export_p,t, Σ_p import_p,t) + Σ_p (standalone_p − community_p)

Two rules split ``B`` between the players (members and the community owner, who holds the
shared assets):

``pro_rata_consumption``
    Each player gets ``B`` in proportion to its daily consumption. Its shared energy is the
    hourly shared energy keyed by its grid withdrawal, so no player is ever allocated more
    shared energy than it withdrew in an interval.
``shapley``
    Each player gets its Shapley value in the game
    ``v(S) = incentive × shared_kWh(S) + Σ_{p∈S} (standalone_p − community_p)``: ``incentive`` ×
    its Shapley value in the shared-energy game, plus its own savings (the additive part).

Exactness
---------
Money is :class:`~decimal.Decimal` and every rule distributes exactly ``B`` rounded to the cent,
using largest-remainder rounding with ties broken by player id. So that ties are real ties and
results do not depend on the order in which players are listed, the allocation is computed in
exact arithmetic: energies are resolved to 1 mWh (``ENERGY_UNITS_PER_KWH`` integer units per
kWh, far below meter resolution), coalition values are integers, Shapley values are
:class:`~fractions.Fraction` and money inputs are read as the decimals they print as
(``0.1`` is 1/10, not the nearest binary float).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

RULES = ("pro_rata_consumption", "shapley")
"""Allocation rules understood by :func:`allocate`."""

LOSS_SHARING = ("pro_rata_consumption", "equal")
"""How a day whose benefit is negative is shared (a policy choice, approved with the rules)."""

MAX_EXACT_PLAYERS = 20
"""Largest number of players for exact (2^P coalitions) Shapley values."""

ENERGY_UNITS_PER_KWH = 1_000_000
"""Integer energy units per kWh used for exact coalition values (1 unit = 1 mWh)."""

CENT = Decimal("0.01")
"""Money quantum [currency]."""

COLUMNS = (
    "member_id",
    "rule",
    "shared_kwh",
    "amount",
    "consumption_kwh",
    "import_kwh",
    "export_kwh",
    "standalone_cost",
    "community_cost",
    "explanation",
)
"""Columns of the frame returned by :func:`allocate`, in order."""

_MAX_INT_ENERGY = 2**58
"""Bound on integer energy totals, keeping coalition values and marginals inside int64."""

_SPLIT_BITS = 26
"""Marginals are split in high/low parts of this many bits so float64 bin sums stay exact."""


class AllocationError(ValueError):
    """Allocation inputs or parameters are invalid; the message names the field."""


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _float_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise AllocationError(f"{name}: not a numeric array ({exc})") from exc
    if not np.all(np.isfinite(arr)):
        raise AllocationError(f"{name}: contains NaN or infinite values")
    return arr


@dataclass(frozen=True, eq=False)
class AllocationInputs:
    """One day of a community, ready to be allocated.

    Parameters
    ----------
    players : tuple of str
        Member ids plus the community owner id (shared assets); ``P`` unique, non-empty ids.
    consumption_kwh : ndarray, shape (P, T)
        Metered consumption per interval [kWh]; 0 for the community player.
    import_kwh : ndarray, shape (P, T)
        Grid withdrawal after batteries [kWh].
    export_kwh : ndarray, shape (P, T)
        Grid injection after batteries [kWh].
    standalone_cost : ndarray, shape (P,)
        Grid cost of the player acting alone [currency].
    community_cost : ndarray, shape (P,)
        Grid cost of the player with the community plan [currency].
    incentive_per_kwh : float
        Incentive paid on shared energy [currency/kWh], non-negative.
    currency : str
        Currency code used in explanations, e.g. ``"EUR"``.

    Raises
    ------
    AllocationError
        On a wrong shape, a non-finite value, a negative energy or incentive, or duplicate or
        empty player ids; the message starts with the field name.

    Notes
    -----
    Arrays are copied to float64 and made read-only. Equality is identity (``eq=False``):
    element-wise array comparison has no single truth value.
    """

    players: tuple[str, ...]
    consumption_kwh: np.ndarray
    import_kwh: np.ndarray
    export_kwh: np.ndarray
    standalone_cost: np.ndarray
    community_cost: np.ndarray
    incentive_per_kwh: float
    currency: str = "EUR"
    alone_import_kwh: np.ndarray | None = None
    alone_export_kwh: np.ndarray | None = None
    loss_sharing: str = "pro_rata_consumption"

    def __post_init__(self) -> None:
        players = self.players
        if isinstance(players, str) or not isinstance(players, Sequence):
            raise AllocationError("players: expected a sequence of player ids")
        players = tuple(players)
        if not players:
            raise AllocationError("players: at least one player is required")
        for p in players:
            if not isinstance(p, str) or not p:
                raise AllocationError(f"players: ids must be non-empty strings, got {p!r}")
        if len(set(players)) != len(players):
            dups = sorted({p for p in players if players.count(p) > 1})
            raise AllocationError(f"players: duplicate ids {dups}")
        object.__setattr__(self, "players", players)
        n_players = len(players)

        n_intervals: int | None = None
        for name in ("consumption_kwh", "import_kwh", "export_kwh"):
            arr = _float_array(getattr(self, name), name)
            if arr.ndim != 2 or arr.shape[0] != n_players or arr.shape[1] < 1:
                raise AllocationError(
                    f"{name}: expected shape (P, T) = ({n_players}, T>=1), got {arr.shape}"
                )
            if n_intervals is None:
                n_intervals = arr.shape[1]
            elif arr.shape[1] != n_intervals:
                raise AllocationError(
                    f"{name}: {arr.shape[1]} intervals, but consumption_kwh has {n_intervals}"
                )
            if np.any(arr < 0):
                raise AllocationError(f"{name}: energies must be non-negative")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

        for name in ("alone_import_kwh", "alone_export_kwh"):
            value = getattr(self, name)
            arr = (
                np.zeros((n_players, n_intervals or 1))
                if value is None
                else _float_array(value, name)
            )
            if arr.shape != (n_players, n_intervals):
                raise AllocationError(
                    f"{name}: expected shape ({n_players}, {n_intervals}), got {arr.shape}"
                )
            if np.any(arr < 0):
                raise AllocationError(f"{name}: energies must be non-negative")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if self.loss_sharing not in LOSS_SHARING:
            raise AllocationError(
                f"loss_sharing: unknown {self.loss_sharing!r}; known: {list(LOSS_SHARING)}"
            )

        for name in ("standalone_cost", "community_cost"):
            raw = np.asarray(getattr(self, name), dtype=float)
            if raw.shape == (n_players,) and not np.all(np.isfinite(raw)):
                who = [players[i] for i in np.flatnonzero(~np.isfinite(raw))]
                raise AllocationError(f"{name}: not finite for {', '.join(who)}")
            arr = _float_array(getattr(self, name), name)
            if arr.shape != (n_players,):
                raise AllocationError(f"{name}: expected shape ({n_players},), got {arr.shape}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

        try:
            incentive = float(self.incentive_per_kwh)
        except (TypeError, ValueError) as exc:
            raise AllocationError(f"incentive_per_kwh: not a number ({exc})") from exc
        if not math.isfinite(incentive) or incentive < 0:
            raise AllocationError(
                f"incentive_per_kwh: must be finite and non-negative, got {incentive}"
            )
        object.__setattr__(self, "incentive_per_kwh", incentive)
        if not isinstance(self.currency, str) or not self.currency.strip():
            raise AllocationError(f"currency: expected a currency code, got {self.currency!r}")


# --------------------------------------------------------------------------------------------
# Exact-number helpers
# --------------------------------------------------------------------------------------------


def _as_fraction(value: Any, name: str = "value") -> Fraction:
    """Exact rational of a number; floats are read as the shortest decimal that prints them."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise AllocationError(f"{name}: not finite ({value})")
        return Fraction(value)
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return Fraction(int(value))
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise AllocationError(f"{name}: not a number ({value!r})") from exc
    if not math.isfinite(f):
        raise AllocationError(f"{name}: not finite ({f})")
    return Fraction(Decimal(repr(f)))


def _round_half_even(value: Fraction, quantum: Fraction) -> Fraction:
    return round(value / quantum) * quantum  # Fraction.__round__ is round-half-even


def _to_decimal(value: Fraction, quantum: Decimal) -> Decimal:
    """Decimal of ``value``, which must be a whole multiple of ``quantum``."""
    units = value / Fraction(quantum)
    if units.denominator != 1:
        raise AllocationError(f"internal: {value} is not a multiple of {quantum}")
    with localcontext() as ctx:
        ctx.prec = max(28, len(str(abs(units.numerator))) + 10)
        return (Decimal(units.numerator) * quantum).quantize(quantum)


def _energy_pair(import_kwh: Any, export_kwh: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate an import/export pair; integer arrays stay int64, anything else is float64."""
    imp = np.asarray(import_kwh)
    exp = np.asarray(export_kwh)
    if imp.ndim != 2:
        raise AllocationError(f"import_kwh: expected shape (P, T), got {imp.shape}")
    if exp.shape != imp.shape:
        raise AllocationError(f"export_kwh: shape {exp.shape} differs from import {imp.shape}")
    if np.issubdtype(imp.dtype, np.integer) and np.issubdtype(exp.dtype, np.integer):
        imp, exp = imp.astype(np.int64), exp.astype(np.int64)
        if imp.size:
            bound = (int(np.abs(imp).max()) + int(np.abs(exp).max())) * imp.size
            if bound >= _MAX_INT_ENERGY:
                raise AllocationError("import_kwh: integer energies too large for exact sums")
    else:
        for name, arr in (("import_kwh", imp), ("export_kwh", exp)):
            if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
                raise AllocationError(f"{name}: expected finite numbers")
        imp, exp = imp.astype(float), exp.astype(float)
    if np.any(imp < 0) or np.any(exp < 0):
        raise AllocationError("import_kwh/export_kwh: energies must be non-negative")
    return imp, exp


def _energy_units(kwh: np.ndarray) -> np.ndarray:
    """Energies [kWh] to integer units of 1/ENERGY_UNITS_PER_KWH kWh (round half to even)."""
    scaled = np.rint(np.asarray(kwh, dtype=float) * ENERGY_UNITS_PER_KWH)
    if scaled.size and float(np.abs(scaled).sum()) >= _MAX_INT_ENERGY:
        raise AllocationError("import_kwh/export_kwh: energies too large for exact allocation")
    return scaled.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Shared energy and the coalition game
# --------------------------------------------------------------------------------------------


def hourly_shared_kwh(import_kwh: np.ndarray, export_kwh: np.ndarray) -> np.ndarray:
    """Energy shared inside the community in each interval.

    Parameters
    ----------
    import_kwh, export_kwh : ndarray, shape (P, T)
        Grid withdrawal and injection per player and interval [kWh].

    Returns
    -------
    ndarray, shape (T,)
        ``min(Σ_p export_p,t, Σ_p import_p,t)`` [kWh]; int64 if both inputs are integer.
    """
    imp, exp = _energy_pair(import_kwh, export_kwh)
    return np.minimum(exp.sum(axis=0), imp.sum(axis=0))


def incentive_periods(ts: Sequence[Any], tz: str, period_minutes: int = 60) -> np.ndarray:
    """Index of the incentive period (default: the local clock hour) of each interval.

    The Italian incentive is paid on hourly shared energy, the minimum of the community's
    hourly injection and withdrawal: with quarter-hour meters that is the minimum of the
    hours' sums, not the sum of the quarter-hours' minima (which is lower whenever one member
    injects early in an hour and another withdraws later in it).

    Parameters
    ----------
    ts : sequence of Timestamp
        Interval starts (tz-aware), in order.
    tz : str
        Community time zone (hours are local clock hours; on a 25-hour day the repeated hour
        is two periods).
    period_minutes : int
        Period length [min], a multiple of the interval.

    Returns
    -------
    ndarray of int, shape (T,)
        Period number per interval, 0, 1, ... in order.
    """
    idx = pd.DatetimeIndex(ts)
    local = idx.tz_convert(tz) if idx.tz is not None else idx.tz_localize("UTC").tz_convert(tz)
    starts = local.floor(f"{period_minutes}min", ambiguous=local.map(lambda t: bool(t.dst())))
    _, codes = np.unique(starts.asi8, return_inverse=True)
    return codes.astype(int)


def per_period(x: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Sum the intervals of ``x`` (P, T) into incentive periods (P, n_periods) [kWh]."""
    x = np.asarray(x, dtype=float)
    out = np.zeros((x.shape[0], int(periods.max()) + 1 if periods.size else 0))
    np.add.at(out.T, periods, x.T)
    return out


def pro_rata_shared_kwh(import_kwh: np.ndarray, export_kwh: np.ndarray) -> np.ndarray:
    """Hourly shared energy keyed to players by their grid withdrawal.

    Parameters
    ----------
    import_kwh, export_kwh : ndarray, shape (P, T)
        Grid withdrawal and injection per player and interval [kWh].

    Returns
    -------
    ndarray, shape (P, T)
        ``shared_t × import_p,t / Σ_p import_p,t`` [kWh], 0 where nobody withdraws. The ratio
        ``shared_t / Σ_p import_p,t`` is clipped to 1, so each entry is ≤ the player's own
        withdrawal exactly (in floating point too); row sums equal ``shared_t`` up to rounding.
    """
    imp, exp = _energy_pair(import_kwh, export_kwh)
    imp, exp = imp.astype(float), exp.astype(float)
    shared = np.minimum(exp.sum(axis=0), imp.sum(axis=0))
    total = imp.sum(axis=0)
    ratio = np.divide(shared, total, out=np.zeros_like(shared), where=total > 0)
    return imp * np.minimum(ratio, 1.0)


def _subset_sums(x: np.ndarray) -> np.ndarray:
    """Row sums of ``x`` (k, T) over all 2^k subsets, index = bitmask (bit j = row j)."""
    k, n_t = x.shape
    out = np.zeros((1 << k, n_t), dtype=x.dtype)
    for j in range(k):
        out[1 << j : 2 << j] = out[: 1 << j] + x[j]
    return out


def coalition_values(
    import_kwh: np.ndarray, export_kwh: np.ndarray, *, max_chunk_elements: int = 2**20
) -> np.ndarray:
    """Shared energy of every coalition of players.

    Parameters
    ----------
    import_kwh, export_kwh : ndarray, shape (P, T)
        Grid withdrawal and injection per player and interval [kWh]; ``P`` ≤ 20.
    max_chunk_elements : int
        Bound on the size of the (coalitions × intervals) blocks evaluated at once; peak
        working memory is a few times ``8 × max_chunk_elements`` bytes plus the result.

    Returns
    -------
    ndarray, shape (2^P,)
        ``v(S) = Σ_t min(Σ_{p∈S} export_p,t, Σ_{p∈S} import_p,t)`` [kWh], indexed by bitmask
        (bit ``i`` set ⇔ player ``i`` ∈ S); ``v(∅) = 0``. Integer inputs give exact int64
        values (in the inputs' units), otherwise float64.

    Raises
    ------
    AllocationError
        On bad shapes, negative or non-finite energies, or ``P`` > 20.

    Notes
    -----
    Players are split into ``low`` and ``high`` groups. Subset sums of the low group are
    tabulated once (2^low × T); each high-group subset then yields the values of a contiguous
    block of 2^low coalitions with one vectorised ``minimum(...).sum(axis=1)``.
    """
    imp, exp = _energy_pair(import_kwh, export_kwh)
    n_players, n_t = imp.shape
    if n_players > MAX_EXACT_PLAYERS:
        raise AllocationError(
            f"import_kwh: {n_players} players means 2^{n_players} coalitions; "
            f"exact enumeration is limited to {MAX_EXACT_PLAYERS} players"
        )
    per_block = max(1, int(max_chunk_elements) // max(n_t, 1))
    low = min(n_players, per_block.bit_length() - 1)
    high = n_players - low
    e_low = _subset_sums(exp[:low])
    i_low = _subset_sums(imp[:low])
    out = np.empty(1 << n_players, dtype=imp.dtype)
    block = 1 << low
    for h in range(1 << high):
        members = low + np.flatnonzero((h >> np.arange(high)) & 1)
        e_h = exp[members].sum(axis=0)
        i_h = imp[members].sum(axis=0)
        out[h * block : (h + 1) * block] = np.minimum(e_low + e_h, i_low + i_h).sum(axis=1)
    return out


# --------------------------------------------------------------------------------------------
# Shapley values
# --------------------------------------------------------------------------------------------


def _check_game(values: Any, n: int) -> np.ndarray:
    if n > MAX_EXACT_PLAYERS:
        raise AllocationError(
            f"n: exact Shapley needs all 2^n coalitions; n={n} > {MAX_EXACT_PLAYERS} "
            "(sampling is not implemented)"
        )
    if n < 0:
        raise AllocationError(f"n: must be non-negative, got {n}")
    v = np.asarray(values)
    if v.shape != (1 << n,):
        raise AllocationError(f"values: expected shape ({1 << n},) for n={n}, got {v.shape}")
    return v


def _marginals_by_size(v: np.ndarray, sizes: np.ndarray, n: int, i: int) -> tuple:
    """Marginal contributions of player ``i`` to every S∌i, and |S| for each."""
    shape = (1 << (n - 1 - i), 2, 1 << i)
    r = v.reshape(shape)
    return (r[:, 1, :] - r[:, 0, :]).ravel(), sizes.reshape(shape)[:, 0, :].ravel()


def _popcounts(n: int) -> np.ndarray:
    return np.bitwise_count(np.arange(1 << n, dtype=np.uint32))


def shapley_fractions(values: np.ndarray, n: int) -> list[Fraction]:
    """Exact Shapley values of an integer-valued game.

    Parameters
    ----------
    values : ndarray of int, shape (2^n,)
        ``v(S)`` indexed by bitmask [any unit], ``|v|`` < 2^59.
    n : int
        Number of players, ≤ 20.

    Returns
    -------
    list of Fraction
        ``φ_i`` [unit of ``values``], exact; ``Σ φ_i = v(N) − v(∅)``.

    Raises
    ------
    AllocationError
        If ``n`` > 20, the shape is wrong, values are not integers or too large.
    """
    v = _check_game(values, n)
    if not np.issubdtype(v.dtype, np.integer):
        raise AllocationError(f"values: exact Shapley needs integer values, got {v.dtype}")
    v = v.astype(np.int64)
    if n == 0:
        return []
    if int(np.abs(v).max()) >= 2**59:
        raise AllocationError("values: too large for exact Shapley (|v| must be < 2^59)")
    sizes = _popcounts(n)
    # φ_i = Σ_k D_k(i) / (n·C(n−1, k)) with D_k(i) the sum of marginals over |S| = k, S∌i.
    denominators = [n * math.comb(n - 1, k) for k in range(n)]
    common = math.lcm(*denominators)
    factors = [common // d for d in denominators]
    mask = (1 << _SPLIT_BITS) - 1
    phi: list[Fraction] = []
    for i in range(n):
        d, s = _marginals_by_size(v, sizes, n, i)
        # float64 bin sums are exact: |hi| < 2^34 and |lo| < 2^26 over ≤ 2^19 terms.
        hi = np.bincount(s, weights=(d >> _SPLIT_BITS).astype(float), minlength=n)
        lo = np.bincount(s, weights=(d & mask).astype(float), minlength=n)
        total = sum(((int(hi[k]) << _SPLIT_BITS) + int(lo[k])) * factors[k] for k in range(n))
        phi.append(Fraction(total, common))
    return phi


def shapley_exact(values: np.ndarray, n: int) -> np.ndarray:
    """Exact Shapley values from all 2^n coalition values.

    Parameters
    ----------
    values : ndarray, shape (2^n,)
        ``v(S)`` indexed by bitmask, bit ``i`` = player ``i`` [any unit].
    n : int
        Number of players, ≤ 20.

    Returns
    -------
    ndarray, shape (n,)
        ``φ_i = Σ_{S∌i} |S|!(n−|S|−1)!/n! · (v(S∪i) − v(S))`` [unit of ``values``]. Integer
        games are solved exactly (see :func:`shapley_fractions`) and then converted to float.

    Raises
    ------
    AllocationError
        If ``n`` > 20 (exact needs 2^n values; sampling comes later) or the shape is wrong.

    Notes
    -----
    For each player the 2^(n−1) marginals come from a reshape of ``values`` to
    ``(2^(n−1−i), 2, 2^i)``; they are summed per coalition size with ``bincount`` and weighted
    by ``1 / (n·C(n−1, |S|))``, which equals the factorial weight.
    """
    v = _check_game(values, n)
    if np.issubdtype(v.dtype, np.integer):
        return np.array([float(f) for f in shapley_fractions(v, n)], dtype=float)
    try:
        v = v.astype(float)
    except (TypeError, ValueError) as exc:
        raise AllocationError(f"values: not numeric ({exc})") from exc
    if not np.all(np.isfinite(v)):
        raise AllocationError("values: contains NaN or infinite values")
    if n == 0:
        return np.zeros(0)
    sizes = _popcounts(n)
    weights = np.array([1.0 / (n * math.comb(n - 1, k)) for k in range(n)])
    phi = np.empty(n)
    for i in range(n):
        d, s = _marginals_by_size(v, sizes, n, i)
        phi[i] = np.bincount(s, weights=d, minlength=n) @ weights
    return phi


# --------------------------------------------------------------------------------------------
# Rounding
# --------------------------------------------------------------------------------------------


def largest_remainder(
    values: Sequence[float | Decimal],
    total: Decimal,
    quantum: Decimal = CENT,
    keys: Sequence[str] | None = None,
) -> list[Decimal]:
    """Round shares to the quantum so that they sum exactly to ``total``.

    Parameters
    ----------
    values : sequence of float or Decimal
        Exact shares [currency]; floats are read as the decimal they print as. Negative
        shares are allowed. (Fractions and ints are accepted too.)
    total : Decimal
        Amount to distribute [currency], a whole multiple of ``quantum``: normally the sum of
        ``values`` rounded half-to-even to the quantum.
    quantum : Decimal
        Rounding step [currency], positive.
    keys : sequence of str, optional
        Tie-break keys (player ids), one per value; default: the positions.

    Returns
    -------
    list of Decimal
        Multiples of ``quantum`` (with its exponent) summing exactly to ``total``.

    Raises
    ------
    AllocationError
        If ``total`` is not a multiple of ``quantum``, ``|Σ values − total| ≥ n·quantum``, a
        value is not finite, or ``keys`` has the wrong length.

    Notes
    -----
    Each value is floored to the quantum (towards −∞, so negatives work); the ``K`` quanta
    still missing go one each to the largest fractional remainders, ties broken by key
    ascending, then position. All arithmetic is exact (fractions), so equal shares have
    exactly equal remainders and the outcome does not depend on the order of the inputs when
    keys are unique. When ``total`` is the rounded sum, ``0 ≤ K ≤ n`` and every result is
    strictly within one quantum of its value; a value that already is a multiple of the
    quantum is returned unchanged. Otherwise (allowed while ``|Σ − total| < n·quantum``)
    ``K`` is spread as ``divmod(K, n)``: everyone moves by ``K // n`` quanta first.
    """
    q = _as_fraction(quantum, "quantum")
    if q <= 0:
        raise AllocationError(f"quantum: must be positive, got {quantum}")
    t = _as_fraction(total, "total")
    t_units = t / q
    if t_units.denominator != 1:
        raise AllocationError(f"total: {total} is not a multiple of the quantum {quantum}")
    exact = [_as_fraction(v, f"values[{j}]") for j, v in enumerate(values)]
    n = len(exact)
    if keys is not None and len(keys) != n:
        raise AllocationError(f"keys: {len(keys)} keys for {n} values")
    quantum_dec = quantum if isinstance(quantum, Decimal) else Decimal(repr(float(quantum)))
    if n == 0:
        if t != 0:
            raise AllocationError(f"total: {total} cannot be distributed over no values")
        return []
    if abs(sum(exact) - t) >= n * q:
        raise AllocationError(
            f"total: {total} is {float(abs(sum(exact) - t)):.6g} away from the sum of the "
            f"values; at most {n} quanta of rounding can be absorbed"
        )
    scaled = [v / q for v in exact]
    floors = [math.floor(s) for s in scaled]
    remainders = [s - f for s, f in zip(scaled, floors, strict=True)]
    missing = int(t_units) - sum(floors)
    every, extra = divmod(missing, n)
    tie_keys: Sequence[Any] = keys if keys is not None else range(n)
    ranking = sorted(range(n), key=lambda j: (-remainders[j], tie_keys[j], j))
    bonus = [every] * n
    for j in ranking[:extra]:
        bonus[j] += 1
    return [
        _to_decimal(Fraction(f + b) * q, quantum_dec) for f, b in zip(floors, bonus, strict=True)
    ]


# --------------------------------------------------------------------------------------------
# Benefit and allocation
# --------------------------------------------------------------------------------------------


def _savings(inputs: AllocationInputs) -> list[Fraction]:
    return [
        _as_fraction(s, "standalone_cost") - _as_fraction(c, "community_cost")
        for s, c in zip(inputs.standalone_cost, inputs.community_cost, strict=True)
    ]


def _exact_benefit(inputs: AllocationInputs, shared_units: int) -> Fraction:
    incentive = _as_fraction(inputs.incentive_per_kwh, "incentive_per_kwh")
    return incentive * Fraction(shared_units, ENERGY_UNITS_PER_KWH) + sum(
        _savings(inputs), Fraction(0)
    )


def _shared_units_total(inputs: AllocationInputs) -> int:
    imp_u = _energy_units(inputs.import_kwh)
    exp_u = _energy_units(inputs.export_kwh)
    return int(np.minimum(exp_u.sum(axis=0), imp_u.sum(axis=0)).sum())


def community_benefit(inputs: AllocationInputs) -> Decimal:
    """Total benefit of the community for the day, to the cent.

    Parameters
    ----------
    inputs : AllocationInputs
        The day's data.

    Returns
    -------
    Decimal
        ``incentive × Σ_t hourly_shared_t + Σ_p (standalone_p − community_p)`` [currency],
        rounded half-to-even to 0.01, computed exactly (energies at 1 mWh resolution).
    """
    exact = _exact_benefit(inputs, _shared_units_total(inputs))
    return _to_decimal(_round_half_even(exact, Fraction(CENT)), CENT)


def _fmt_rate(value: Fraction) -> str:
    dec = Decimal(value.numerator) / Decimal(value.denominator)
    return f"{dec:.2f}" if dec == dec.quantize(CENT) else f"{dec.normalize():f}"


def _pro_rata(
    inputs: AllocationInputs, benefit: Decimal
) -> tuple[list[Fraction], np.ndarray, list[str]]:
    daily = [math.fsum(row) for row in inputs.consumption_kwh]
    cons = [_as_fraction(c, "consumption_kwh") for c in daily]
    total_cons = sum(cons, Fraction(0))
    if total_cons == 0:
        raise AllocationError(
            "consumption_kwh: the community consumed nothing; pro_rata_consumption is undefined"
        )
    b = Fraction(benefit)
    amounts = [b * c / total_cons for c in cons]
    shared = pro_rata_shared_kwh(inputs.import_kwh, inputs.export_kwh).sum(axis=1)
    cur = inputs.currency
    texts = [
        f"pro rata: {float(c / total_cons):.1%} of the community's consumption "
        f"({float(c):.1f} of {float(total_cons):.1f} kWh) × benefit {benefit} {cur}"
        for c in cons
    ]
    return amounts, shared, texts


def _shapley(
    inputs: AllocationInputs, benefit: Decimal
) -> tuple[list[float], np.ndarray, list[str], dict[str, Any]]:
    """The settlement game's Shapley value, made individually rational (see
    :mod:`optimisation.game`)."""
    from optimisation.game import (
        SettlementGame,
        core_check,
        project_individually_rational,
        shapley_values,
    )

    n = len(inputs.players)
    savings = [float(x) for x in _savings(inputs)]
    game = SettlementGame(
        savings=np.array(savings),
        incentive_per_kwh=inputs.incentive_per_kwh,
        ecm_import=inputs.import_kwh,
        ecm_export=inputs.export_kwh,
        alone_import=inputs.alone_import_kwh,
        alone_export=inputs.alone_export_kwh,
        benefit=float(benefit),
    )
    phi, se, method = shapley_values(game)
    b = float(benefit)
    cur = inputs.currency
    if b >= 0:
        x = project_individually_rational(phi, b)
        how = "no player below acting alone"
    elif inputs.loss_sharing == "equal":
        x = np.full(n, b / n)
        how = "the day's loss shared equally (approved loss_sharing)"
    else:
        cons = inputs.consumption_kwh.sum(axis=1)
        losses = np.maximum(-np.array(savings), 0.0)
        # shares first, then the loss: b * cons underflows for subnormal consumption
        if cons.sum() > 0:
            x = b * (cons / cons.sum())
        elif losses.sum() > 0:  # nobody consumed: those who lost carry the loss
            x = b * (losses / losses.sum())
        else:
            x = np.full(n, b / n)
        how = "the day's loss shared pro rata to consumption (approved loss_sharing)"
    core = core_check(game, x)
    if n <= MAX_EXACT_PLAYERS:
        shared_units = coalition_values(
            _energy_units(inputs.import_kwh), _energy_units(inputs.export_kwh)
        )
        shared = np.array([float(f) for f in shapley_fractions(shared_units, n)]) / (
            ENERGY_UNITS_PER_KWH
        )
    else:
        shared = pro_rata_shared_kwh(inputs.import_kwh, inputs.export_kwh).sum(axis=1)
    texts = []
    for p in range(n):
        err = f" ± {se[p]:.2f}" if se is not None else ""
        adj = x[p] - phi[p]
        label = f"{method}, {1 << n:,} coalitions" if se is None else method
        texts.append(
            f"Shapley value of the community game ({label}) "
            f"{phi[p]:.2f}{err} {cur} (own saving vs acting alone {savings[p]:.2f}, "
            f"{shared[p]:.2f} kWh shared)"
            + (f", {adj:+.2f} so that {how}" if abs(adj) >= 0.005 else "")
        )
    info = {
        "method": method,
        "in_core": core.in_core,
        "core_max_violation": core.max_violation,
        "core_method": core.method,
        "max_se": float(se.max()) if se is not None else 0.0,
    }
    # round away float noise (1e-9 currency) so that equal players tie exactly in the
    # largest-remainder rounding, whose tie-break is then by player id
    return [float(v) for v in np.round(x, 9)], shared, texts, info


def allocate(inputs: AllocationInputs, rules: Sequence[str] = RULES) -> pd.DataFrame:
    """Allocate the community benefit to the players under each rule.

    Parameters
    ----------
    inputs : AllocationInputs
        The day's data.
    rules : sequence of str
        Rules from :data:`RULES`, each at most once; a single string is one rule.

    Returns
    -------
    DataFrame
        One row per (rule, player), rules in the given order, players in input order, with
        columns :data:`COLUMNS`: ``shared_kwh`` [kWh] allocated shared energy, ``amount``
        [currency] Decimal with 2 places, daily ``consumption_kwh``, ``import_kwh`` and
        ``export_kwh`` [kWh], ``standalone_cost`` and ``community_cost`` [currency], and an
        ``explanation`` sentence. For every rule the amounts sum exactly to
        :func:`community_benefit`.

    Raises
    ------
    AllocationError
        Unknown or repeated rule, zero total consumption for ``pro_rata_consumption``, more
        than 20 players for ``shapley``.
    """
    if isinstance(rules, str):
        rules = (rules,)
    rules = tuple(rules)
    if not rules:
        raise AllocationError("rules: at least one rule is required")
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise AllocationError(f"rules: unknown {unknown}; known rules are {list(RULES)}")
    if len(set(rules)) != len(rules):
        raise AllocationError(f"rules: repeated rule in {list(rules)}")

    benefit = community_benefit(inputs)
    players = inputs.players
    daily_cons = [math.fsum(r) for r in inputs.consumption_kwh]
    daily_imp = [math.fsum(r) for r in inputs.import_kwh]
    daily_exp = [math.fsum(r) for r in inputs.export_kwh]
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    for rule in rules:
        if rule == "pro_rata_consumption":
            amounts, shared, texts = _pro_rata(inputs, benefit)
        else:
            amounts, shared, texts, info = _shapley(inputs, benefit)
        rounded = largest_remainder(amounts, benefit, CENT, keys=players)
        for p, player in enumerate(players):
            rows.append(
                {
                    "member_id": player,
                    "rule": rule,
                    "shared_kwh": float(shared[p]),
                    "amount": rounded[p],
                    "consumption_kwh": daily_cons[p],
                    "import_kwh": daily_imp[p],
                    "export_kwh": daily_exp[p],
                    "standalone_cost": float(inputs.standalone_cost[p]),
                    "community_cost": float(inputs.community_cost[p]),
                    "explanation": f"{texts[p]} = {rounded[p]} {inputs.currency}",
                }
            )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["amount"] = frame["amount"].astype(object)
    frame.attrs["game"] = info
    return frame


# --------------------------------------------------------------------------------------------
# Fairness metrics
# --------------------------------------------------------------------------------------------


def gini(values: Sequence[float | Decimal] | np.ndarray) -> float:
    """Gini coefficient of a spread, e.g. benefit per kWh consumed across players.

    Parameters
    ----------
    values : sequence of float or Decimal
        One value per player [any unit, e.g. currency/kWh].

    Returns
    -------
    float
        ``Σ_i Σ_j |x_i − x_j| / (2 n² mean)`` [-]: 0 when all are equal, up to ``(n−1)/n``
        for non-negative values (it can exceed 1 when some values are negative).

    Raises
    ------
    AllocationError
        Empty input, non-finite values, or a non-positive mean with unequal values.
    """
    try:
        x = np.asarray([float(v) for v in np.asarray(values, dtype=object).ravel()])
    except (TypeError, ValueError) as exc:
        raise AllocationError(f"values: not numeric ({exc})") from exc
    if x.size == 0:
        raise AllocationError("values: the Gini coefficient of nothing is undefined")
    if not np.all(np.isfinite(x)):
        raise AllocationError("values: contains NaN or infinite values")
    if np.all(x == x[0]):
        return 0.0
    mean = x.mean()
    if mean <= 0:
        raise AllocationError(f"values: Gini needs a positive mean, got {mean:.6g}")
    xs = np.sort(x)
    n = x.size
    rank = np.arange(1, n + 1)
    return float(np.sum((2 * rank - n - 1) * xs) / (n * n * mean))


def individually_rational(df: pd.DataFrame, rule: str) -> list[str]:
    """Players that a rule leaves worse off than acting alone.

    Parameters
    ----------
    df : DataFrame
        Output of :func:`allocate`.
    rule : str
        One of the rules present in ``df``.

    Returns
    -------
    list of str
        Member ids whose ``amount`` [currency] is negative, in frame order; empty when the
        allocation is individually rational.

    Raises
    ------
    AllocationError
        If ``rule`` has no rows in ``df``.
    """
    rows = df[df["rule"] == rule]
    if rows.empty:
        raise AllocationError(f"rule: no rows for {rule!r}; present: {sorted(set(df['rule']))}")
    return [str(m) for m, a in zip(rows["member_id"], rows["amount"], strict=True) if a < 0]
