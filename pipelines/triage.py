"""``ecm triage``: the anomaly cases an operator owns (``models.triage``)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
triage_app = typer.Typer(help="The triage queue of anomaly cases.", no_args_is_help=True)


def _wh():
    from assets.resources import EcmResource
    from pipelines.cli import _prepare_home

    _prepare_home()
    return EcmResource().warehouse()


@triage_app.command("list")
def triage_list(
    status: list[str] = typer.Option(
        None, "--status", help="open, acknowledged, confirmed, dismissed, resolved (repeat)"
    ),
    all_: bool = typer.Option(False, "--all", help="every case, whatever its status"),
) -> None:
    """Active cases (open, acknowledged, confirmed) by severity, most recent first."""
    from models.triage import ACTIVE, STATUSES, list_cases

    wanted = STATUSES if all_ else tuple(status or ACTIVE)
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        raise typer.BadParameter(f"unknown status {bad}; one of {STATUSES}")
    df = list_cases(_wh(), wanted)
    if df.empty:
        console.print("no cases")
        return
    t = Table()
    t.add_column("case", no_wrap=True, min_width=12)
    for name in ("status", "severity", "rule", "subject", "first", "last", "days", "owner"):
        t.add_column(name, overflow="fold")
    for r in df.itertuples(index=False):
        t.add_row(
            r.case_id,
            r.status,
            r.severity,
            escape(str(r.rule)),
            escape(str(r.subject_id)),
            str(r.first_seen)[:10],
            str(r.last_seen)[:10],
            str(r.days_flagged),
            escape(str(r.owner)) if isinstance(r.owner, str) else "",
        )
    console.print(t)


def _change(action: str, case: str, by: str, note: str | None, **kw) -> None:
    from models.triage import TriageError, change

    try:
        ev = change(_wh(), case, action, by=by, note=note, **kw)
    except TriageError as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(1) from None
    extra = f", flags swallowed until {ev['suppressed_until']}" if ev["suppressed_until"] else ""
    console.print(f"case {case}: {ev['from_status']} -> {ev['to_status']} by {escape(by)}{extra}")


_BY = typer.Option(..., "--by", help="who makes the change")
_NOTE = typer.Option(None, "--note", help="why (recorded with the change)")


@triage_app.command("ack")
def triage_ack(
    case: str,
    by: str = _BY,
    note: str = _NOTE,
    owner: str = typer.Option(None, "--owner", help="who handles it (default: --by)"),
) -> None:
    """Acknowledge a case: someone is on it."""
    _change("ack", case, by, note, owner=owner)


@triage_app.command("confirm")
def triage_confirm(case: str, by: str = _BY, note: str = _NOTE) -> None:
    """Confirm a case: the fault is real."""
    _change("confirm", case, by, note)


@triage_app.command("dismiss")
def triage_dismiss(
    case: str,
    by: str = _BY,
    note: str = _NOTE,
    suppress_days: int = typer.Option(
        None, "--suppress-days", help="swallow the same flag on this subject for N more days"
    ),
) -> None:
    """Dismiss a case as a false alarm (optionally suppressing the same flag for a while)."""
    _change("dismiss", case, by, note, suppress_days=suppress_days)


@triage_app.command("resolve")
def triage_resolve(case: str, by: str = _BY, note: str = _NOTE) -> None:
    """Resolve a case: the fault is fixed (a new flag opens a new case)."""
    _change("resolve", case, by, note)


@triage_app.command("reopen")
def triage_reopen(case: str, by: str = _BY, note: str = _NOTE) -> None:
    """Reopen a dismissed or resolved case."""
    _change("reopen", case, by, note)
