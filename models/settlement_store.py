"""Settlement versions, policy approvals and the audit ledger in the warehouse.

Every write here appends: a settled day gets a new version (its allocation rows, its
``settlement_versions`` row and its ledger entry in one transaction), never an overwrite; an
approval is appended with its ledger entry. :func:`verify` recomputes every payload from the
stored rows and walks the chain.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pandas as pd

from models.contracts import TABLES, conform
from models.ledger import (
    approval_payload,
    chain_hash,
    policy_diff,
    settlement_payload,
    verify_chain,
)
from models.warehouse import Warehouse


class PolicyNotApproved(RuntimeError):
    """The fairness policy in force has no recorded approval; names the changed fields."""


def _insert(con: Any, table: str, df: pd.DataFrame) -> None:
    cols = ", ".join(f'"{c}"' for c in TABLES[table].column_names)
    con.register("_ecm_rows", conform(table, df))
    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _ecm_rows")  # noqa: S608
    con.unregister("_ecm_rows")


def _append_ledger(con: Any, kind: str, subject: str, payload: str, now: pd.Timestamp) -> tuple:
    rows = con.execute("SELECT seq, hash FROM audit_ledger ORDER BY seq DESC LIMIT 1").fetchall()
    last = rows[0] if rows else None
    seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, "")
    h = chain_hash(prev, kind, subject, payload, now)
    row = {
        "seq": seq,
        "kind": kind,
        "subject": subject,
        "payload_hash": payload,
        "created_at": now,
        "prev_hash": prev,
        "hash": h,
    }
    _insert(con, "audit_ledger", pd.DataFrame([row]))
    return prev, h


def latest_version(wh: Warehouse, day: dt.date) -> dict[str, Any] | None:
    """The day's latest settlement version, or None if never settled."""
    df = wh.query("SELECT * FROM settlement_versions WHERE day = ? ORDER BY version DESC", [day])
    return None if df.empty else df.iloc[0].to_dict()


def settled_allocations(wh: Warehouse, day: dt.date) -> pd.DataFrame:
    """The allocation rows of the day's latest version (empty if never settled)."""
    return wh.query(
        "SELECT * FROM allocations WHERE day = ? AND version = "
        "(SELECT max(version) FROM allocations WHERE day = ?)",
        [day, day],
    )


def append_settlement(
    wh: Warehouse, day: dt.date, allocations: pd.DataFrame, version: Mapping[str, Any]
) -> dict[str, Any]:
    """Append a new settlement version of ``day``: allocation rows (with deltas against the
    previous version), its ``settlement_versions`` row and its ledger entry, atomically.

    Returns
    -------
    dict
        The stored version row.
    """
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    with wh.transaction() as con:
        last = con.execute(
            "SELECT max(version) FROM settlement_versions WHERE day = ?", [day]
        ).fetchall()[0][0]
        number = int(last) + 1 if last is not None else 1
        rows = allocations.copy()
        rows["version"] = number
        rows["delta"] = None
        if last is not None:
            prev = con.execute(
                "SELECT rule, member_id, amount FROM allocations WHERE day = ? AND version = ?",
                [day, int(last)],
            ).df()
            before = {(r, m): Decimal(a) for r, m, a in prev.itertuples(index=False)}
            rows["delta"] = [
                (Decimal(a) - before[(r, m)]) if (r, m) in before else None
                for r, m, a in zip(rows["rule"], rows["member_id"], rows["amount"], strict=True)
            ]
        rows["delta"] = rows["delta"].astype(object)
        head = {"settled_by": None, "settled_in_run": None, "input_files": None, **dict(version)}
        head.update(day=day, version=number, created_at=now)
        payload = settlement_payload(head, rows)
        prev_hash, h = _append_ledger(con, "settlement", f"{day} v{number}", payload, now)
        head.update(prev_hash=prev_hash, hash=h)
        _insert(con, "allocations", rows)
        _insert(con, "settlement_versions", pd.DataFrame([head]))
    return head


