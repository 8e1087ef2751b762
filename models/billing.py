"""Monthly billing: one statement per member and month from the settled days, and an export.

Each day contributes its **latest settlement version** under the rule it was settled with.
A month with days not settled is refused, naming them, unless a partial statement is asked
for; it is then marked *provisional* and lists the missing days. Outputs, under
``reports/bills/<YYYY-MM>/``: ``<member>.html`` and ``<member>.pdf`` (every daily line with
its version, rule, approval and explanation), ``billing_<YYYY-MM>.csv`` (one row per member)
and ``billing_<YYYY-MM>.json`` (per member, with the daily lines), which an invoicing system
imports. Money is Decimal; a month total is the exact sum of the daily cents.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd

CENT = Decimal("0.01")


class UnsettledDays(RuntimeError):
    """Days of the month have no settlement; names them."""

    def __init__(self, month: str, days: list[dt.date]):
        self.days = days
        shown = ", ".join(d.isoformat() for d in days[:31])
        super().__init__(
            f"{month}: {len(days)} day(s) not settled: {shown}. Run them first "
            "(ecm backfill --start ... --end ...), or bill with --allow-partial for a "
            "provisional statement"
        )


@dataclass
class MonthlyBill:
    """The month's statements, ready to write."""

    month: str
    currency: str
    lines: pd.DataFrame
    """day, member_id, version, rule, amount, shared_kwh, reason, approval, explanation"""
    members: dict[str, str]
    missing_days: list[dt.date] = field(default_factory=list)

    @property
    def provisional(self) -> bool:
        """Whether days are missing (a partial bill)."""
        return bool(self.missing_days)

    def totals(self) -> dict[str, Decimal]:
        """Month total per member [currency], exact."""
        out: dict[str, Decimal] = {}
        for m, g in self.lines.groupby("member_id"):
            out[str(m)] = sum((Decimal(str(a)).quantize(CENT) for a in g["amount"]), Decimal(0))
        return out


def month_days(month: str, first_day: dt.date, last_day: dt.date | None) -> list[dt.date]:
    """The community's days in ``YYYY-MM`` (clipped to its first and last day)."""
    try:
        start = dt.date.fromisoformat(f"{month}-01")
    except ValueError:
        raise ValueError(f"month {month!r} is not YYYY-MM") from None
    nxt = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    days = [start + dt.timedelta(days=i) for i in range((nxt - start).days)]
    return [d for d in days if d >= first_day and (last_day is None or d <= last_day)]


def build_bill(
    month: str,
    days: list[dt.date],
    versions: pd.DataFrame,
    allocations: pd.DataFrame,
    members: dict[str, str],
    currency: str,
    allow_partial: bool = False,
) -> MonthlyBill:
    """Assemble the month from the latest settlement version of each day.

    Parameters
    ----------
    versions : DataFrame
        ``settlement_versions`` rows of the month (any versions).
    allocations : DataFrame
        ``allocations`` rows of the month (any versions, every rule).

    Raises
    ------
    UnsettledDays
        When days have no settlement and ``allow_partial`` is false.
    """
    v = versions.copy()
    v["day"] = [pd.Timestamp(d).date() for d in v["day"]]
    latest = v.sort_values("version").groupby("day").tail(1).set_index("day")
    missing = [d for d in days if d not in latest.index]
    if missing and not allow_partial:
        raise UnsettledDays(month, missing)
    a = allocations.copy()
    a["day"] = [pd.Timestamp(d).date() for d in a["day"]]
    rows = []
    for day, ver in latest.iterrows():
        if day not in days:
            continue
        sel = a[(a["day"] == day) & (a["version"] == ver["version"]) & a["is_settlement"]]
        for r in sel.itertuples(index=False):
            rows.append(
                {
                    "day": day,
                    "member_id": r.member_id,
                    "version": int(ver["version"]),
                    "rule": r.rule,
                    "amount": Decimal(str(r.amount)).quantize(CENT),
                    "shared_kwh": float(r.shared_kwh),
                    "reason": ver["reason"],
                    "approval": ver["approval_reference"],
                    "explanation": r.explanation,
                }
            )
    cols = [
        "day",
        "member_id",
        "version",
        "rule",
        "amount",
        "shared_kwh",
        "reason",
        "approval",
        "explanation",
    ]
    lines = pd.DataFrame(rows, columns=cols).sort_values(["member_id", "day"])
    return MonthlyBill(month, currency, lines.reset_index(drop=True), members, missing)


