"""Policy documents, their hashes, and the hash-chained audit ledger (pure functions).

The fairness policy is what governance approves: the rules computed, the rule billed, how a
negative day is shared, and the incentive. Its SHA-256 binds an approval to exactly that
policy; a changed field needs a new approval (``ecm policy approve``).

The audit ledger is an append-only chain: entry ``k`` stores ``hash_k = SHA-256(hash_{k-1} |
kind | subject | payload_hash | created_at)``. A settlement entry's payload hash covers the
version's allocation rows (day, version, rule, member, amount) and its input and policy
hashes; an approval's covers the approval record. Altering any stored row breaks the chain at
that entry, which :func:`verify_chain` names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd


def policy_document(config: Any) -> dict[str, Any]:
    """The fairness policy of a configuration, as the JSON-able document that is approved."""
    f = config.fairness
    return {
        "rules": list(f.rules),
        "settlement_rule": f.settlement_rule,
        "loss_sharing": f.loss_sharing,
        "incentive": {
            "scheme": config.incentive.scheme,
            "rate_per_kwh": config.incentive.rate_per_kwh,
        },
    }


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces) of a document."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def sha256(data: bytes | str) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def policy_hash(doc: Mapping[str, Any]) -> str:
    """SHA-256 of a policy document."""
    return sha256(canonical(dict(doc)))


def policy_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Fields that differ between two policy documents, as ``field: old -> new``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(policy_diff(a, b, name + "."))
        elif a != b:
            out.append(f"fairness.{name}: {a} -> {b}" if prefix == "" else f"{name}: {a} -> {b}")
    return out


def array_digest(*arrays: np.ndarray, decimals: int = 9) -> str:
    """SHA-256 of arrays rounded to ``decimals`` (so float noise below it does not count)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.round(np.asarray(a, dtype=float), decimals) + 0.0)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def frame_digest(df: pd.DataFrame, columns: Sequence[str]) -> str:
    """SHA-256 of selected columns of a frame, rows sorted, values as text."""
    rows = sorted(tuple(str(v) for v in r) for r in df[list(columns)].itertuples(index=False))
    return sha256(canonical(rows))


SETTLEMENT_FIELDS = ("day", "version", "input_hash", "policy_hash", "total", "settlement_rule")
ALLOCATION_FIELDS = ("rule", "member_id", "amount")
AUDIT_FIELDS = ("settled_by", "input_files", "reason")
"""Who settled a version, from which files, and why: in its payload hash (for versions that
record who settled them; earlier versions keep the payload they were chained with)."""


def _recorded(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and v != v)


def cents(value: Any) -> str:
    """Money as text with exactly two decimals (DuckDB may return DECIMAL as float)."""
    return str(Decimal(str(value)).quantize(Decimal("0.01")))


def settlement_payload(version_row: Mapping[str, Any], allocation_rows: pd.DataFrame) -> str:
    """Payload hash of a settlement version: its key fields and its allocation rows."""
    head = {k: str(_plain(version_row[k])) for k in SETTLEMENT_FIELDS}
    head["total"] = cents(version_row["total"])
    if _recorded(version_row.get("settled_by")):  # versions settled before it have none
        head.update({k: str(version_row.get(k)) for k in AUDIT_FIELDS})
    allocation_rows = allocation_rows.assign(amount=[cents(a) for a in allocation_rows["amount"]])
    return sha256(
        canonical({"version": head, "rows": frame_digest(allocation_rows, ALLOCATION_FIELDS)})
    )


APPROVAL_FIELDS = ("policy_hash", "policy_json", "approved_by", "reference", "approved_on")


def approval_payload(row: Mapping[str, Any]) -> str:
    """Payload hash of a policy approval record."""
    return sha256(canonical({k: str(_plain(row[k])) for k in APPROVAL_FIELDS}))


def chain_hash(prev_hash: str, kind: str, subject: str, payload: str, created_at: Any) -> str:
    """The ledger hash of one entry."""
    t = pd.Timestamp(created_at).tz_convert("UTC").isoformat()
    return sha256("|".join([prev_hash, kind, subject, payload, t]))


def _plain(v: Any) -> Any:
    if isinstance(v, pd.Timestamp):
        return v.date().isoformat() if v == v.normalize() and v.tzinfo is None else v.isoformat()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def verify_chain(
    ledger: pd.DataFrame,
    payloads: Mapping[str, str],
) -> list[str]:
    """Problems in the chain, first broken link first; empty when intact.

    Parameters
    ----------
    ledger : DataFrame
        ``audit_ledger`` rows.
    payloads : mapping
        ``subject -> payload hash`` recomputed from the stored rows.
    """
    problems = []
    prev = ""
    seen = set()
    for row in ledger.sort_values("seq").itertuples(index=False):
        label = f"ledger entry {row.seq} ({row.kind} {row.subject})"
        if row.prev_hash != prev:
            problems.append(f"{label}: does not follow entry {row.seq - 1} (chain broken)")
        if chain_hash(row.prev_hash, row.kind, row.subject, row.payload_hash, row.created_at) != (
            row.hash
        ):
            problems.append(f"{label}: its hash does not match its contents (ledger altered)")
        actual = payloads.get(row.subject)
        if actual is None:
            problems.append(f"{label}: the rows it covers are missing")
        elif actual != row.payload_hash:
            problems.append(f"{label}: the stored rows were altered after they were recorded")
        seen.add(row.subject)
        prev = row.hash
    for subject in sorted(set(payloads) - seen):
        problems.append(f"{subject}: stored but not in the ledger")
    return problems
