"""Dagster resources: the ECM home (warehouse, config, reports), weather sources, MLflow.

Each external source is an interface with implementations, as in Dagster's example
projects: ``WeatherSource`` -> ``OpenMeteoWeatherSource`` (live) or ``NoWeatherSource``
(weather files come through the inbox); ``Feed`` -> ``NoFeed`` (files arrive by themselves)
or ``CityLearnFeed`` (the demo's simulated distributor delivering the bundled data as files).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from models import demo
from models.config import CommunityConfig, load_config
from models.warehouse import Warehouse

REPO_ROOT = Path(__file__).resolve().parents[1]


def ecm_home() -> Path:
    """``$ECM_HOME`` (read at call time, not import).

    Default: ``.ecm/`` beside the community's ``$ECM_CONFIG`` file, so each community keeps
    its own warehouse; ``.ecm/`` in the repository for the bundled demo.
    """
    if os.environ.get("ECM_HOME"):
        return Path(os.environ["ECM_HOME"]).resolve()
    if os.environ.get("ECM_CONFIG"):
        return (Path(os.environ["ECM_CONFIG"]).resolve().parent / ".ecm").resolve()
    return (REPO_ROOT / ".ecm").resolve()


def config_path() -> Path:
    """``$ECM_CONFIG``, default the bundled demo community."""
    return Path(os.environ.get("ECM_CONFIG") or demo.DEFAULT_CONFIG).resolve()


_SCHEMA_CHECKED: set[tuple[str, int]] = set()
"""Warehouse files (path, inode) whose schema this process has checked."""


def _file_key(path: Path) -> tuple[str, int] | None:
    """(path, inode) of a file, None while it does not exist (a recreated file is new)."""
    try:
        return str(path.resolve()), path.stat().st_ino
    except OSError:
        return None


class EcmResource(dg.ConfigurableResource):
    """Where ECM keeps everything it writes, and the community configuration.

    ``home`` and ``config`` default to ``$ECM_HOME`` / ``$ECM_CONFIG`` (see :func:`ecm_home`).
    """

    home: str | None = None
    config: str | None = None

    def home_path(self) -> Path:
        """The ECM home folder."""
        p = Path(self.home).resolve() if self.home else ecm_home()
        p.mkdir(parents=True, exist_ok=True)
        return p

    def community(self) -> CommunityConfig:
        """The validated community configuration."""
        return load_config(self.config or config_path())

    def warehouse(self) -> Warehouse:
        """The DuckDB warehouse, schema created if needed (checked once per process and
        file: every asset asks for it, and each check is a connection)."""
        wh = Warehouse(self.home_path() / "warehouse.duckdb")
        if _file_key(wh.path) not in _SCHEMA_CHECKED:
            wh.init_schema()
            _SCHEMA_CHECKED.add(_file_key(wh.path))
        return wh

    def inbox_dir(self) -> Path:
        """The community's inbox: ``inbox_dir`` of the configuration (relative to its file),
        else ``$ECM_HOME/inbox``."""
        cfg = self.community()
        from models.inbox import inbox_folders

        p = cfg.resolve(cfg.inbox_dir) if cfg.inbox_dir else self.home_path() / "inbox"
        inbox_folders(p)
        return p.resolve()

    def reports_dir(self) -> Path:
        """Folder of the HTML reports."""
        p = self.home_path() / "reports"
        p.mkdir(parents=True, exist_ok=True)
        return p


class WeatherSource(dg.ConfigurableResource):
    """Interface: weather forecasts fetched live for valid times in [start, end).

    Files (observations and recorded forecasts) come through the inbox instead.
    """

    def fetch(
        self, config: CommunityConfig, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Rows of the weather contract (without ``day``)."""
        raise NotImplementedError


