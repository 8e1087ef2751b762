"""The ``ecm`` command line: init, demo, run, backfill, backtest, evaluate, ingest, dev, status."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipelines.api.commands import export_app, plan_app, serve, token_app
from pipelines.triage import triage_app

# Partitioned asset checks are a Dagster preview feature; the warning is noise for operators.
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")

app = typer.Typer(
    help="ECM, the Energy Community Manager.", no_args_is_help=True, add_completion=False
)
ingest_app = typer.Typer(help="Validate and import files into the warehouse.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
policy_app = typer.Typer(help="The fairness policy and its approvals.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
audit_app = typer.Typer(help="The hash-chained audit ledger.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
bench_app = typer.Typer(help="Benchmarks that print one JSON line.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(token_app, name="token")
app.add_typer(plan_app, name="plan")
app.add_typer(export_app, name="export")
app.add_typer(triage_app, name="triage")
app.command("serve")(serve)
study_app = typer.Typer(help="Case studies on built-in communities.", no_args_is_help=True)
app.add_typer(study_app, name="study")
console = Console()
REPO = Path(__file__).resolve().parents[1]


def _prepare_home() -> Path:
    """Resolve $ECM_HOME, create it and the Dagster instance folder, export DAGSTER_HOME."""
    from assets.resources import ecm_home

    home = ecm_home()
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    _select_instance(dagster_home / "dagster.yaml")
    os.environ["ECM_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return home


INSTANCE_TEMPLATES = {"sqlite": REPO / "dagster.yaml", "postgres": REPO / "dagster.postgres.yaml"}
"""The Dagster instance configurations ECM ships: SQLite under $ECM_HOME/dagster, or
PostgreSQL when ``ECM_DAGSTER_PG_URL`` is set."""


def _select_instance(target: Path) -> None:
    """Write the instance configuration the environment selects to ``target``.

    PostgreSQL when ``ECM_DAGSTER_PG_URL`` is set, else SQLite. A configuration the operator
    edited (one that is neither template) is left as it is.
    """
    want = INSTANCE_TEMPLATES["postgres" if os.environ.get("ECM_DAGSTER_PG_URL") else "sqlite"]
    if target.exists():
        have = target.read_bytes()
        if have == want.read_bytes():
            return
        if all(have != t.read_bytes() for t in INSTANCE_TEMPLATES.values()):
            return  # the operator's own configuration
    shutil.copy(want, target)


def _parse_day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


def materialise_day(
    day: dt.date, job_name: str = "daily", ops: dict | None = None
) -> tuple[bool, list[str]]:
    """Run a job for one partition in-process; return success and failure messages."""
    import dagster as dg

    from pipelines.definitions import defs

    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def(job_name)
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    if ops:
        run_config["ops"] = ops
    result = job.execute_in_process(
        partition_key=day.isoformat(),
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
    )
    errors: list[str] = []
    warnings_: list[str] = []
    for ev in result.all_events:
        if ev.is_step_failure and ev.step_failure_data is not None:
            data = ev.step_failure_data
            msg = (
                data.user_failure_data.description
                if data.user_failure_data is not None and data.user_failure_data.description
                else (_error_text(data.error) if data.error else "failed")
            )
            errors.append(f"{ev.step_key}: {msg}")
        if ev.event_type_value == "ASSET_CHECK_EVALUATION":
            ev_data = ev.event_specific_data
            if not ev_data.passed:
                text = ev_data.description or str(ev_data.metadata)
                if ev_data.severity == dg.AssetCheckSeverity.WARN:
                    warnings_.append(f"{ev_data.check_name}: {text}")
                else:
                    errors.append(f"check {ev_data.check_name} failed: {text}")
    for w in dict.fromkeys(warnings_):
        console.print(f"[yellow]warning: {escape(w)}[/yellow]")
    return result.success, errors


def _error_text(error: object) -> str:
    """The innermost cause of a step failure (the user's exception, not Dagster's wrapper)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return str(getattr(error, "message", error)).strip()


def _check_day(day: dt.date) -> None:
    from assets.resources import config_path
    from models.config import load_config
    from models.demo import DEFAULT_CONFIG  # noqa: F401

    c = load_config(config_path()).community
    last = c.last_day or dt.datetime.now(ZoneInfo(c.timezone)).date()
    if not c.first_day <= day <= last:
        console.print(
            f"[red]{day} is outside the community's days ({c.first_day} to {last}); "
            "see community.first_day and last_day in the configuration[/red]"
        )
        raise typer.Exit(2)


