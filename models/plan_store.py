"""Plan decisions (approve or reject, bound to the plan's version, chained in the audit ledger)
and API tokens, in the warehouse.

A plan's version is a digest of its rows (:func:`plan_version`): a re-run that gives the same
plan keeps its version and its approval; a plan that changes is 'proposed' again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd

from models.access import ROLES, NewToken, Principal, new_token, parse_token, verify
from models.ledger import _plain, canonical, frame_digest, sha256
from models.settlement_store import _append_ledger, _insert
from models.warehouse import Warehouse

DECISIONS = ("approved", "rejected")
PLAN_FIELDS = (
    "member_id",
    "ts",
    "scenario",
    "charge_kwh",
    "discharge_kwh",
    "soc_kwh",
    "import_kwh",
    "export_kwh",
    "plan_kind",
)
DECISION_FIELDS = ("day", "plan_version", "decision", "decided_by", "comment", "source")


class PlanDecisionError(ValueError):
    """A decision that cannot be recorded (no plan for the day, an unknown decision)."""


def plan_version(plan: pd.DataFrame) -> str:
    """Version of a day's plan: the first 16 hex digits of a SHA-256 over its rows (energies
    rounded to 1 Wh, -0 as 0, so solver noise does not make a new version)."""
    rounded = plan.assign(
        **{c: plan[c].astype(float).round(3) + 0.0 for c in PLAN_FIELDS if c.endswith("_kwh")},
        ts=pd.to_datetime(plan["ts"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return frame_digest(rounded, PLAN_FIELDS)[:16]


def decision_payload(row: Mapping[str, Any]) -> str:
    """Payload hash of a plan decision (what the ledger entry covers)."""
    return sha256(canonical({k: str(_plain(row.get(k))) for k in DECISION_FIELDS}))


def decision_subject(day: dt.date, decided_at: Any) -> str:
    """Ledger subject of a plan decision."""
    return f"plan {day} {pd.Timestamp(decided_at).tz_convert('UTC').isoformat()}"


def current_plan(wh: Warehouse, day: dt.date) -> pd.DataFrame:
    """The day's stored plan rows (empty when never planned)."""
    return wh.read_day("dispatch_plan", day)


def record_decision(
    wh: Warehouse,
    day: dt.date,
    decision: str,
    *,
    by: str,
    comment: str | None = None,
    source: str = "cli",
    expected_version: str | None = None,
) -> dict[str, Any]:
    """Approve or reject the day's current plan; the decision is chained in the audit ledger.

    Parameters
    ----------
    expected_version : str, optional
        Refuse when the stored plan is no longer this version (an operator decides on the
        plan they saw).

    Raises
    ------
    PlanDecisionError
        No plan stored for the day, an unknown decision, no name, or a changed plan.
    """
    if decision not in DECISIONS:
        raise PlanDecisionError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if not by or not by.strip():
        raise PlanDecisionError("a decision needs the name of who decides (--by)")
    plan = current_plan(wh, day)
    if plan.empty:
        raise PlanDecisionError(f"no plan is stored for {day}: run the day first")
    version = plan_version(plan)
    if expected_version is not None and expected_version != version:
        raise PlanDecisionError(
            f"the plan of {day} is now version {version}, not {expected_version}: review it again"
        )
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    row: dict[str, Any] = {
        "day": day,
        "plan_version": version,
        "decision": decision,
        "decided_by": by.strip(),
        "comment": comment or None,
        "decided_at": now,
        "source": source,
    }
    with wh.transaction() as con:
        prev, h = _append_ledger(
            con, "plan_decision", decision_subject(day, now), decision_payload(row), now
        )
        row.update(prev_hash=prev, hash=h)
        _insert(con, "plan_decisions", pd.DataFrame([row]))
    return row


