"""Regulatory distribution keys, beside the fair rules (see docs/regulatory_keys.md).

- **Italy (ARERA TIAD 727/2022)**: the incentive is paid on hourly shared energy
  ``min(Σ injection, Σ withdrawal)``; the community's statute splits it between consumers,
  producers and the community fund. :func:`it_tiad_split` splits each hour's incentive by the
  statute's shares, within consumers in proportion to their withdrawal in that hour and
  within producers to their injection in that hour.
- **Austria (EEG, ElWOG §16a ff.)**: per quarter-hour, the community's generation is
  allocated to participants by a static key (fixed shares) or a dynamic key (in proportion to
  consumption), each capped at the participant's consumption; what is not allocated is surplus
  fed to the grid (:func:`at_allocate`).
- **Spain (RD 244/2019, Orden TED/1247/2021)**: distribution coefficients per supply point
  (CUPS), fixed or one per hour, summing to 1 in every hour; each point is allocated
  ``β_i,h × generation_h`` (:func:`es_allocate`); :func:`es_coefficient_file` writes the
  coefficient file the distributor receives.

Energies are [kWh] per interval, money [currency] as Decimal rounded by largest remainder.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

from optimisation.allocation import CENT, AllocationError, largest_remainder


def _energies(name: str, x: object, shape: tuple[int, ...] | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if shape is not None and a.shape != shape:
        raise AllocationError(f"{name}: expected shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise AllocationError(f"{name}: energies must be finite and non-negative")
    return a


def it_tiad_split(
    players: Sequence[str],
    import_kwh: np.ndarray,
    export_kwh: np.ndarray,
    rate_per_kwh: float,
    shares: Mapping[str, float],
    community_id: str,
) -> pd.DataFrame:
    """Split the TIAD incentive hour by hour between consumers, producers and the community.

    Parameters
    ----------
    players : sequence of str
        Player ids (``P``), the community fund among them (``community_id``).
    import_kwh, export_kwh : ndarray, shape (P, T)
        Hourly withdrawal and injection [kWh].
    rate_per_kwh : float
        Incentive rate [currency/kWh].
    shares : mapping
        ``consumers``, ``producers``, ``community`` fractions of the incentive, summing to 1.
    community_id : str
        The player who receives the community's share.

    Returns
    -------
    DataFrame
        ``member_id, as_consumer, as_producer, as_community`` [currency, float] and ``amount``
        (Decimal, cents), summing exactly to the incentive rounded to the cent.

    Raises
    ------
    AllocationError
        Unknown or missing share, shares not summing to 1, bad shapes or energies.
    """
    p = len(players)
    imp = _energies("import_kwh", import_kwh)
    exp = _energies("export_kwh", export_kwh, imp.shape)
    if imp.ndim != 2 or imp.shape[0] != p:
        raise AllocationError(f"import_kwh: expected shape ({p}, T), got {imp.shape}")
    keys = {"consumers", "producers", "community"}
    if set(shares) != keys:
        raise AllocationError(f"shares: need exactly {sorted(keys)}, got {sorted(shares)}")
    if any(v < 0 for v in shares.values()) or abs(sum(shares.values()) - 1) > 1e-9:
        raise AllocationError(f"shares: must be non-negative and sum to 1, got {dict(shares)}")
    if community_id not in players:
        raise AllocationError(f"community_id: {community_id!r} is not a player")
    ti, te = imp.sum(axis=0), exp.sum(axis=0)
    incentive_h = rate_per_kwh * np.minimum(ti, te)
    with np.errstate(invalid="ignore", divide="ignore"):
        cons = np.where(ti > 0, imp / ti, 0.0) @ incentive_h * shares["consumers"]
        prod = np.where(te > 0, exp / te, 0.0) @ incentive_h * shares["producers"]
    comm = np.zeros(p)
    comm[list(players).index(community_id)] = incentive_h.sum() * shares["community"]
    exact = cons + prod + comm
    total = Decimal(str(round(float(incentive_h.sum()), 2))).quantize(CENT)
    amounts = largest_remainder(list(exact), total, CENT, keys=list(players))
    return pd.DataFrame(
        {
            "member_id": list(players),
            "as_consumer": cons,
            "as_producer": prod,
            "as_community": comm,
            "amount": amounts,
        }
    )


def at_allocate(
    consumption_kwh: np.ndarray,
    generation_kwh: np.ndarray,
    *,
    key: str,
    static_shares: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Austrian allocation of community generation per quarter-hour.

    Parameters
    ----------
    consumption_kwh : ndarray, shape (P, T)
        Each participant's consumption per interval [kWh].
    generation_kwh : ndarray, shape (T,)
        The community's generation fed in per interval [kWh].
    key : str
        ``static`` (fixed shares) or ``dynamic`` (in proportion to consumption).
    static_shares : sequence of float, optional
        The static key's shares per participant (non-negative, summing to at most 1).

    Returns
    -------
    allocated : ndarray, shape (P, T)
        Energy allocated to each participant, never above its consumption [kWh].
    surplus : ndarray, shape (T,)
        Generation not allocated (fed to the grid) [kWh].
    """
    c = _energies("consumption_kwh", consumption_kwh)
    if c.ndim != 2:
        raise AllocationError(f"consumption_kwh: expected shape (P, T), got {c.shape}")
    g = _energies("generation_kwh", generation_kwh, (c.shape[1],))
    if key == "static":
        s = np.asarray(static_shares if static_shares is not None else [], dtype=float)
        if s.shape != (c.shape[0],) or np.any(s < 0) or s.sum() > 1 + 1e-9:
            raise AllocationError(
                "static_shares: one non-negative share per participant, summing to at most 1"
            )
        allocated = np.minimum(s[:, None] * g[None, :], c)
    elif key == "dynamic":
        total = c.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(total > 0, c / total, 0.0)
        allocated = np.minimum(frac * g[None, :], c)
    else:
        raise AllocationError(f"key: {key!r} is not static or dynamic")
    return allocated, g - allocated.sum(axis=0)