def _print_inbox(since: object) -> None:
    """Print what the run took from the inbox (files received since ``since``)."""
    from assets.resources import EcmResource

    df = (
        EcmResource()
        .warehouse()
        .query(
            "SELECT kind, file_name, status, rows, corrected_rows, corrected_days, error, "
            "coalesce(quarantined_rows, 0) AS quarantined_rows "
            "FROM inbox_files WHERE received_at >= ? ORDER BY received_at, file_name",
            [since],
        )
    )
    if df.empty:
        return
    ok = df[df["status"] == "processed"]
    console.print(
        f"inbox: {len(ok)} file(s) stored ({int(ok['rows'].sum()):,} rows), "
        f"{int((df['status'] == 'rejected').sum())} rejected"
    )
    for _, r in df.iterrows():
        if r["status"] == "rejected":
            console.print(f"[red]  rejected {escape(str(r['error']))}[/red]")
            continue
        if r["quarantined_rows"]:
            console.print(
                f"[yellow]  {escape(r['file_name'])}: {r['quarantined_rows']} readings held "
                "back (the same interval twice with different values; see "
                "quarantined_readings and the day's anomalies): those intervals are missing "
                "until a file delivers them once[/yellow]"
            )
        if r["corrected_rows"]:
            console.print(
                f"[yellow]  {escape(r['file_name'])} corrected {r['corrected_rows']} stored "
                f"readings on {r['corrected_days']}: re-run those days to settle them on the "
                "corrected data[/yellow]"
            )


def _report_paths(home: Path, day: dt.date) -> None:
    d = home / "reports" / day.isoformat()
    console.print(f"[bold]Plan report:[/bold] {d / 'plan.html'}")
    console.print(f"[bold]Member statements:[/bold] {d / 'statements' / 'index.html'}")
    console.print(f"[bold]Warehouse:[/bold] {home / 'warehouse.duckdb'}")


@app.command()
def run(date: str = typer.Option(..., "--date", help="local day YYYY-MM-DD")) -> None:
    """Materialise one local day: ingest, forecast, plan, allocate, flag and report."""
    day = _parse_day(date)
    home = _prepare_home()
    _check_day(day)
    import pandas as pd

    since = pd.Timestamp.now(tz="UTC").floor("s")
    with console.status(f"materialising {day} ..."):
        ok, errors = materialise_day(day)
    _print_inbox(since)
    if not ok:
        for e in errors:
            console.print(f"[red]{e}[/red]")
        raise typer.Exit(1)
    console.print(f"[green]{day} materialised[/green]")
    _report_paths(home, day)


@app.command()
def demo(date: str = typer.Option(None, "--date", help="default: the configured demo day")) -> None:
    """Run the whole pipeline on the bundled demo community and print where the reports are."""
    from assets.resources import config_path
    from models.config import load_config

    c = load_config(config_path()).community
    day = _parse_day(date) if date else (c.demo_day or c.last_day or c.first_day)
    console.print(f"ECM demo: {load_config(config_path()).community.name}, day {day}")
    run(date=day.isoformat())
    status()


@app.command()
def backfill(
    start: str = typer.Option(..., "--start", help="first local day YYYY-MM-DD"),
    end: str = typer.Option(..., "--end", help="last local day YYYY-MM-DD (inclusive)"),
    workers: int = typer.Option(
        1, "--workers", help="worker processes (1 to the CPU count); see pipelines/backfill.py"
    ),
) -> None:
    """Materialise every day from START to END, with a progress bar.

    With --workers K > 1 each day runs as four stages (ingest, forecast, settle, report) in
    K processes: ingest and forecasts in day order ahead of the rest, the plan and replay in
    day order (each day carries the previous day's battery state), settlement and report
    beside them. Same rows as one worker.
    """
    from pipelines.backfill import check_workers

    d0, d1 = _parse_day(start), _parse_day(end)
    if d1 < d0:
        raise typer.BadParameter("--end is before --start")
    try:
        check_workers(workers)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    _prepare_home()
    _check_day(d0)
    _check_day(d1)
    days = _days(d0, d1)
    import pandas as pd

    since = pd.Timestamp.now(tz="UTC").floor("s")
    if workers > 1:
        failed = _run_days_parallel(days, workers)
    else:
        failed = _run_days(days, "daily", "backfill")
    _print_inbox(since)
    for day, errors in failed:
        console.print(f"[red]{day} failed:[/red] " + "; ".join(errors))
    console.print(f"{len(days) - len(failed)} of {len(days)} days materialised")
    if failed:
        raise typer.Exit(1)


