"""Settlement versions, policy approvals and the hash-chained audit ledger."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb
import pandas as pd
import pytest

from models.ledger import policy_diff, policy_document, policy_hash
from models.settlement_store import (
    PolicyNotApproved,
    append_settlement,
    approval_in_force,
    latest_version,
    record_approval,
    settled_allocations,
    verify,
)
from models.warehouse import Warehouse

DAY = dt.date(2017, 6, 14)


def _allocations(amounts: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "day": DAY,
                "member_id": m,
                "rule": "shapley",
                "shared_kwh": 1.0,
                "amount": Decimal(a),
                "currency": "USD",
                "consumption_kwh": 2.0,
                "import_kwh": 1.0,
                "export_kwh": 0.0,
                "standalone_cost": 1.0,
                "community_cost": 0.9,
                "is_settlement": True,
                "explanation": "test",
            }
            for m, a in amounts.items()
        ]
    )


def _version(input_hash: str = "in-1", total: str = "1.50") -> dict:
    return {
        "reason": "first settlement",
        "input_hash": input_hash,
        "meter_hash": "m",
        "policy_hash": "p",
        "approval_reference": "GB-1 by board on 2016-07-15",
        "settlement_rule": "shapley",
        "total": Decimal(total),
        "method": "exact",
        "in_core": True,
        "core_max_violation": 0.0,
        "core_method": "exact",
    }


@pytest.fixture()
def wh(tmp_path):
    w = Warehouse(tmp_path / "wh.duckdb")
    w.init_schema()
    return w


def test_versions_append_with_deltas_and_the_chain_verifies(wh):
    v1 = append_settlement(wh, DAY, _allocations({"A": "1.00", "B": "0.50"}), _version())
    v2 = append_settlement(
        wh,
        DAY,
        _allocations({"A": "0.80", "B": "0.70"}),
        {**_version("in-2"), "reason": "meter data corrected (fix.csv)"},
    )
    assert (v1["version"], v2["version"]) == (1, 2) and v2["prev_hash"] == v1["hash"]
    latest = settled_allocations(wh, DAY).set_index("member_id")
    assert latest["version"].tolist() == [2, 2]
    assert [round(float(d), 2) for d in latest.loc[["A", "B"], "delta"]] == [-0.2, 0.2]
    first = wh.query("SELECT member_id, amount FROM allocations WHERE version = 1")
    assert sorted(first["amount"].round(2).tolist()) == [0.5, 1.0]  # version 1 unchanged
    assert latest_version(wh, DAY)["reason"] == "meter data corrected (fix.csv)"
    assert verify(wh) == (2, [])


def test_an_altered_amount_or_ledger_row_is_named(wh, tmp_path):
    append_settlement(wh, DAY, _allocations({"A": "1.00", "B": "0.50"}), _version())
    append_settlement(wh, DAY, _allocations({"A": "0.90", "B": "0.60"}), _version("in-2"))
    con = duckdb.connect(str(wh.path))
    con.execute("UPDATE allocations SET amount = 0.91 WHERE version = 2 AND member_id = 'A'")
    con.close()
    n, problems = verify(wh)
    assert n == 2 and problems and "2017-06-14 v2" in problems[0] and "altered" in problems[0]
    con = duckdb.connect(str(wh.path))
    con.execute("UPDATE allocations SET amount = 0.90 WHERE version = 2 AND member_id = 'A'")
    con.execute("UPDATE audit_ledger SET created_at = created_at + INTERVAL 1 SECOND WHERE seq = 1")
    con.close()
    problems = verify(wh)[1]
    assert "ledger entry 1" in problems[0] and "does not match" in problems[0]


@pytest.mark.parametrize(
    "column, value",
    [
        ("settled_by", "mallory"),
        ("input_files", '[{"file": "m.csv", "sha256": "00", "readings": 24}]'),
        ("reason", "first settlement (edited)"),
    ],
)
def test_who_settled_from_which_files_and_why_are_in_the_chain(wh, column, value):
    """Reliability item 18: a version's who, input files and reason are covered by its ledger
    hash; a version settled before they were recorded keeps the payload it was chained with."""
    append_settlement(wh, DAY, _allocations({"A": "1.00", "B": "0.50"}), _version())
    audited = {
        **_version("in-2"),
        "settled_by": "operator",
        "settled_in_run": "r1",
        "input_files": '[{"file": "m.csv", "sha256": "ab", "readings": 24}]',
    }
    append_settlement(wh, DAY, _allocations({"A": "0.90", "B": "0.60"}), audited)
    assert verify(wh) == (2, [])
    con = duckdb.connect(str(wh.path))
    con.execute(f"UPDATE settlement_versions SET {column} = ? WHERE version = 2", [value])
    con.close()
    problems = verify(wh)[1]
    assert problems and "2017-06-14 v2" in problems[0] and "altered" in problems[0]


def test_rows_deleted_from_a_version_are_detected(wh):
    append_settlement(wh, DAY, _allocations({"A": "1.00", "B": "0.50"}), _version())
    con = duckdb.connect(str(wh.path))
    con.execute("DELETE FROM allocations WHERE member_id = 'B'")
    con.close()
    assert "2017-06-14 v1" in verify(wh)[1][0]


def test_policy_gate_records_the_first_approval_then_refuses_changes(wh, demo_config):
    doc = policy_document(demo_config)
    h = policy_hash(doc)
    first = approval_in_force(wh, demo_config, doc, h)
    assert first["source"] == "configuration" and first["reference"] == "GB-2016-07-15-03"
    assert approval_in_force(wh, demo_config, doc, h)["policy_hash"] == h  # no duplicate
    changed = {**doc, "settlement_rule": "pro_rata_consumption"}
    with pytest.raises(PolicyNotApproved, match=r"settlement_rule: shapley -> pro_rata") as e:
        approval_in_force(wh, demo_config, changed, policy_hash(changed))
    assert "ecm policy approve" in str(e.value)
    record_approval(
        wh,
        changed,
        policy_hash(changed),
        approved_by="General assembly",
        reference="GA-2",
        approved_on=dt.date(2017, 6, 20),
        source="ecm policy approve",
    )
    assert approval_in_force(wh, demo_config, changed, policy_hash(changed))["reference"] == "GA-2"
    assert verify(wh) == (2, [])


def test_policy_diff_names_nested_fields():
    old = {"rules": ["a"], "incentive": {"rate_per_kwh": 0.1, "scheme": "x"}}
    new = {"rules": ["a"], "incentive": {"rate_per_kwh": 0.12, "scheme": "x"}}
    assert policy_diff(old, new) == ["incentive.rate_per_kwh: 0.1 -> 0.12"]


def test_a_large_amount_after_many_small_ones_is_stored_exactly(wh):
    """1,000 members: DuckDB typed a column of Decimals from a sample of small amounts as
    DECIMAL(4,2) and refused 689.83 further down; amounts now go in as exact text."""
    amounts = {f"M{i:04d}": f"{(i % 97) / 7:.2f}" for i in range(2999)}
    amounts["M9999"] = "689.83"
    total = str(sum(Decimal(a) for a in amounts.values()))
    append_settlement(wh, DAY, _allocations(amounts), _version(total=total))
    stored = wh.query("SELECT member_id, amount FROM allocations WHERE member_id = 'M9999'")
    assert Decimal(str(stored["amount"].iloc[0])) == Decimal("689.83")
    got = wh.query("SELECT sum(amount) AS s FROM allocations")["s"].iloc[0]
    assert Decimal(str(got)) == Decimal(total)
    assert verify(wh) == (1, [])
