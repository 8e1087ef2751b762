"""``ecm token``, ``ecm plan``, ``ecm export`` and ``ecm serve``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console()

token_app = typer.Typer(help="API tokens of `ecm serve`.", no_args_is_help=True)
plan_app = typer.Typer(help="Approve or reject a day's plan.", no_args_is_help=True)
export_app = typer.Typer(help="Export a day's plan for execution.", no_args_is_help=True)


def _ecm():
    from assets.resources import EcmResource
    from pipelines.cli import _prepare_home

    _prepare_home()
    return EcmResource()


def _day(value: str) -> dt.date:
    from pipelines.cli import _parse_day

    return _parse_day(value)


@token_app.command("create")
def token_create(
    role: str = typer.Option(..., "--role", help="operator | member"),
    member: str = typer.Option(None, "--member", help="the member of a member token"),
    label: str = typer.Option(None, "--label", help="what the token is for"),
    expires_days: float = typer.Option(
        None, "--expires-days", help="valid for this many days (default: until revoked)"
    ),
) -> None:
    """Create a token; it is printed once, alone on the last line, and only its hash is kept."""
    from models.plan_store import create_token

    try:
        tok = create_token(_ecm().warehouse(), role, member, label, expires_days)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    console.print(f"token {tok.token_id} ({role}{' ' + member if member else ''}) created:")
    print(tok.token)


@token_app.command("revoke")
def token_revoke(token_id: str = typer.Argument(..., help="token id (or the whole token)")) -> None:
    """Revoke a token: it is refused from the next request on."""
    from models.access import InvalidToken
    from models.plan_store import revoke_token

    try:
        ok = revoke_token(_ecm().warehouse(), token_id)
    except InvalidToken as err:
        raise typer.BadParameter(str(err)) from None
    if not ok:
        console.print(f"[red]no valid token {escape(token_id)}[/red]")
        raise typer.Exit(1)
    console.print(f"token {escape(token_id)} revoked")


@token_app.command("list")
def token_list() -> None:
    """Tokens (ids, roles, members, created and revoked; never the secrets)."""
    df = (
        _ecm()
        .warehouse()
        .query(
            "SELECT token_id, role, member_id, label, created_at, expires_at, revoked_at "
            "FROM api_tokens "
            "ORDER BY created_at"
        )
    )
    console.print(df.to_string(index=False) if len(df) else "no tokens")


def _decide(date: str, decision: str, by: str, comment: str | None) -> None:
    from models.plan_store import PlanDecisionError, record_decision
    from pipelines.cli import materialise_day

    day = _day(date)
    try:
        row = record_decision(_ecm().warehouse(), day, decision, by=by, comment=comment)
    except PlanDecisionError as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(1) from None
    ok, errors = materialise_day(day, "review")  # the report shows the decision
    console.print(f"plan {row['plan_version']} of {day} {decision} by {escape(by)}")
    if not ok:
        console.print("[yellow]the report was not re-rendered: " + "; ".join(errors) + "[/yellow]")


@plan_app.command("approve")
def plan_approve(
    date: str = typer.Option(..., "--date", help="local day YYYY-MM-DD"),
    by: str = typer.Option(..., "--by", help="who approves"),
    comment: str = typer.Option(None, "--comment", help="recorded with the decision"),
) -> None:
    """Approve the day's plan as it is stored now (chained in the audit ledger)."""
    _decide(date, "approved", by, comment)


@plan_app.command("reject")
def plan_reject(
    date: str = typer.Option(..., "--date", help="local day YYYY-MM-DD"),
    by: str = typer.Option(..., "--by", help="who rejects"),
    comment: str = typer.Option(None, "--comment", help="why (recorded)"),
) -> None:
    """Reject the day's plan (its export says so; devices keep to self-consumption)."""
    _decide(date, "rejected", by, comment)


@plan_app.command("status")
def plan_status(date: str = typer.Option(..., "--date", help="local day YYYY-MM-DD")) -> None:
    """The plan's version and approval state."""
    from models.plan_store import approval_state

    print(json.dumps(approval_state(_ecm().warehouse(), _day(date))))


@export_app.command("plan")
def export_plan(
    date: str = typer.Option(..., "--date", help="local day YYYY-MM-DD"),
    fmt: str = typer.Option("json", "--format", help="json | csv"),
    out: Path = typer.Option(None, "--out", help="file to write (default: standard output)"),
) -> None:
    """Setpoints per battery and interval for execution, with the plan's version, approval
    state and validity window (JSON schema: optimisation/schemas/setpoints-v1.json)."""
    from assets.serving import NotFound, setpoints_document
    from optimisation.setpoints import setpoints_frame

    if fmt not in ("json", "csv"):
        raise typer.BadParameter("--format must be json or csv")
    try:
        doc = setpoints_document(_ecm(), _day(date))
    except NotFound as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(1) from None
    text = (
        json.dumps(doc, indent=2)
        if fmt == "json"
        else setpoints_frame(doc).to_csv(index=False, lineterminator="\n")
    )
    if out is None:
        print(text)
    else:
        out.write_text(text + ("\n" if fmt == "json" else ""), encoding="utf-8")
        console.print(f"wrote {out} ({doc['approval']['state']}, plan {doc['plan_version']})")


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="interface (localhost by default)"),
    port: int = typer.Option(8000, "--port"),
) -> None:
    """The API (/api/v1, OpenAPI docs at /docs); put it behind a TLS proxy (see the README)."""
    import uvicorn

    from pipelines.api.app import create_app

    _ecm()
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