def _days(d0: dt.date, d1: dt.date) -> list[dt.date]:
    return [d0 + dt.timedelta(days=i) for i in range((d1 - d0).days + 1)]


def _progress(label: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{label}[/bold] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _run_days(days: list[dt.date], job_name: str, label: str) -> list[tuple[dt.date, list[str]]]:
    failed = []
    with _progress(label) as progress:
        task = progress.add_task("", total=len(days))
        for day in days:
            progress.update(task, description=str(day))
            ok, errors = materialise_day(day, job_name)
            if not ok:
                failed.append((day, errors))
            progress.advance(task)
    return failed


def _run_days_parallel(days: list[dt.date], workers: int) -> list[tuple[dt.date, list[str]]]:
    from pipelines.backfill import STAGES, backfill_parallel

    with _progress(f"backfill ({workers} workers)") as progress:
        bar = progress.add_task("", total=len(days) * len(STAGES))

        def done(task, ok):
            progress.update(bar, description=f"{task.day} {task.stage}")
            if task.stage in STAGES:  # train stages warm the cache of a forecast stage
                progress.advance(bar)

        errors = backfill_parallel(days, workers, done)
    return sorted(errors.items())


@app.command()
def evaluate(
    start: str = typer.Option(..., "--start", help="first local day YYYY-MM-DD"),
    end: str = typer.Option(..., "--end", help="last local day YYYY-MM-DD (inclusive)"),
) -> None:
    """Replay days on metered data under every controller, side by side, and report.

    Controllers: no_battery, self_consumption, ecm (the real-time layer that settles) and
    perfect_foresight; the state of charge carries from day to day. Writes realised_flows and
    evaluation, and reports/evaluation/<START>_<END>.html.
    """
    from assets.evaluate import missing_meter_data
    from assets.resources import EcmResource
    from models.evaluation_report import write_evaluation_report

    d0, d1 = _parse_day(start), _parse_day(end)
    if d1 < d0:
        raise typer.BadParameter("--end is before --start")
    home = _prepare_home()
    _check_day(d0)
    _check_day(d1)
    from assets.ingest import take_inbox

    ecm = EcmResource()
    cfg, wh = ecm.community(), ecm.warehouse()
    outcomes = take_inbox(ecm)
    if outcomes:
        _print_outcomes(outcomes)
    missing = missing_meter_data(wh, cfg, d0, d1)
    if missing:
        console.print(
            f"[red]refused: meter data missing on {len(missing)} day(s); nothing evaluated[/red]"
        )
        for day, mps in sorted(missing.items()):
            console.print(
                f"  {day}: " + escape("; ".join(mps[:8])) + (" ..." if len(mps) > 8 else "")
            )
        console.print("Ingest the missing days first (`ecm ingest days --start ... --end ...`).")
        raise typer.Exit(2)
    failed = _run_days(_days(d0, d1), "evaluate", "evaluate")
    for day, errors in failed:
        console.print(f"[red]{day} failed:[/red] " + escape("; ".join(errors)))
    if failed:
        raise typer.Exit(1)
    path, table = write_evaluation_report(wh, cfg, d0, d1, home / "reports" / "evaluation")
    out = Table(title=f"evaluation {d0} to {d1} (SoC carried; money in {cfg.community.currency})")
    for col in table.columns:
        out.add_column(str(col), justify="right")
    for _, row in table.iterrows():
        out.add_row(*[f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row])
    console.print(out)
    console.print(f"[bold]Evaluation report:[/bold] {path}")


@app.command()
def backtest(
    start: str = typer.Option(..., "--start", help="first local day scored YYYY-MM-DD"),
    end: str = typer.Option(..., "--end", help="last local day scored YYYY-MM-DD (inclusive)"),
    target: list[str] = typer.Option(
        None, "--target", help="load, pv or price (repeatable; default: all three)"
    ),
    models: str = typer.Option(
        None, "--models", help="comma-separated models (default: each target's registered set)"
    ),
) -> None:
    """Rolling-origin backtest: every day forecast as the daily run would have, then scored
    against the naive baselines (table `backtests`, MLflow experiment `ecm-backtests`)."""
    import uuid

    import pandas as pd

    from assets.queries import actuals
    from assets.resources import EcmResource, MlflowTracker, _git_commit, ecm_home
    from assets.tracking import log_backtest
    from models.backtest import run_backtest
    from models.forecasters import FORECASTERS
    from models.forecasting import TARGETS, InsufficientHistoryError, ModelCache

    d0, d1 = _parse_day(start), _parse_day(end)
    if d1 < d0:
        raise typer.BadParameter("--end is before --start")
    targets = tuple(target or TARGETS)
    for t in targets:
        if t not in TARGETS:
            raise typer.BadParameter(f"--target {t!r}: choose from {', '.join(TARGETS)}")
    chosen = tuple(m.strip() for m in models.split(",")) if models else None
    for m in chosen or ():
        if m not in FORECASTERS:
            raise typer.BadParameter(f"--models: {m!r} is not one of {', '.join(FORECASTERS)}")
    home = _prepare_home()
    _check_day(d0)
    _check_day(d1)
    ecm = EcmResource()
    cfg, wh = ecm.community(), ecm.warehouse()
    f = cfg.forecast
    lead = f.training_days + f.calibration_days + f.retrain_every_days + 30
    first = max(cfg.community.first_day, d0 - dt.timedelta(days=lead))
    missing = [d for d in _days(first, d1) if d not in wh.days_present("meter_readings", first, d1)]
    if missing:
        console.print(f"{len(missing)} day(s) without stored meter data: ingesting them first")
        ingest_days(start=first.isoformat(), end=d1.isoformat())
    act = actuals(wh, cfg, first, d1)
    wx = wh.query("SELECT * FROM weather WHERE day BETWEEN ? AND ?", [first, d1])
    try:
        result = run_backtest(
            act,
            wx,
            cfg,
            d0,
            d1,
            targets=targets,
            models=chosen,
            cache=ModelCache(home / "model_cache"),
        )
    except InsufficientHistoryError as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(2) from None
    backtest_id = f"{d0}_{d1}_{uuid.uuid4().hex[:8]}"
    out_dir = home / "reports" / "backtests" / backtest_id
    run_id = None
    try:
        run_id = log_backtest(
            MlflowTracker().uri(),
            ecm_home() / "mlflow" / "artifacts",
            result,
            git_commit=_git_commit(),
            out_dir=out_dir,
        )
    except Exception as exc:  # noqa: BLE001 - the scores are stored either way
        console.print(
            f"[yellow]MLflow unavailable, backtest not logged: {escape(str(exc))}[/yellow]"
        )
    rows = result.metrics.assign(
        backtest_id=backtest_id,
        run_at=pd.Timestamp.now(tz="UTC"),
        start_day=d0,
        end_day=d1,
        mlflow_run_id=run_id,
    )
    wh.upsert("backtests", rows, ["backtest_id", "target", "model", "scope", "key"])
    summary = result.summary()
    out_dir.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out_dir / "skill.csv", index=False)
    table = Table(title=f"backtest {d0} to {d1}: the daily champion against the best naive (MAE)")
    for col in ("target", "level", "champion MAE", "best naive", "naive MAE", "skill", "q10-q90"):
        table.add_column(col, justify="right")
    for r in summary.itertuples():
        table.add_row(
            r.target,
            r.level,
            f"{r.champion_mae:.4f}",
            r.best_naive,
            f"{r.naive_mae:.4f}",
            f"{r.skill_mae:+.1%}",
            "" if r.coverage_80 != r.coverage_80 else f"{r.coverage_80:.1%}",
        )
    console.print(table)
    all_models = result.metrics[result.metrics["scope"] == "all"]
    models_table = Table(title="every model, all rows")
    for col in ("target", "model", "MAE", "RMSE", "pinball", "CRPS", "q10-q90", "skill"):
        models_table.add_column(col, justify="right")
    for r in all_models.itertuples():
        models_table.add_row(
            r.target,
            r.model,
            f"{r.mae:.4f}",
            f"{r.rmse:.4f}",
            f"{r.pinball:.4f}",
            f"{r.crps:.4f}",
            f"{r.coverage_80:.1%}",
            "" if r.skill_mae != r.skill_mae else f"{r.skill_mae:+.1%}",
        )
    console.print(models_table)
    for t, errors in result.failed.items():
        for key, error in errors.items():
            console.print(f"[yellow]{t}: {key} failed to train: {escape(error)}[/yellow]")
    secs = ", ".join(
        f"{t} {s:.0f} s ({result.trained[t]} models trained)" for t, s in result.seconds.items()
    )
    console.print(f"Time: {secs}")
    console.print(f"Stored as backtest {backtest_id} (table backtests); plots: {out_dir}")