def approval_state(wh: Warehouse, day: dt.date, plan: pd.DataFrame | None = None) -> dict:
    """The state of the day's plan: ``proposed``, ``approved`` or ``rejected``, with who,
    when and the comment of the latest decision on the current version.

    Returns
    -------
    dict
        ``state, plan_version`` and, when decided, ``decided_by, decided_at, comment,
        source``; ``state`` is ``none`` when no plan is stored.
    """
    plan = current_plan(wh, day) if plan is None else plan
    if plan.empty:
        return {"state": "none", "plan_version": None}
    version = plan_version(plan)
    rows = wh.query(
        "SELECT * FROM plan_decisions WHERE day = ? AND plan_version = ? "
        "ORDER BY decided_at DESC LIMIT 1",
        [day, version],
    )
    if rows.empty:
        return {"state": "proposed", "plan_version": version}
    r = rows.iloc[0]
    return {
        "state": str(r["decision"]),
        "plan_version": version,
        "decided_by": str(r["decided_by"]),
        "decided_at": pd.Timestamp(r["decided_at"]).tz_convert("UTC").isoformat(),
        "comment": None if pd.isna(r["comment"]) else str(r["comment"]),
        "source": str(r["source"]),
    }


def decision_payloads(wh: Warehouse) -> dict[str, str]:
    """``ledger subject -> payload hash`` recomputed from the stored decisions."""
    out = {}
    for row in wh.query("SELECT * FROM plan_decisions").to_dict("records"):
        row["day"] = pd.Timestamp(row["day"]).date()
        if row.get("comment") is not None and row["comment"] != row["comment"]:
            row["comment"] = None
        out[decision_subject(row["day"], row["decided_at"])] = decision_payload(row)
    return out


def create_token(
    wh: Warehouse,
    role: str,
    member_id: str | None = None,
    label: str | None = None,
    expires_days: float | None = None,
) -> NewToken:
    """Create and store a token (only its hash). A member token needs a known member id;
    ``expires_days`` [d] limits its life (None: until revoked).

    Raises
    ------
    ValueError
        An unknown role, a member token without a member, an operator token with one, or a
        member id that is not in ``members``.
    """
    if role not in ROLES:
        raise ValueError(f"--role must be one of {ROLES}, got {role!r}")
    if role == "member":
        if not member_id:
            raise ValueError("a member token needs --member")
        known = wh.query("SELECT count(*) AS n FROM members WHERE member_id = ?", [member_id])
        if int(known["n"].iloc[0]) == 0:
            raise ValueError(f"member {member_id!r} is not in the members table")
    elif member_id:
        raise ValueError("an operator token sees every member: drop --member")
    if expires_days is not None and expires_days <= 0:
        raise ValueError(f"--expires-days must be positive, got {expires_days}")
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    tok = new_token()
    row = {
        "token_id": tok.token_id,
        "secret_sha256": tok.secret_sha256,
        "role": role,
        "member_id": member_id,
        "label": label,
        "created_at": now,
        "expires_at": None if expires_days is None else now + pd.Timedelta(days=expires_days),
        "revoked_at": None,
    }
    with wh.transaction() as con:
        _insert(con, "api_tokens", pd.DataFrame([row]))
    return tok


def revoke_token(wh: Warehouse, token_id: str) -> bool:
    """Revoke a token by id (or by the whole token string); False when unknown or revoked."""
    if token_id.startswith("ecm_"):
        token_id = parse_token(token_id)[0]
    with wh.transaction() as con:
        n = con.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL "
            "RETURNING token_id",
            [pd.Timestamp.now(tz="UTC").floor("ms"), token_id],
        ).fetchall()
    return bool(n)


def authenticate(wh: Warehouse, token: str) -> Principal:
    """The principal of a presented token.

    Raises
    ------
    models.access.InvalidToken
        Malformed, unknown, revoked or wrong.
    """
    token_id, _ = parse_token(token)
    rows = wh.query("SELECT * FROM api_tokens WHERE token_id = ?", [token_id])
    return verify(token, None if rows.empty else rows.iloc[0].to_dict())