def es_allocate(coefficients: np.ndarray, generation_kwh: np.ndarray) -> np.ndarray:
    """Spanish collective self-consumption: ``β_i,h × generation_h`` per supply point.

    Parameters
    ----------
    coefficients : ndarray, shape (P,) or (P, H)
        Fixed coefficients, or one per hour; every hour's coefficients sum to 1.
    generation_kwh : ndarray, shape (H,)
        Generation per hour [kWh].

    Returns
    -------
    ndarray, shape (P, H)
        Energy allocated to each supply point [kWh].
    """
    g = _energies("generation_kwh", generation_kwh)
    b = np.asarray(coefficients, dtype=float)
    if b.ndim == 1:
        b = np.repeat(b[:, None], len(g), axis=1)
    if b.ndim != 2 or b.shape[1] != len(g):
        raise AllocationError(f"coefficients: expected shape (P,) or (P, {len(g)}), got {b.shape}")
    if np.any(b < 0) or not np.all(np.isfinite(b)):
        raise AllocationError("coefficients: must be finite and non-negative")
    bad = np.flatnonzero(np.abs(b.sum(axis=0) - 1.0) > 1e-6)
    if len(bad):
        raise AllocationError(
            f"coefficients: hour {int(bad[0]) + 1} sums to {b[:, bad[0]].sum():.6f}, not 1"
        )
    return b * g[None, :]


def es_coefficient_file(cups: Sequence[str], coefficients: np.ndarray, year: int) -> str:
    """The hourly coefficient file for the distributor, one line per supply point and hour.

    Lines read ``CUPS;hour;coefficient`` with the hour of the year counted from 1 (8,760 or
    8,784 lines per CUPS) and the coefficient with six decimals, rounded so that every hour
    sums to exactly 1.000000 (largest remainder). This follows the layout of the variable
    coefficients file introduced by Orden TED/1247/2021; the distributor's current
    specification should be checked before the first submission.

    Parameters
    ----------
    cups : sequence of str
        The supply points' CUPS codes.
    coefficients : ndarray, shape (P, H)
        One coefficient per supply point and hour of ``year``.
    """
    hours = (dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days * 24
    b = np.asarray(coefficients, dtype=float)
    if b.shape != (len(cups), hours):
        raise AllocationError(
            f"coefficients: expected shape ({len(cups)}, {hours}) for {year}, got {b.shape}"
        )
    es_allocate(b, np.ones(hours))
    q = Decimal("0.000001")
    lines = []
    cols = [
        largest_remainder(list(b[:, h]), Decimal(1).quantize(q), q, keys=list(cups))
        for h in range(hours)
    ]
    for i, code in enumerate(cups):
        for h in range(hours):
            lines.append(f"{code};{h + 1};{cols[h][i]}")
    return "\n".join(lines) + "\n"