@ingest_app.command("days")
def ingest_days(
    start: str = typer.Option(..., "--start", help="first local day YYYY-MM-DD"),
    end: str = typer.Option(..., "--end", help="last local day YYYY-MM-DD (inclusive)"),
) -> None:
    """Ingest meter readings, prices and weather of days not yet stored, from the configured
    sources (days already stored are never touched)."""
    from assets.evaluate import missing_meter_data
    from assets.resources import EcmResource

    d0, d1 = _parse_day(start), _parse_day(end)
    _prepare_home()
    _check_day(d0)
    _check_day(d1)
    ecm = EcmResource()
    cfg, wh = ecm.community(), ecm.warehouse()
    todo = [d for d in _days(d0, d1) if d in missing_meter_data(wh, cfg, d, d)]
    stored = wh.days_present("meter_readings", d0, d1)
    todo = [d for d in todo if d not in stored]
    # each run also ingests the missing history days before its day: latest day first
    done: list[dt.date] = []
    while todo:
        day = todo.pop()
        failed = _run_days([day], "ingest", "ingest")
        if failed:
            console.print(f"[red]{day} failed:[/red] " + escape("; ".join(failed[0][1])))
            raise typer.Exit(1)
        done.append(day)
        stored = wh.days_present("meter_readings", d0, d1)
        todo = [d for d in todo if d not in stored]
    console.print(f"{len(done)} ingest run(s); days {d0} to {d1} stored")