class NoWeatherSource(WeatherSource):
    """Nothing to fetch: weather comes from inbox files, or there is none."""

    def fetch(
        self, config: CommunityConfig, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """No rows."""
        return pd.DataFrame()


class OpenMeteoWeatherSource(WeatherSource):
    """Live Open-Meteo forecasts through openmeteo-requests, cached, with retries and timeout.

    Open-Meteo returns the forecast as of now, so it is only meaningful for the coming days;
    the issue time stored is the time of the request.
    """

    cache_path: str | None = None
    timeout_s: float = 10.0
    retries: int = 5
    url: str | None = None
    """the forecast endpoint; None: Open-Meteo's public API (a self-hosted instance works too)"""

    def fetch(
        self, config: CommunityConfig, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Forecast rows from the live API."""
        from models.openmeteo import get_openmeteo_forecast, make_session

        session = make_session(
            self.cache_path or str(ecm_home() / "openmeteo-cache"), retries=self.retries
        )
        return get_openmeteo_forecast(
            config.community.latitude,
            config.community.longitude,
            start,
            end,
            session=session,
            timeout_s=self.timeout_s,
            **({"url": self.url} if self.url else {}),
        )


class Feed(dg.ConfigurableResource):
    """Interface: a source that delivers files into the inbox (a distributor's push, an SFTP
    pick-up). It delivers only what is not stored yet, and never writes to the warehouse."""

    def deliver(
        self,
        config: CommunityConfig,
        inbox: Path,
        start: pd.Timestamp,
        end: pd.Timestamp,
        warehouse: Warehouse,
    ) -> list[Path]:
        """Write files for [start, end) into the inbox; return them."""
        return []


class NoFeed(Feed):
    """Files arrive in the inbox by themselves (the usual case)."""


class CityLearnFeed(Feed):
    """The demo's simulated distributor: the bundled CityLearn 2022 data, as files."""

    def deliver(
        self,
        config: CommunityConfig,
        inbox: Path,
        start: pd.Timestamp,
        end: pd.Timestamp,
        warehouse: Warehouse,
    ) -> list[Path]:
        """See :func:`models.demo.deliver`."""
        tz = config.community.timezone
        first = start.tz_convert(tz).date()
        last = (end - pd.Timedelta(seconds=1)).tz_convert(tz).date()
        pairs = warehouse.query(
            "SELECT DISTINCT metering_point_id, day FROM meter_readings WHERE day BETWEEN ? AND ?",
            [first, last],
        )
        stored = {
            (m, pd.Timestamp(d).date())
            for m, d in zip(pairs["metering_point_id"], pairs["day"], strict=True)
        }
        price_days = warehouse.query(
            "SELECT DISTINCT day FROM prices WHERE price_type = 'import' AND day BETWEEN ? AND ?",
            [first, last],
        )["day"]
        weather_days = warehouse.days_present("weather", first, last)
        return demo.deliver(
            config,
            inbox,
            start,
            end,
            stored_meter_days=stored,
            stored_price_days={pd.Timestamp(d).date() for d in price_days},
            stored_weather_days=weather_days,
        )


class MlflowTracker(dg.ConfigurableResource):
    """MLflow tracking with a sqlite backend under ``$ECM_HOME/mlflow`` (or ``tracking_uri``).

    A small resource of our own rather than dagster-mlflow's, which is job-oriented and ends
    runs early.
    """

    tracking_uri: str | None = None
    ui_url: str = "http://127.0.0.1:5000"
    """where `mlflow ui` serves this tracking store (its default address; see the README)"""

    def run_url(self, run_id: str) -> str:
        """Link to a run in the MLflow UI (``#/experiments/<id>/runs/<run id>``)."""
        import mlflow

        exp = mlflow.MlflowClient(self.uri()).get_run(run_id).info.experiment_id
        return f"{self.ui_url.rstrip('/')}/#/experiments/{exp}/runs/{run_id}"

    def uri(self) -> str:
        """Tracking URI."""
        if self.tracking_uri:
            return self.tracking_uri
        d = ecm_home() / "mlflow"
        d.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{d / 'mlflow.db'}"

    def log_forecast(self, result: Any, *, partition: str, dagster_run_id: str) -> str:
        """Log a :class:`models.forecasting.TargetForecast` as one run; return the run id.

        Writers in other processes (a parallel backfill, two runs from the UI) wait for each
        other: SQLite is one writer at a time, and two processes creating the tracking
        database at once leave its schema migration half done.
        """
        from filelock import FileLock

        from assets.tracking import log_target_forecast

        uri = self.uri()
        with FileLock(str(ecm_home() / "mlflow" / "tracking.lock"), timeout=300):
            return log_target_forecast(
                uri,
                ecm_home() / "mlflow" / "artifacts",
                result,
                partition=partition,
                dagster_run_id=dagster_run_id,
                git_commit=_git_commit(),
            )


def _git_commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
