"""Dagster resources: the ECM home (warehouse, config, reports), weather sources, MLflow.

Each external source is an interface with a live and a fixture implementation, as in
Dagster's example projects: ``WeatherSource`` -> ``OpenMeteoWeatherSource`` (live) and
``BundledWeatherSource`` (the demo's recorded observations and forecasts, offline).
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
    """``$ECM_HOME``, default ``.ecm/`` in the repository (read at call time, not import)."""
    return Path(os.environ.get("ECM_HOME") or REPO_ROOT / ".ecm").resolve()


def config_path() -> Path:
    """``$ECM_CONFIG``, default the bundled demo community."""
    return Path(os.environ.get("ECM_CONFIG") or demo.DEFAULT_CONFIG).resolve()


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
        """The DuckDB warehouse, schema created if needed."""
        wh = Warehouse(self.home_path() / "warehouse.duckdb")
        wh.init_schema()
        return wh

    def reports_dir(self) -> Path:
        """Folder of the HTML reports."""
        p = self.home_path() / "reports"
        p.mkdir(parents=True, exist_ok=True)
        return p


class WeatherSource(dg.ConfigurableResource):
    """Interface: weather observations and forecasts for valid times in [start, end)."""

    def fetch(
        self, config: CommunityConfig, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Rows of the weather contract (without ``day``)."""
        raise NotImplementedError


class BundledWeatherSource(WeatherSource):
    """The demo's recorded CityLearn observations and forecasts (offline)."""

    def fetch(
        self, config: CommunityConfig, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Recorded rows, see :func:`models.demo.weather_rows`."""
        return demo.weather_rows(start, end)


class OpenMeteoWeatherSource(WeatherSource):
    """Live Open-Meteo forecasts through openmeteo-requests, cached, with retries and timeout.

    Open-Meteo returns the forecast as of now, so it is only meaningful for the coming days;
    the issue time stored is the time of the request.
    """

    cache_path: str | None = None
    timeout_s: float = 10.0
    retries: int = 5

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
        )


class MeterSource(dg.ConfigurableResource):
    """Interface: meter readings, in the documented file format, for [start, end)."""

    def fetch(
        self, config: CommunityConfig, start: pd.Timestamp, end: pd.Timestamp
    ) -> tuple[pd.DataFrame, str]:
        """Raw rows and a source label."""
        raise NotImplementedError


class BundledMeterSource(MeterSource):
    """The demo community's measured CityLearn data, rendered in the meter file format."""

    def fetch(
        self, config: CommunityConfig, start: pd.Timestamp, end: pd.Timestamp
    ) -> tuple[pd.DataFrame, str]:
        """Rows of :func:`models.demo.meter_rows`."""
        return demo.meter_rows(config, start, end), "bundled:citylearn_2022_buildings.parquet"


class MlflowTracker(dg.ConfigurableResource):
    """MLflow tracking with a sqlite backend under ``$ECM_HOME/mlflow`` (or ``tracking_uri``).

    A small resource of our own rather than dagster-mlflow's, which is job-oriented and ends
    runs early.
    """

    tracking_uri: str | None = None

    def uri(self) -> str:
        """Tracking URI."""
        if self.tracking_uri:
            return self.tracking_uri
        d = ecm_home() / "mlflow"
        d.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{d / 'mlflow.db'}"

    def log_forecast(self, result: Any, *, partition: str, dagster_run_id: str) -> str:
        """Log a :class:`models.forecasting.TargetForecast` as one run; return the run id."""
        from assets.tracking import log_target_forecast

        return log_target_forecast(
            self.uri(),
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
