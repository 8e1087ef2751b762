"""A materialised ECM home for the pipeline tests (imported as `materialised`, like
`warehouse_compare`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def materialised_home(home: Path, day: dt.date, config: Path | None = None) -> Iterator[Path]:
    """An ECM home with ``day`` materialised through Dagster (the whole daily job), for a
    module's tests; ``ECM_HOME``, ``DAGSTER_HOME`` and ``ECM_CONFIG`` are restored after."""
    from pipelines.cli import _prepare_home, materialise_day

    keys = ("ECM_HOME", "DAGSTER_HOME", "ECM_CONFIG")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["ECM_HOME"] = str(home)
    if config is not None:
        os.environ["ECM_CONFIG"] = str(config)
    try:
        _prepare_home()
        ok, errors = materialise_day(day)
        assert ok, errors
        yield home
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
