"""Parallel backfill: the dependency rules of the scheduler, and a real run against one worker."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import threading

import pytest

from pipelines.backfill import (
    STAGES,
    TRAIN,
    Task,
    check_workers,
    ready,
    run_parallel,
    skipped,
)

DAYS = [dt.date(2017, 6, 1) + dt.timedelta(days=i) for i in range(5)]


def test_first_tasks_are_the_first_ingest_only() -> None:
    assert ready(DAYS, {}, set()) == [Task(DAYS[0], "ingest")]


def test_settle_goes_first_and_waits_for_the_previous_day() -> None:
    finished = {Task(d, s): True for d in DAYS[:2] for s in ("ingest", "forecast")}
    finished[Task(DAYS[0], "settle")] = True
    got = ready(DAYS, finished, set())
    assert got[0] == Task(DAYS[1], "settle")
    assert Task(DAYS[2], "ingest") in got
    # day 3 cannot settle before day 2 has; its forecast needs its ingest
    assert Task(DAYS[2], "settle") not in got and Task(DAYS[2], "forecast") not in got


def test_forecasts_run_side_by_side_only_after_a_day_that_does_not_train() -> None:
    finished = {Task(d, "ingest"): True for d in DAYS}
    running = {Task(DAYS[1], "forecast")}
    finished[Task(DAYS[0], "forecast")] = True
    # day 2 trains nothing: day 3 may forecast beside it; by default it waits
    assert Task(DAYS[2], "forecast") in ready(DAYS, finished, running, _trains)
    assert Task(DAYS[2], "forecast") not in ready(DAYS, finished, running)
    # day 4 trains (a training origin): day 5 waits for it to finish
    running = {Task(DAYS[3], "forecast")}
    finished.update({Task(d, "forecast"): True for d in DAYS[:3]})
    assert Task(DAYS[4], "forecast") not in ready(DAYS, finished, running, _trains)


def test_training_days_are_the_first_day_and_the_grid() -> None:
    from models.forecasting import training_origin
    from pipelines.backfill import training_days

    days = [dt.date(2017, 4, 10) + dt.timedelta(days=i) for i in range(14)]
    trains = training_days(days[2:], 7)
    got = [d for d in days[2:] if trains(d)]
    assert got[0] == days[2]
    assert got[1:] == [d for d in days[3:] if training_origin(d, 7) == d]
    assert len(got) == 2


def test_a_failed_stage_skips_the_rest_of_its_day_only() -> None:
    finished = {Task(DAYS[0], "ingest"): True, Task(DAYS[0], "forecast"): False}
    assert skipped(DAYS, finished) == {Task(DAYS[0], "settle"), Task(DAYS[0], "report")}
    finished[Task(DAYS[1], "ingest")] = True
    finished[Task(DAYS[1], "forecast")] = True
    # day 2 settles although day 1 could not (it starts from the configured state of charge,
    # as a sequential backfill would)
    assert Task(DAYS[1], "settle") in ready(DAYS, finished, set())


def _trains(day: dt.date) -> bool:
    return DAYS.index(day) in (0, 3)


def _order_respected(log: list[tuple[str, dt.date, str]], trains=None, targets=()) -> None:
    """Every stage started only after its dependencies ended (a forecast after the previous
    one started, and ended where that one trains itself; after its own train stages)."""
    ended: set[tuple[dt.date, str]] = set()
    started: set[tuple[dt.date, str]] = set()
    for event, day, stage in log:
        if event == "end":
            ended.add((day, stage))
            continue
        started.add((day, stage))
        i = DAYS.index(day)
        if stage == "ingest" and i:
            assert (DAYS[i - 1], "ingest") in ended
        if stage.startswith(TRAIN):
            assert (day, "ingest") in ended
        if stage == "forecast":
            assert (day, "ingest") in ended
            if trains is not None and trains(day):
                assert all((day, f"{TRAIN}{t}") in ended for t in targets)
            if i and (trains is None or (trains(DAYS[i - 1]) and not targets)):
                assert (DAYS[i - 1], "forecast") in ended
            elif i:
                assert (DAYS[i - 1], "forecast") in started
        if stage == "settle":
            assert (day, "forecast") in ended
            assert all((d, "forecast") in ended for d in DAYS[:i])
            if i:
                assert (DAYS[i - 1], "settle") in ended
        if stage == "report":
            assert (day, "settle") in ended
            assert all((d, "forecast") in ended for d in DAYS[: i + 1])
            if i:
                assert (DAYS[i - 1], "report") in ended


@pytest.mark.parametrize(
    ("trains", "targets"), [(None, ()), (_trains, ()), (_trains, ("load", "pv", "price"))]
)
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_run_parallel_respects_every_dependency_and_runs_everything(
    workers: int, trains, targets
) -> None:
    log: list[tuple[str, dt.date, str]] = []
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def run(stage: str, day: dt.date) -> tuple[bool, list[str]]:
        with lock:
            log.append(("start", day, stage))
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.002 * (1 + DAYS.index(day) % 3))
        with lock:
            running[0] -= 1
            log.append(("end", day, stage))
        return True, []

    with cf.ThreadPoolExecutor(workers) as pool:
        errors = run_parallel(DAYS, workers, pool, run, trains=trains, train_targets=targets)
    assert errors == {}
    train = [(d, f"{TRAIN}{t}") for d in DAYS if trains is not None and trains(d) for t in targets]
    assert sorted((d, s) for e, d, s in log if e == "end") == sorted(
        [(d, s) for d in DAYS for s in STAGES] + train
    )
    assert peak[0] <= workers
    _order_respected(log, trains, targets)


def test_train_stages_come_after_the_ingest_and_free_the_next_forecast() -> None:
    targets = ("load", "pv")
    finished = {Task(DAYS[0], "ingest"): True}
    got = ready(DAYS, finished, set(), _trains, targets)
    # the day's ingest before its train stages (every later stage waits for the ingests)
    assert got == [Task(DAYS[1], "ingest"), Task(DAYS[0], "train:load"), Task(DAYS[0], "train:pv")]
    finished[Task(DAYS[1], "ingest")] = True
    finished[Task(DAYS[0], "train:load")] = True
    assert Task(DAYS[0], "forecast") not in ready(
        DAYS, finished, {Task(DAYS[0], "train:pv")}, _trains, targets
    )
    finished[Task(DAYS[0], "train:pv")] = True
    running = {Task(DAYS[0], "forecast")}
    # day 1's models are cached: day 2 forecasts beside it
    assert Task(DAYS[1], "forecast") in ready(DAYS, finished, running, _trains, targets)
    # a train stage that failed leaves the training to day 1's forecast: day 2 waits
    finished[Task(DAYS[0], "train:pv")] = False
    assert Task(DAYS[1], "forecast") not in ready(DAYS, finished, running, _trains, targets)


def test_a_failed_train_stage_is_not_an_error_of_its_day() -> None:
    def run(stage: str, day: dt.date) -> tuple[bool, list[str]]:
        if stage.startswith(TRAIN):
            return False, ["out of memory"]
        return True, []

    ran: list[Task] = []
    with cf.ThreadPoolExecutor(2) as pool:
        errors = run_parallel(DAYS, 2, pool, run, lambda t, ok: ran.append(t), _trains, ("load",))
    assert errors == {}
    assert {Task(d, s) for d in DAYS for s in STAGES} <= set(ran)
    assert Task(DAYS[3], "train:load") in ran


def test_failures_are_reported_and_their_days_later_stages_skipped() -> None:
    def run(stage: str, day: dt.date) -> tuple[bool, list[str]]:
        if day == DAYS[1] and stage == "forecast":
            return False, ["model exploded"]
        if day == DAYS[3] and stage == "settle":
            raise RuntimeError("worker died")
        return True, []

    ran: list[Task] = []
    with cf.ThreadPoolExecutor(2) as pool:
        errors = run_parallel(DAYS, 2, pool, run, lambda t, ok: ran.append(t))
    assert errors == {
        DAYS[1]: ["forecast: model exploded"],
        DAYS[3]: ["settle: RuntimeError: worker died"],
    }
    assert Task(DAYS[1], "settle") not in ran
    assert Task(DAYS[4], "settle") in ran  # the next day still settles


def test_worker_counts_outside_one_to_the_cpus_are_refused(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    check_workers(1)
    check_workers(2)
    with pytest.raises(ValueError, match="at least 1"):
        check_workers(0)
    with pytest.raises(ValueError, match="above this machine's 2 CPUs"):
        check_workers(3)