@ingest_app.command("meters")
def ingest_meters(path: Path) -> None:
    """Validate one meter file (CSV, Parquet, Excel) and import it atomically, or change nothing.

    The file is copied into the inbox and taken like any delivered file (once, by SHA-256);
    readings it corrects are kept in meter_readings_history.
    """
    _ingest_file("meters", path)


@ingest_app.command("prices")
def ingest_prices(path: Path) -> None:
    """Validate one price file (ts, price_type, price_per_kwh[, unit]) and import it, or not."""
    _ingest_file("prices", path)


@ingest_app.command("weather")
def ingest_weather(path: Path) -> None:
    """Validate one weather file (observations, or forecasts with issue_time) and import it."""
    _ingest_file("weather", path)


@ingest_app.command("inbox")
def ingest_inbox() -> None:
    """Take every new file from the community's inbox now (as a run does first)."""
    from assets.ingest import take_inbox
    from assets.resources import EcmResource

    _prepare_home()
    outcomes = take_inbox(EcmResource())
    _print_outcomes(outcomes)
    if any(o.status == "rejected" for o in outcomes):
        raise typer.Exit(2)


def _print_outcomes(outcomes: list) -> None:
    table = Table(title="inbox")
    for col in ("kind", "file", "status", "rows", "corrected", "error"):
        table.add_column(col)
    for o in outcomes:
        table.add_row(
            o.kind,
            escape(o.file_name),
            o.status,
            str(o.rows),
            str(o.corrected_rows),
            escape(o.error or ""),
        )
    console.print(table if outcomes else "inbox: no new files")


def _ingest_file(kind: str, path: Path) -> None:
    from assets.ingest import take_inbox
    from assets.resources import EcmResource
    from models.meters import file_sha256

    _prepare_home()
    if not path.is_file():
        console.print(f"[red]refused:[/red] {escape(str(path))}: no such file")
        raise typer.Exit(2)
    ecm = EcmResource()
    target = ecm.inbox_dir() / kind / path.name
    tmp = target.with_name(target.name + ".part")
    shutil.copyfile(path, tmp)
    tmp.replace(target)
    sha = file_sha256(target)
    outcomes = take_inbox(ecm)
    mine = [o for o in outcomes if o.sha256 == sha]
    others = [o for o in outcomes if o.sha256 != sha]
    if others:
        _print_outcomes(others)
    o = mine[0]
    if o.status == "rejected":
        console.print(f"[red]refused:[/red] {escape(o.error or '')}")
        console.print(f"(moved to {escape(str(o.moved_to))}; see 'Onboard your community')")
        raise typer.Exit(2)
    if o.status == "duplicate":
        console.print(f"{path} was imported before (same SHA-256 {sha[:12]}...): nothing new")
        return
    console.print(f"imported {o.rows} rows from {path} (sha256 {sha[:12]}...)")
    if o.corrected_rows:
        days = ", ".join(d.isoformat() for d in o.corrected_days)
        console.print(
            f"[yellow]{o.corrected_rows} stored readings corrected on {days} (the replaced values "
            "are kept in meter_readings_history); re-run those days to settle them[/yellow]"
        )


