"""The triage queue: daily anomaly flags grouped into cases an operator owns and decides on.

A flag (``anomalies``: a rule on a subject on a day) joins the case of the same rule and
subject that is still active (``open``, ``acknowledged`` or ``confirmed``), extending its
``last_seen``, instead of repeating every day; otherwise it opens a new case. A case
``dismissed`` with ``suppressed_until`` swallows the same flag on that subject until that
date (a known false alarm: a vacant flat, a PV array under maintenance). Every status change
(``ecm triage ack|confirm|dismiss|resolve|reopen``) is appended to ``anomaly_case_events``
with who, when and the note. Re-running a day changes nothing: a flag on a day a case
already covers stays with that case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from models.ledger import sha256
from models.settlement_store import _insert
from models.warehouse import Warehouse

STATUSES = ("open", "acknowledged", "confirmed", "dismissed", "resolved")
ACTIVE = ("open", "acknowledged", "confirmed")
ACTIONS = {
    "ack": "acknowledged",
    "confirm": "confirmed",
    "dismiss": "dismissed",
    "resolve": "resolved",
    "reopen": "open",
}
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}


class TriageError(ValueError):
    """An unknown case or action, or a change the case's status does not allow."""


def case_id(rule: str, subject: str, first_seen: dt.date) -> str:
    """A case's id: stable for the same rule, subject and first day (12 hex digits)."""
    return sha256(f"{rule}|{subject}|{first_seen.isoformat()}")[:12]


def _date(v: Any) -> dt.date | None:
    """A DATE cell as a date (None for null)."""
    return None if v is None or pd.isna(v) else pd.Timestamp(v).date()


def _max_severity(a: str, b: str) -> str:
    return a if SEVERITY_RANK.get(a, 0) >= SEVERITY_RANK.get(b, 0) else b


def update_cases(wh: Warehouse, day: dt.date, flags: pd.DataFrame) -> dict[str, int]:
    """Join the day's flags into cases (see the module docstring); one transaction.

    Parameters
    ----------
    flags : DataFrame
        The day's ``anomalies`` rows (``rule, subject_id, severity``).

    Returns
    -------
    dict
        ``new``, ``joined``, ``suppressed`` and ``covered`` (already in a case: a re-run)
        counts of (rule, subject) pairs.
    """
    out = {"new": 0, "joined": 0, "suppressed": 0, "covered": 0}
    if flags.empty:
        return out
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    groups = flags.groupby(["rule", "subject_id"])["severity"].agg(
        lambda s: max(s.astype(str), key=lambda v: SEVERITY_RANK.get(v, 0))
    )
    with wh.transaction() as con:
        cases = con.execute("SELECT * FROM anomaly_cases").df()
        records = [
            {
                **r,
                "first": _date(r["first_seen"]),
                "last": _date(r["last_seen"]),
                "until": _date(r["suppressed_until"]),
            }
            for r in cases.to_dict("records")
        ]
        for (rule, subject), severity in groups.items():
            mine = [r for r in records if r["rule"] == rule and r["subject_id"] == subject]
            if any(r["first"] <= day <= r["last"] for r in mine):
                out["covered"] += 1
                continue
            if any(
                r["status"] == "dismissed"
                and r["first"] <= day
                and r["until"] is not None
                and day <= r["until"]
                for r in mine
            ):
                out["suppressed"] += 1
                continue
            active = [r for r in mine if r["status"] in ACTIVE and r["first"] <= day]
            if active:
                row = max(active, key=lambda r: r["first"])
                con.execute(
                    "UPDATE anomaly_cases SET last_seen = greatest(last_seen, ?), severity = ?, "
                    "updated_at = ? WHERE case_id = ?",
                    [day, _max_severity(str(row["severity"]), severity), now, row["case_id"]],
                )
                out["joined"] += 1
                continue
            new = {
                "case_id": case_id(rule, subject, day),
                "rule": rule,
                "subject_id": subject,
                "first_seen": day,
                "last_seen": day,
                "severity": severity,
                "status": "open",
                "owner": None,
                "note": None,
                "suppressed_until": None,
                "updated_at": now,
            }
            _insert(con, "anomaly_cases", pd.DataFrame([new]))
            out["new"] += 1
    return out


