"""Reliability item 12: offline, recorded weather is used only where the configuration says
so; a community configured for live Open-Meteo forecasts fails clearly instead of planning on
stale or missing weather."""

from __future__ import annotations

import socket
from pathlib import Path

import dagster as dg
import pytest

from assets.ingest import weather
from assets.resources import EcmResource, OpenMeteoWeatherSource
from models.demo import DEFAULT_CONFIG
from models.warehouse import Warehouse

DAY = "2017-06-14"


def _closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_live_weather_community_offline_fails_by_name_and_stores_nothing(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    text = DEFAULT_CONFIG.read_text()
    assert "weather_source: inbox" in text
    cfg = DEFAULT_CONFIG.parent / f"_offline_{tmp_path.name}.yaml"  # relative paths resolve
    cfg.write_text(text.replace("weather_source: inbox", "weather_source: open-meteo"))
    try:
        url = f"http://127.0.0.1:{_closed_port()}/v1/forecast"
        result = dg.materialize(
            [weather],
            partition_key=DAY,
            resources={
                "ecm": EcmResource(home=str(tmp_path / "home"), config=str(cfg)),
                "weather_source": OpenMeteoWeatherSource(
                    url=url, retries=1, timeout_s=2, cache_path=str(tmp_path / "cache")
                ),
            },
            raise_on_error=False,
        )
    finally:
        cfg.unlink()
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = str(failure.step_failure_data.error)
    assert "WeatherSourceError" in text and f"request to {url}" in text and "failed" in text
    wh = Warehouse(tmp_path / "home" / "warehouse.duckdb")
    assert wh.query("SELECT count(*) AS n FROM weather")["n"].iloc[0] == 0


@pytest.mark.parametrize("source", ["inbox", "none"])
def test_file_or_no_weather_never_calls_the_network(tmp_path: Path, monkeypatch, source):
    """Configured for inbox files (the demo, recorded forecasts) or for no weather, the asset
    makes no request at all: the definitions bind a source that cannot fetch."""
    from pipelines.definitions import _weather_source

    text = DEFAULT_CONFIG.read_text().replace("weather_source: inbox", f"weather_source: {source}")
    cfg = DEFAULT_CONFIG.parent / f"_offline_{source}_{tmp_path.name}.yaml"
    cfg.write_text(text)
    try:
        monkeypatch.setenv("ECM_CONFIG", str(cfg))
        bound = _weather_source()
    finally:
        cfg.unlink()
    assert not isinstance(bound, OpenMeteoWeatherSource)
    assert bound.fetch(None, None, None).empty  # type: ignore[arg-type]