@ingest_app.command("master")
def ingest_master(path: Path) -> None:
    """Import members, metering points and batteries from an Excel workbook (validated)."""
    from assets.resources import EcmResource, config_path
    from models.config import ConfigError, load_config, parse_config, read_master_data_excel
    from models.master_data import master_data_frames

    _prepare_home()
    try:
        members = read_master_data_excel(path)
        base = load_config(config_path()).model_dump(exclude={"members"})
        cfg = parse_config({**base, "members": members}, source=str(path))
    except ConfigError as err:
        console.print(f"[red]refused:[/red] {escape(str(err))}")
        raise typer.Exit(2) from None
    wh = EcmResource().warehouse()
    for name, df in master_data_frames(cfg).items():
        wh.replace(name, df)
    console.print(f"imported {len(cfg.members)} members from {path}")


@app.command()
def init(
    folder: Path = typer.Argument(..., help="folder of the new community"),
    name: str = typer.Option(..., "--name", help="display name of the community"),
    timezone: str = typer.Option(..., "--timezone", help="IANA time zone, e.g. Europe/Rome"),
    latitude: float = typer.Option(..., "--latitude", help="[deg] north"),
    longitude: float = typer.Option(..., "--longitude", help="[deg] east"),
    currency: str = typer.Option(..., "--currency", help="ISO 4217, e.g. EUR"),
    community_id: str = typer.Option(None, "--id", help="short id (default: from the name)"),
    first_day: str = typer.Option(None, "--first-day", help="first local day with data"),
) -> None:
    """Scaffold a community: community.yaml, master_data.xlsx and the inbox folders."""
    from models.config import ConfigError
    from models.onboarding import scaffold_community

    try:
        config = scaffold_community(
            folder,
            name=name,
            timezone=timezone,
            latitude=latitude,
            longitude=longitude,
            currency=currency,
            community_id=community_id,
            first_day=_parse_day(first_day) if first_day else None,
        )
    except ConfigError as err:
        console.print(f"[red]refused:[/red] {escape(str(err))}")
        raise typer.Exit(2) from None
    console.print(f"[green]community created:[/green] {config}")
    console.print(
        "Next: fill in the fields marked TO FILL IN, the workbook master_data.xlsx, and drop "
        f"files into {config.parent / 'inbox'}; then\n"
        f"  ECM_CONFIG={config} ecm backfill --start ... --end ...\n"
        f"(see {config.parent / 'README.txt'} and 'Onboard your community' in the README)"
    )


@app.command()
def bill(
    month: str = typer.Option(..., "--month", help="YYYY-MM"),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="bill unsettled days as missing (provisional)"
    ),
) -> None:
    """The month's member statements (HTML, PDF) and billing export (CSV, JSON); refused,
    naming the days, while days of the month are not settled."""
    try:
        first = dt.date.fromisoformat(f"{month}-01")
    except ValueError:
        raise typer.BadParameter(f"{month!r} is not YYYY-MM") from None
    home = _prepare_home()
    ok, errors = materialise_day(
        first, "bill", {"monthly_bills": {"config": {"allow_partial": allow_partial}}}
    )
    if not ok:
        for e in errors:
            console.print(f"[red]refused: {escape(e)}[/red]")
        raise typer.Exit(2)
    out = home / "reports" / "bills" / month
    console.print(f"[green]bills for {month}[/green]: {out}")
    console.print(f"  export: {out / f'billing_{month}.csv'} and billing_{month}.json")