def change(
    wh: Warehouse,
    case: str,
    action: str,
    *,
    by: str,
    note: str | None = None,
    suppress_days: int | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """Change a case's status and record it in ``anomaly_case_events``.

    Parameters
    ----------
    action : str
        One of :data:`ACTIONS` (``ack``, ``confirm``, ``dismiss``, ``resolve``, ``reopen``).
    suppress_days : int, optional
        With ``dismiss``: the same flag on this subject is swallowed for this many days after
        the case's last day [d].
    owner : str, optional
        Who takes the case (default: unchanged, or ``by`` when acknowledging).

    Raises
    ------
    TriageError
        Unknown case or action, no name, a suppression without dismissing, or no change.
    """
    if action not in ACTIONS:
        raise TriageError(f"action must be one of {sorted(ACTIONS)}, got {action!r}")
    if not by or not by.strip():
        raise TriageError("a change needs the name of who makes it (--by)")
    if suppress_days is not None and (action != "dismiss" or suppress_days <= 0):
        raise TriageError("--suppress-days is a positive number of days, with dismiss only")
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    with wh.transaction() as con:
        rows = con.execute("SELECT * FROM anomaly_cases WHERE case_id = ?", [case]).df()
        if rows.empty:
            raise TriageError(f"no case {case!r} (see ecm triage list)")
        row = rows.iloc[0]
        to = ACTIONS[action]
        if to == row["status"]:
            raise TriageError(f"case {case} is already {to}")
        until = None
        if suppress_days is not None:
            until = pd.Timestamp(row["last_seen"]).date() + dt.timedelta(days=suppress_days)
        who = owner or (by.strip() if action == "ack" and pd.isna(row["owner"]) else None)
        con.execute(
            "UPDATE anomaly_cases SET status = ?, note = coalesce(?, note), "
            "owner = coalesce(?, owner), suppressed_until = ?, updated_at = ? WHERE case_id = ?",
            [to, note, who, until, now, case],
        )
        event = {
            "case_id": case,
            "changed_at": now,
            "actor": by.strip(),
            "action": action,
            "from_status": str(row["status"]),
            "to_status": to,
            "note": note,
            "suppressed_until": until,
        }
        _insert(con, "anomaly_case_events", pd.DataFrame([event]))
    return event


def list_cases(wh: Warehouse, statuses: Sequence[str] = ACTIVE) -> pd.DataFrame:
    """Cases in ``statuses``, with the number of days flagged: highest severity, then the
    most recently seen first."""
    df = wh.query(
        "SELECT c.*, (SELECT count(DISTINCT a.day) FROM anomalies a WHERE a.rule = c.rule AND "
        "a.subject_id = c.subject_id AND a.day BETWEEN c.first_seen AND c.last_seen) "
        "AS days_flagged FROM anomaly_cases c WHERE list_contains(?, c.status)",
        [list(statuses)],
    )
    if df.empty:
        return df
    df["_sev"] = df["severity"].map(SEVERITY_RANK).fillna(0)
    return (
        df.sort_values(["_sev", "last_seen", "case_id"], ascending=[False, False, True])
        .drop(columns="_sev")
        .reset_index(drop=True)
    )


def cases_of_day(wh: Warehouse, day: dt.date) -> pd.DataFrame:
    """For each (rule, subject) flagged on ``day``: its case, status and whether the case
    began that day (``new``) or swallows the flag (``suppressed``)."""
    df = wh.query(
        "SELECT DISTINCT a.rule, a.subject_id, c.case_id, c.status, c.first_seen, "
        "c.suppressed_until FROM anomalies a JOIN anomaly_cases c ON a.rule = c.rule AND "
        "a.subject_id = c.subject_id AND c.first_seen <= a.day AND (a.day <= c.last_seen OR "
        "(c.status = 'dismissed' AND a.day <= c.suppressed_until)) WHERE a.day = ?",
        [day],
    )
    if df.empty:
        return pd.DataFrame(columns=["rule", "subject_id", "case_id", "case_status", "case_new"])
    df["case_new"] = pd.to_datetime(df["first_seen"]).dt.date == day
    return df.rename(columns={"status": "case_status"})[
        ["rule", "subject_id", "case_id", "case_status", "case_new"]
    ]