def write_bill(bill: MonthlyBill, out_dir: Path, community_name: str) -> list[Path]:
    """Write HTML and PDF statements per member and the CSV and JSON export.

    Returns
    -------
    list of Path
        Every file written.
    """
    out = Path(out_dir) / bill.month
    out.mkdir(parents=True, exist_ok=True)
    totals = bill.totals()
    written: list[Path] = []
    export = []
    for mid, g in bill.lines.groupby("member_id", sort=True):
        mid = str(mid)
        name = bill.members.get(mid, "Community fund")
        written.append(_write_html(out / f"{mid}.html", bill, community_name, mid, name, g))
        written.append(_write_pdf(out / f"{mid}.pdf", bill, community_name, mid, name, g))
        export.append(
            {
                "month": bill.month,
                "member_id": mid,
                "name": name,
                "currency": bill.currency,
                "total": str(totals[mid]),
                "days_settled": int(g["day"].nunique()),
                "days_missing": len(bill.missing_days),
                "provisional": bill.provisional,
                "lines": [
                    {
                        "day": r.day.isoformat(),
                        "version": r.version,
                        "rule": r.rule,
                        "amount": str(r.amount),
                        "shared_kwh": round(r.shared_kwh, 3),
                        "reason": r.reason,
                        "approval": r.approval,
                    }
                    for r in g.itertuples(index=False)
                ],
            }
        )
    csv = pd.DataFrame([{k: v for k, v in e.items() if k != "lines"} for e in export])
    csv_path = out / f"billing_{bill.month}.csv"
    csv.to_csv(csv_path, index=False)
    json_path = out / f"billing_{bill.month}.json"
    json_path.write_text(
        json.dumps(
            {
                "month": bill.month,
                "provisional": bill.provisional,
                "missing_days": [d.isoformat() for d in bill.missing_days],
                "members": export,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return [*written, csv_path, json_path]


def _title(bill: MonthlyBill, name: str) -> str:
    state = "PROVISIONAL statement" if bill.provisional else "Statement"
    return f"{state} for {name}, {bill.month}"


def _write_html(
    path: Path, bill: MonthlyBill, community: str, mid: str, name: str, g: pd.DataFrame
) -> Path:
    e = html.escape
    total = bill.totals()[mid]
    rows = "\n".join(
        f"<tr><td>{r.day}</td><td class='num'>{r.version}</td><td>{e(r.rule)}</td>"
        f"<td class='num'>{r.amount}</td><td class='num'>{r.shared_kwh:.2f}</td>"
        f"<td>{e(r.reason)}</td><td>{e(r.explanation)}</td></tr>"
        for r in g.itertuples(index=False)
    )
    missing = (
        f"<p class='banner' id='provisional'>Provisional: {len(bill.missing_days)} day(s) not "
        f"settled yet: {', '.join(d.isoformat() for d in bill.missing_days)}.</p>"
        if bill.provisional
        else ""
    )
    approvals = sorted(set(g["approval"]))
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{e(community)}: {e(_title(bill, name))}</title>
<style>body{{font-family:sans-serif;margin:2em}}
td,th{{padding:2px 6px;border-bottom:1px solid #ddd}} .num{{text-align:right}}
.banner{{background:#fff3cd;padding:.5em}}</style></head><body>
<h1>{e(community)}</h1><h2 id="title">{e(_title(bill, name))} ({e(mid)})</h2>{missing}
<p>Total credit for the month: <strong id="total">{total} {e(bill.currency)}</strong>,
the sum of the daily amounts below (each day's latest settlement version).</p>
<p>Settled under: {e("; ".join(approvals))}.</p>
<table id="lines"><tr><th>day</th><th>version</th><th>rule</th>
<th>amount [{e(bill.currency)}]</th><th>shared [kWh]</th><th>version reason</th>
<th>explanation</th></tr>
{rows}
</table></body></html>"""
    path.write_text(doc, encoding="utf-8")
    return path


def _write_pdf(
    path: Path, bill: MonthlyBill, community: str, mid: str, name: str, g: pd.DataFrame
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    total = bill.totals()[mid]
    header = [
        community,
        f"{_title(bill, name)} ({mid})",
        f"Total credit: {total} {bill.currency} (sum of the daily amounts below)",
        "Settled under: " + "; ".join(sorted(set(g["approval"]))),
    ]
    if bill.provisional:
        header.append(
            "PROVISIONAL: not settled yet: " + ", ".join(d.isoformat() for d in bill.missing_days)
        )
    lines = [
        f"{r.day}  v{r.version}  {r.rule:<22} {str(r.amount):>9}  {r.shared_kwh:7.2f} kWh"
        f"  {r.reason[:40]}"
        for r in g.itertuples(index=False)
    ]
    per_page = 40
    with PdfPages(path, metadata={"Title": _title(bill, name), "Creator": "ECM"}) as pdf:
        for start in range(0, max(len(lines), 1), per_page):
            fig = Figure(figsize=(8.27, 11.69))
            y = 0.95
            for i, text in enumerate(header if start == 0 else header[:2]):
                fig.text(0.06, y, text, fontsize=12 if i < 2 else 9, family="sans-serif")
                y -= 0.03
            y -= 0.01
            fig.text(
                0.06,
                y,
                "day         ver rule                      amount    shared  reason",
                fontsize=8,
                family="monospace",
            )
            y -= 0.02
            for text in lines[start : start + per_page]:
                fig.text(0.06, y, text, fontsize=8, family="monospace")
                y -= 0.018
            pdf.savefig(fig)
    return path