@app.command("synth-community")
def synth_community_cmd(
    members: int = typer.Option(..., "--members", help="members, 1 to 5000"),
    out: Path = typer.Option(..., "--out", help="folder to write (config and inbox)"),
    interval_minutes: int = typer.Option(60, "--interval-minutes", help="60 or 15"),
    days: int = typer.Option(150, "--days", help="days of data, ending 2017-07-31"),
    seed: int = typer.Option(0, "--seed", help="seed of every draw"),
) -> None:
    """Write a synthetic community of N members built from the CityLearn homes (documented
    noise, time shifts, PV and battery sizes; see models/synth.py) for scale work."""
    from models.synth import SynthError, synth_community

    try:
        with console.status(f"writing {members} members ..."):
            s = synth_community(members, out, interval_minutes, days, seed)
    except SynthError as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(2) from None
    console.print(
        f"[green]{s.members} members[/green], {s.interval_minutes}-minute meters, "
        f"{s.first_day}..{s.last_day}: {s.meter_rows:,} readings in {len(s.files)} files"
    )
    console.print(f"Run it: ECM_CONFIG={s.config.resolve()} ecm run --date {s.last_day}")


@bench_app.command("dispatch")
def bench_dispatch_cmd(
    members: int = typer.Option(..., "--members", help="members, each with a battery"),
    intervals: int = typer.Option(96, "--intervals", help="intervals in the day"),
    scenarios: int = typer.Option(10, "--scenarios", help="load and PV scenarios"),
    seed: int = typer.Option(0, "--seed", help="seed of the synthetic problem"),
) -> None:
    """Build and solve a synthetic day-ahead dispatch LP (optimisation/benchmarks.py); print
    members, intervals, scenarios, variables, constraints, build_s, solve_s, total_s, status
    and objective as one JSON line."""
    import json

    from optimisation.benchmarks import bench_dispatch

    if min(members, intervals, scenarios) < 1:
        raise typer.BadParameter("--members, --intervals and --scenarios must be at least 1")
    print(json.dumps(bench_dispatch(members, intervals, scenarios, seed)))


@study_app.command("italian-rec")
def study_italian_rec(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object, nothing else"),
    out: Path = typer.Option(
        None, "--out", help="report folder (default: $ECM_HOME/reports/studies/italian-rec)"
    ),
) -> None:
    """The Italian renewable-energy-community study: ten Naples apartments on a summer day,
    air conditioners and batteries without and with optimisation (scenarios 0 to 3);
    writes the scenarios table and an HTML report (models/italian_rec.py documents the data)."""
    import json

    from pyomo.common.tee import capture_output

    from assets.resources import ecm_home
    from models import italian_rec as rec
    from models.study_report import render_study
    from optimisation.study import run_study

    with capture_output(capture_fd=True):  # HiGHS's banner; stdout stays the JSON's
        data = rec.study_data()
        results = run_study(data, **rec.SETTINGS)
        folder = out or ecm_home() / "reports" / "studies" / "italian-rec"
        report = render_study(
            folder,
            results,
            title="Italian renewable energy community: air conditioners and batteries",
            place="Naples",
            day=str(rec.DAY),
            tz=rec.TZ,
            pv_kwp=rec.PV_KWP,
            n_scenarios=len(data.probabilities),
            band=(rec.HVAC["t_min_c"], rec.HVAC["t_max_c"]),
            notes="Data: models/italian_rec.py (built offline from documented parts).",
        )
    rows = [r.row() for r in results]
    if as_json:
        print(json.dumps({"scenarios": rows}))
        return
    table = Table(title="ecm study italian-rec (EUR, expected over the day's scenarios)")
    for col in rows[0]:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*(str(v) for v in r.values()))
    console.print(table)
    console.print(f"Report: {report}")


@bench_app.command("flexible")
def bench_flexible_cmd() -> None:
    """Plan the study's ten Naples apartments with air conditioners, batteries and three EVs,
    96 quarter-hours and 10 load and PV scenarios, in one LP; print one JSON line (issue #9's
    speed target: 10 s on 2 cores)."""
    import json

    from pyomo.common.tee import capture_output

    from models import italian_rec as rec
    from optimisation.benchmarks import bench_flexible

    with capture_output(capture_fd=True):
        out = bench_flexible(
            rec.study_data(pv_scenarios=rec.PV_SCENARIOS_10),
            rec.EVS,
            import_price=rec.IMPORT_PRICE,
            export_price=rec.EXPORT_PRICE,
            incentive=rec.INCENTIVE,
            contracted_kw=rec.CONTRACTED_KW,
            charger_kw=rec.EV_CHARGER_KW,
        )
    print(json.dumps(out))