def approvals(wh: Warehouse) -> pd.DataFrame:
    """Every recorded approval, oldest first."""
    return wh.query("SELECT * FROM policy_approvals ORDER BY recorded_at")


def record_approval(
    wh: Warehouse,
    doc: Mapping[str, Any],
    policy_hash: str,
    *,
    approved_by: str,
    reference: str,
    approved_on: dt.date,
    source: str,
) -> dict[str, Any]:
    """Append an approval of a policy (bound to its hash) and its ledger entry."""
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    row = {
        "policy_hash": policy_hash,
        "policy_json": json.dumps(dict(doc), sort_keys=True),
        "approved_by": approved_by,
        "reference": reference,
        "approved_on": approved_on,
        "recorded_at": now,
        "source": source,
    }
    with wh.transaction() as con:
        exists = con.execute(
            "SELECT count(*) FROM policy_approvals WHERE policy_hash = ?", [policy_hash]
        ).fetchall()[0][0]
        if exists:
            raise PolicyNotApproved(f"policy {policy_hash[:12]} is already approved")
        prev, h = _append_ledger(con, "approval", policy_hash, approval_payload(row), now)
        row.update(prev_hash=prev, hash=h)
        _insert(con, "policy_approvals", pd.DataFrame([row]))
    return row


def approval_in_force(wh: Warehouse, config: Any, doc: Mapping[str, Any], policy_hash: str):
    """The approval of the policy in force; the configuration's approval is recorded for the
    first policy of a warehouse. A policy changed since needs ``ecm policy approve``.

    Raises
    ------
    PolicyNotApproved
        Naming the changed fields and the command.
    """
    df = approvals(wh)
    hit = df[df["policy_hash"] == policy_hash]
    if len(hit):
        return hit.iloc[-1].to_dict()
    if df.empty:
        a = config.fairness.approval
        return record_approval(
            wh,
            doc,
            policy_hash,
            approved_by=a.approved_by,
            reference=a.reference,
            approved_on=a.approved_on,
            source="configuration",
        )
    last = df.iloc[-1]
    changes = policy_diff(json.loads(last["policy_json"]), dict(doc))
    raise PolicyNotApproved(
        "the fairness policy changed since its last approval ("
        + "; ".join(changes)
        + f"; last approved: {last['reference']} by {last['approved_by']}). Nothing is "
        "settled under an unapproved policy: record the decision with "
        "`ecm policy approve --by NAME --reference REF`"
    )


def verify(wh: Warehouse) -> tuple[int, list[str]]:
    """Recompute every payload from the stored rows and walk the chain.

    Returns
    -------
    (int, list of str)
        Ledger entries checked, and the problems (empty when the chain is intact).
    """
    ledger = wh.query("SELECT * FROM audit_ledger ORDER BY seq")
    versions = wh.query("SELECT * FROM settlement_versions")
    allocs = wh.query("SELECT day, version, rule, member_id, amount FROM allocations")
    payloads: dict[str, str] = {}
    groups = {
        (pd.Timestamp(d).date(), int(v)): g for (d, v), g in allocs.groupby(["day", "version"])
    }
    for row in versions.to_dict("records"):
        day = pd.Timestamp(row["day"]).date()
        key = (day, int(row["version"]))
        rows = groups.get(key, allocs.iloc[0:0])
        payloads[f"{day} v{key[1]}"] = settlement_payload({**row, "day": day}, rows)
    for key in set(groups) - {
        (pd.Timestamp(r["day"]).date(), int(r["version"])) for r in versions.to_dict("records")
    }:
        payloads[f"{key[0]} v{key[1]}"] = "allocation rows without a settlement version"
    for row in approvals(wh).to_dict("records"):
        row["approved_on"] = pd.Timestamp(row["approved_on"]).date()
        payloads[row["policy_hash"]] = approval_payload(row)
    from models.plan_store import decision_payloads  # it builds on this module's ledger

    payloads.update(decision_payloads(wh))
    return len(ledger), verify_chain(ledger, payloads)
