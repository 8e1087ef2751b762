"""Parallel backfill: the days of a range in K worker processes, in the order the asset graph
requires.

A day runs in four stages, each a Dagster job of its own (``pipelines/definitions.py``):

- ``ingest``: the inbox and the configured tariffs. Days run one after another (the inbox is
  taken in day order, as a sequential backfill takes it).
- ``train:<target>`` (only on a day that trains: the backfill's first day, which may find
  none of its 28-day window's models cached, and each day on the weekly training grid): fit
  and cache the models that day's forecasts need for one target
  (``assets.forecast.train_models``), the three targets in separate processes side by side.
  A day needs its own ingest. Nothing but the model cache is written, and the forecasts
  stage then reads the very same fits from the cache (same inputs, same fingerprint), so
  the rows do not change; without it the first day's forecasts train about 60 models on
  one core while the other workers wait.
- ``forecast``: forecasts and scenarios. A day needs only its own ingest and the ones before
  it (forecasts use data known at their issue time; models sit on a fixed weekly grid), and
  on a training day its train stages. They start in day order; a day waits for the previous
  one to finish only where that one may still train (a training day whose train stages did
  not all succeed): two days training the same origin side by side would do the work twice.
  The other days read cached models and run side by side.
- ``settle``: plan and closed-loop replay. A day needs its own forecast stage and the
  previous day's settle stage (the real-time layer's state of charge carried over: the
  ``realised_flows`` self-dependency declared on the assets).
- ``report``: settlement, anomalies and report. A day needs its own settle stage, every
  earlier forecast stage (the report reads 28 days of issued forecasts, the anomalies
  yesterday's) and the previous day's report stage (the audit ledger is appended in day
  order).

The settle stages are the critical path and always go first; the other workers run ingest,
forecast and report stages beside them. Each stage reads what a sequential run would have
stored when it ran, so a parallel backfill writes the same rows as a sequential one (tested).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

STAGES: tuple[str, ...] = ("ingest", "forecast", "settle", "report")
"""Stages of a day, each the Dagster job of that name, in dependency order."""
INGEST_AHEAD = 2
"""Ingest stages ahead of training: those of the next this many days still to forecast."""
TRAIN = "train:"
"""Prefix of a training stage, ``train:<target>``: models fitted and cached, not a job."""


@dataclass(frozen=True, order=True)
class Task:
    """One stage of one day."""

    day: dt.date
    stage: str


def train_tasks(
    days: Sequence[dt.date],
    trains: Callable[[dt.date], bool] | None,
    targets: Sequence[str],
) -> dict[dt.date, list[Task]]:
    """The ``train:<target>`` stages of each training day (none without ``targets``)."""
    if trains is None or not targets:
        return {}
    return {d: [Task(d, f"{TRAIN}{t}") for t in targets] for d in days if trains(d)}


def ready(
    days: Sequence[dt.date],
    finished: dict[Task, bool],
    running: set[Task],
    trains: Callable[[dt.date], bool] | None = None,
    train_targets: Sequence[str] = (),
) -> list[Task]:
    """Tasks whose dependencies are finished, in the order to start them.

    Parameters
    ----------
    days : sequence of date
        The backfill's days, in order.
    finished : dict of Task to bool
        Tasks finished so far and whether they succeeded.
    running : set of Task
        Tasks running now.
    trains : callable, optional
        Whether a day's forecast stage may train models (the first day of a backfill, a
        training origin). The next day's forecast waits for such a stage to finish, so that
        a model is not trained twice side by side; after a stage that only reads cached
        models it may start as soon as that one has started. Default: every day trains
        (forecast stages one at a time).
    train_targets : sequence of str, optional
        Targets trained by ``train:<target>`` stages ahead of each training day's forecast
        (default none: the forecast stage trains).

    Returns
    -------
    list of Task
        Settle stages first (the critical path), then report (a chain of its own, which
        would otherwise be left to the end with one worker busy), the ingest stages of the
        next :data:`INGEST_AHEAD` days to forecast (short, and every later stage of their day
        waits for them), train, forecast, then the other ingest stages; earliest day first.
        A stage whose own day failed an earlier stage is not returned: see :func:`skipped`.
    """
    out: dict[str, list[Task]] = {s: [] for s in (*STAGES, TRAIN)}
    gone = skipped(days, finished)
    training = train_tasks(days, trains, train_targets)

    def still_trains(day: dt.date) -> bool:
        """Whether the forecast stage of ``day`` may train (a training day whose train
        stages did not all succeed)."""
        if trains is None:
            return True
        if not trains(day):
            return False
        return day not in training or not all(finished.get(t) for t in training[day])

    for i, d in enumerate(days):
        prev = days[i - 1] if i else None
        for task in training.get(d, []):
            if task not in finished and task not in running:
                if finished.get(Task(d, "ingest")) is True:
                    out[TRAIN].append(task)
        for stage in STAGES:
            task = Task(d, stage)
            if task in finished or task in running:
                continue
            if stage == "ingest":
                ok = prev is None or Task(prev, "ingest") in finished
            elif stage == "forecast":
                before = Task(prev, "forecast") if prev is not None else None
                ok = (
                    finished.get(Task(d, "ingest")) is True
                    and all(t in finished for t in training.get(d, []))
                    and (
                        before is None
                        or before in finished
                        or before in gone
                        or (before in running and not still_trains(prev))
                    )
                )
            else:  # settle after its forecast, report after its settle; each in day order
                before = "forecast" if stage == "settle" else "settle"
                ok = finished.get(Task(d, before)) is True and (
                    prev is None or Task(prev, stage) in finished or Task(prev, stage) in gone
                )
            if ok:
                out[stage].append(task)
    # an ingest the next forecasts wait for goes before training; the others after it, so
    # that a training day's train stages are not held up by ingests far ahead
    pending = [d for d in days if Task(d, "forecast") not in finished]
    soon = set(pending[:INGEST_AHEAD])
    near = [t for t in out["ingest"] if t.day in soon]
    later = [t for t in out["ingest"] if t.day not in soon]
    return [*out["settle"], *out["report"], *near, *out[TRAIN], *out["forecast"], *later]


def skipped(days: Sequence[dt.date], finished: dict[Task, bool]) -> set[Task]:
    """Stages that will not run because an earlier stage of their day failed."""
    out = set()
    for d in days:
        failed = False
        for stage in STAGES:
            task = Task(d, stage)
            if failed:
                out.add(task)
            elif finished.get(task) is False:
                failed = True
    return out


Runner = Callable[[str, dt.date], tuple[bool, list[str]]]
"""``run(stage, day) -> (success, error messages)``."""


def run_parallel(
    days: Sequence[dt.date],
    workers: int,
    submit_pool: cf.Executor,
    run: Runner,
    on_done: Callable[[Task, bool], None] | None = None,
    trains: Callable[[dt.date], bool] | None = None,
    train_targets: Sequence[str] = (),
) -> dict[dt.date, list[str]]:
    """Run every stage of ``days`` on ``submit_pool`` (``workers`` at a time); ``trains`` and
    ``train_targets`` as in :func:`ready`. A train stage that fails does not stop its day
    and is not reported: the forecast stage then trains itself and reports what went wrong,
    as in a sequential run.

    Returns
    -------
    dict of date to list of str
        Days with a failed stage, with its errors (later stages of such a day are skipped).
    """
    finished: dict[Task, bool] = {}
    running: dict[cf.Future, Task] = {}
    errors: dict[dt.date, list[str]] = {}
    n_train = sum(len(t) for t in train_tasks(days, trains, train_targets).values())
    total = len(days) * len(STAGES) + n_train
    while len(finished) + len(skipped(days, finished)) < total:
        for task in ready(days, finished, set(running.values()), trains, train_targets):
            if len(running) >= workers:
                break
            running[submit_pool.submit(run, task.stage, task.day)] = task
        if not running:
            break  # nothing can start: every remaining stage is skipped
        done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
        for fut in done:
            task = running.pop(fut)
            try:
                ok, errs = fut.result()
            except Exception as exc:  # noqa: BLE001 - a crashed worker fails its task
                ok, errs = False, [f"{type(exc).__name__}: {exc}"]
            finished[task] = ok
            if not ok and not task.stage.startswith(TRAIN):
                errors.setdefault(task.day, []).extend(f"{task.stage}: {e}" for e in errs)
            if on_done is not None:
                on_done(task, ok)
    return errors


def check_workers(workers: int) -> None:
    """Refuse a worker count below 1 or above the CPU count, with the reason."""
    cpus = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if workers > cpus:
        raise ValueError(
            f"--workers {workers} is above this machine's {cpus} CPUs: the stages are "
            "CPU-bound, more workers than CPUs only slows every day down"
        )


def _init_worker(env: dict[str, str]) -> None:
    os.environ.update(env)


def _warm() -> None:
    """Import what every stage needs (Dagster, the definitions, MLflow; about 3 s), so that
    the workers do it side by side at the start instead of when their first task arrives."""
    import assets.tracking  # noqa: F401
    import pipelines.cli  # noqa: F401
    import pipelines.definitions  # noqa: F401


def _run_stage(stage: str, day: dt.date) -> tuple[bool, list[str]]:
    if stage.startswith(TRAIN):
        from assets.forecast import train_models
        from assets.resources import EcmResource

        try:
            train_models(EcmResource(), day, stage.removeprefix(TRAIN))
        except Exception as exc:  # noqa: BLE001 - the forecast stage retrains and reports it
            return False, [f"{type(exc).__name__}: {exc}"]
        return True, []
    from pipelines.cli import materialise_day

    return materialise_day(day, stage)


def process_pool(workers: int) -> cf.ProcessPoolExecutor:
    """Worker processes (spawned, with this process's ``ECM_*`` and ``DAGSTER_HOME``)."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("ECM_", "DAGSTER_"))}
    return cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(env,),
    )


def training_days(days: Sequence[dt.date], every_days: int) -> Callable[[dt.date], bool]:
    """``trains`` of :func:`ready`: the first day (it may find no model of its 28-day window
    cached) and every day on the weekly training grid (it trains its own origin)."""
    from models.forecasting import training_origin

    first = min(days) if days else None
    return lambda d: d == first or training_origin(d, every_days) == d


def backfill_parallel(
    days: Sequence[dt.date],
    workers: int,
    on_done: Callable[[Task, bool], None] | None = None,
) -> dict[dt.date, list[str]]:
    """Backfill ``days`` in ``workers`` processes; return the days that failed, with errors."""
    from assets.resources import EcmResource
    from models.forecasting import TARGETS

    check_workers(workers)
    with process_pool(workers) as pool:
        # one warm-up task per worker: all of them start now and import side by side
        for f in [pool.submit(_warm) for _ in range(workers)]:
            f.result()
        every = EcmResource().community().forecast.retrain_every_days
        return run_parallel(
            days, workers, pool, _run_stage, on_done, training_days(days, every), TARGETS
        )