@bench_app.command("allocation")
def bench_allocation_cmd(
    players: int = typer.Option(..., "--players", help="number of players"),
    intervals: int = typer.Option(24, "--intervals", help="intervals in the day"),
    permutations: int = typer.Option(2000, "--permutations", help="sampled permutations"),
) -> None:
    """Settle a synthetic community of N players; print players, method, seconds (and, for
    N <= 20, the sampled values' largest error against exact) as one JSON line."""
    import json

    from optimisation.game import bench_allocation

    print(json.dumps(bench_allocation(players, intervals, permutations)))


@policy_app.command("status")
def policy_status() -> None:
    """Show the fairness policy in force, its hash and whether it is approved."""
    import json

    from assets.resources import EcmResource
    from models.ledger import policy_diff, policy_document, policy_hash
    from models.settlement_store import approvals

    _prepare_home()
    ecm = EcmResource()
    cfg, wh = ecm.community(), ecm.warehouse()
    doc = policy_document(cfg)
    h = policy_hash(doc)
    console.print(f"policy {h[:16]}...: {escape(json.dumps(doc, sort_keys=True))}")
    df = approvals(wh)
    hit = df[df["policy_hash"] == h]
    if len(hit):
        r = hit.iloc[-1]
        console.print(f"[green]approved[/green]: {r['reference']} by {r['approved_by']}")
    elif df.empty:
        console.print(
            "no approval recorded yet: the configuration's approval is recorded at "
            "the first settlement"
        )
    else:
        last = df.iloc[-1]
        for line in policy_diff(json.loads(last["policy_json"]), doc):
            console.print(f"[yellow]changed since the last approval: {escape(line)}[/yellow]")
        console.print("approve with: ecm policy approve --by NAME --reference REF")
        raise typer.Exit(1)


@policy_app.command("approve")
def policy_approve(
    by: str = typer.Option(..., "--by", help="who approved it (e.g. the general assembly)"),
    reference: str = typer.Option(..., "--reference", help="minutes or decision id"),
    on: str = typer.Option(None, "--on", help="date of the decision (default today)"),
) -> None:
    """Record the approval of the fairness policy now in the configuration (in the ledger)."""
    from assets.resources import EcmResource
    from models.ledger import policy_document, policy_hash
    from models.settlement_store import PolicyNotApproved, record_approval

    _prepare_home()
    ecm = EcmResource()
    cfg, wh = ecm.community(), ecm.warehouse()
    doc = policy_document(cfg)
    h = policy_hash(doc)
    try:
        record_approval(
            wh,
            doc,
            h,
            approved_by=by,
            reference=reference,
            approved_on=_parse_day(on) if on else dt.date.today(),
            source="ecm policy approve",
        )
    except PolicyNotApproved as err:
        console.print(f"{escape(str(err))}: nothing to record")
        return
    console.print(f"[green]approved[/green] policy {h[:16]}... ({reference} by {by})")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute every settlement version and approval from the stored rows and check the
    hash chain; exit 1 naming the first broken link."""
    from assets.resources import EcmResource
    from models.settlement_store import verify

    _prepare_home()
    n, problems = verify(EcmResource().warehouse())
    if problems:
        console.print(f"[red]audit ledger broken[/red] ({n} entries): {escape(problems[0])}")
        for p in problems[1:10]:
            console.print(f"  {escape(p)}")
        raise typer.Exit(1)
    console.print(f"[green]audit ledger intact[/green]: {n} entries verified")


@app.command()
def status() -> None:
    """Row counts of every warehouse table."""
    from assets.resources import EcmResource

    home = _prepare_home()
    counts = EcmResource().warehouse().row_counts()
    table = Table(title=f"warehouse {home / 'warehouse.duckdb'}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, str(n))
    console.print(table)


@app.command()
def dev(port: int = typer.Option(3000, help="port of the Dagster UI")) -> None:
    """Open the Dagster UI on localhost (127.0.0.1 only)."""
    _prepare_home()
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "pipelines.definitions",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    console.print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C to stop)")
    raise typer.Exit(subprocess.call(cmd, cwd=REPO))


if __name__ == "__main__":
    app()
