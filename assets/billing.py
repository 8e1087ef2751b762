"""Monthly billing: the month's statements and billing export from the settled days."""

import dagster as dg

from assets.dispatch import allocations
from assets.partitions import monthly_partitions
from assets.resources import EcmResource
from models.billing import UnsettledDays, build_bill, month_days, write_bill


class BillConfig(dg.Config):
    """``allow_partial``: bill a month with unsettled days, marked provisional."""

    allow_partial: bool = False


@dg.asset(
    partitions_def=monthly_partitions,
    kinds={"html", "pdf", "csv", "json"},
    group_name="bill",
    deps=[allocations],
)
def monthly_bills(
    context: dg.AssetExecutionContext, config: BillConfig, ecm: EcmResource
) -> dg.MaterializeResult:
    """One statement per member for the month (HTML and PDF) and the CSV and JSON export,
    from each day's latest settlement version; refused while days are unsettled."""
    cfg, wh = ecm.community(), ecm.warehouse()
    month = context.partition_key[:7]
    days = month_days(month, cfg.community.first_day, cfg.community.last_day)
    if not days:
        raise dg.Failure(description=f"{month} has no days of the community")
    versions = wh.query(
        "SELECT * FROM settlement_versions WHERE day BETWEEN ? AND ?", [days[0], days[-1]]
    )
    allocs = wh.query("SELECT * FROM allocations WHERE day BETWEEN ? AND ?", [days[0], days[-1]])
    members = dict(zip(*wh.read("members")[["member_id", "name"]].to_numpy().T, strict=True))
    try:
        bill = build_bill(
            month,
            days,
            versions,
            allocs,
            members,
            cfg.community.currency,
            allow_partial=config.allow_partial,
        )
    except UnsettledDays as err:
        raise dg.Failure(description=str(err)) from None
    paths = write_bill(bill, ecm.reports_dir() / "bills", cfg.community.name)
    totals = bill.totals()
    return dg.MaterializeResult(
        metadata={
            "month": month,
            "provisional": bill.provisional,
            "missing_days": len(bill.missing_days),
            "members": len(totals),
            "total": float(sum(totals.values())),
            "export": dg.MetadataValue.path(str(paths[-1])),
        }
    )
