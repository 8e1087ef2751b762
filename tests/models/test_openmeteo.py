"""Tests for models.openmeteo: offline, with recorded FlatBuffers responses.

HTTP is served either by :class:`RecordedAdapter` (a ``requests`` transport adapter mounted on
the session, replacing the real one) or, where urllib3's retry loop must really run, by a
scripted HTTP server on 127.0.0.1. Nothing leaves the machine except in the ``network`` test.
"""

from __future__ import annotations

import importlib.util
import io
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest
import requests
import requests_cache
import urllib3
from openmeteo_sdk.Unit import Unit
from openmeteo_sdk.Variable import Variable
from requests.adapters import HTTPAdapter

from models.openmeteo import (
    FORECAST_URL,
    WEATHER_VARIABLES,
    WeatherSourceError,
    get_openmeteo_forecast,
    make_session,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openmeteo"
FONTANA_BIN = FIXTURES / "forecast_fontana.bin"

START = pd.Timestamp("2024-06-01T00:00Z")
END = pd.Timestamp("2024-06-03T00:00Z")  # 48 interval starts
ISSUE = pd.Timestamp("2024-05-31T18:00Z")
LAT, LON = 34.09, -117.43


def _load_make_fixtures() -> ModuleType:
    name = "openmeteo_make_fixtures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


mf = _load_make_fixtures()


# --------------------------------------------------------------------------------------------
# Fake transports
# --------------------------------------------------------------------------------------------


class RecordedAdapter(HTTPAdapter):
    """Transport adapter that answers from a script of ``(status, body[, headers])``.

    The last entry repeats once the script is exhausted. Every request and the ``timeout`` it
    was sent with are recorded. Mounting it replaces the session's real (retrying) adapter.
    """

    def __init__(self, responses: list[tuple]) -> None:
        super().__init__()
        self.responses = list(responses)
        self.requests: list[requests.PreparedRequest] = []
        self.timeouts: list[object] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.requests.append(request)
        self.timeouts.append(timeout)
        entry = self.responses[min(len(self.requests), len(self.responses)) - 1]
        status, body = entry[0], entry[1]
        headers = {
            "Content-Type": "application/octet-stream",
            **(entry[2] if len(entry) > 2 else {}),
        }
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(body),
            headers=headers,
            status=status,
            reason="recorded",
            preload_content=False,
            decode_content=False,
        )
        return self.build_response(request, raw)


def _recorded_session(responses: list[tuple], cache_path: str | None = None):
    session = make_session(cache_path, retries=0, backoff_factor=0)
    adapter = RecordedAdapter(responses)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter


class _ScriptedServer:
    """Threaded HTTP server on 127.0.0.1 answering from a script (real urllib3 retries run)."""

    def __init__(self, script: list[tuple]) -> None:
        self.script = list(script)
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                entry = outer.script[min(len(outer.paths), len(outer.script)) - 1]
                status, body = entry[0], entry[1]
                headers = entry[2] if len(entry) > 2 else {}
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/forecast"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> _ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy configured in the environment must not intercept the 127.0.0.1 test servers.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def fontana_bytes() -> bytes:
    return FONTANA_BIN.read_bytes()


def _fetch(session, **kwargs) -> pd.DataFrame:
    kwargs.setdefault("issue_time", ISSUE)
    return get_openmeteo_forecast(LAT, LON, START, END, session=session, **kwargs)


def _variant(mutate) -> bytes:
    """Fontana response with its variable list transformed by ``mutate(list) -> list``."""
    return mf.build_response(mutate(list(mf.fontana_variables().values())))


# --------------------------------------------------------------------------------------------
# Recorded response and parsing
# --------------------------------------------------------------------------------------------


def test_committed_fixture_matches_generator(fontana_bytes: bytes) -> None:
    assert mf.fontana_bytes() == fontana_bytes, "re-run tests/fixtures/openmeteo/make_fixtures.py"


def test_recorded_forecast_columns_dtypes_and_values(fontana_bytes: bytes) -> None:
    session, adapter = _recorded_session([(200, fontana_bytes)])
    df = _fetch(session)

    assert list(df.columns) == [
        "ts",
        "issue_time",
        "kind",
        "source",
        "lead_hours",
        *WEATHER_VARIABLES,
    ]
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert str(df["issue_time"].dtype) == "datetime64[ns, UTC]"
    for name in ("lead_hours", *WEATHER_VARIABLES):
        assert df[name].dtype == np.float64, name
    assert len(df) == 48
    assert len(adapter.requests) == 1

    # ts = interval START: the first API label is 01:00 (mean over 00:00-01:00) -> ts 00:00.
    expected_ts = pd.date_range(START, END, freq="h", inclusive="left").as_unit("ns")
    pd.testing.assert_index_equal(pd.DatetimeIndex(df["ts"]), expected_ts, check_names=False)
    assert (df["issue_time"] == ISSUE).all()
    assert (df["kind"] == "forecast").all()
    assert (df["source"] == "open-meteo").all()
    np.testing.assert_array_equal(df["lead_hours"], np.arange(48) + 6.0)  # issue 18:00 day-1

    i = np.arange(48, dtype=np.float64)  # distinct ranges per variable: a swap cannot pass
    np.testing.assert_array_equal(df["temperature_2m"], 15 + 0.25 * i)
    np.testing.assert_array_equal(df["relative_humidity_2m"], 40 + 0.5 * i)
    np.testing.assert_array_equal(df["diffuse_radiation"], 100 + i)
    np.testing.assert_array_equal(df["direct_normal_irradiance"], 600 + 2 * i)


def test_request_params_and_explicit_timeout(fontana_bytes: bytes) -> None:
    session, adapter = _recorded_session([(200, fontana_bytes)])
    _fetch(session, timeout_s=2.5)

    (request,) = adapter.requests
    parts = urlsplit(request.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == FORECAST_URL
    query = parse_qs(parts.query)
    assert query["hourly"] == list(WEATHER_VARIABLES)
    assert query["timezone"] == ["UTC"]
    assert query["format"] == ["flatbuffers"]
    assert query["latitude"] == [str(LAT)] and query["longitude"] == [str(LON)]
    # API labels are hour ends: interval starts [00:00 Jun 1, 00:00 Jun 3) -> labels 01:00..00:00
    assert query["start_hour"] == ["2024-06-01T01:00"]
    assert query["end_hour"] == ["2024-06-03T00:00"]
    assert adapter.timeouts == [2.5]


def test_default_issue_time_is_now_floored_to_hour(fontana_bytes: bytes) -> None:
    session, _ = _recorded_session([(200, fontana_bytes)])
    before = pd.Timestamp.now(tz="UTC").floor("h")
    df = get_openmeteo_forecast(LAT, LON, START, END, session=session)
    after = pd.Timestamp.now(tz="UTC").floor("h")
    issue = df["issue_time"].iloc[0]
    assert issue in (before, after)
    assert (df["issue_time"] == issue).all()
    np.testing.assert_allclose(df["lead_hours"], (df["ts"] - issue) / pd.Timedelta(hours=1))


def test_variables_are_mapped_by_name_not_position(fontana_bytes: bytes) -> None:
    session, _ = _recorded_session([(200, fontana_bytes)])
    expected = _fetch(session)
    shuffled = _variant(lambda vs: [vs[3], vs[1], vs[0], vs[2]])
    session, _ = _recorded_session([(200, shuffled)])
    pd.testing.assert_frame_equal(_fetch(session), expected)


def test_output_is_restricted_to_requested_window(fontana_bytes: bytes) -> None:
    session, _ = _recorded_session([(200, fontana_bytes)])
    start, end = START + pd.Timedelta(hours=6), START + pd.Timedelta(hours=12)
    df = get_openmeteo_forecast(LAT, LON, start, end, session=session, issue_time=ISSUE)
    assert list(df["ts"]) == list(pd.date_range(start, end, freq="h", inclusive="left"))
    np.testing.assert_array_equal(df["diffuse_radiation"], 100 + np.arange(6, 12))


def test_non_utc_bounds_are_converted(fontana_bytes: bytes) -> None:
    session, adapter = _recorded_session([(200, fontana_bytes)])
    df = get_openmeteo_forecast(
        LAT,
        LON,
        START.tz_convert("America/Los_Angeles"),
        END.tz_convert("America/Los_Angeles"),
        session=session,
        issue_time=ISSUE,
    )
    assert len(df) == 48 and df["ts"].iloc[0] == START
    assert parse_qs(urlsplit(adapter.requests[0].url).query)["start_hour"] == ["2024-06-01T01:00"]


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [
        (pd.Timestamp("2024-06-01T00:00"), END, "timezone-aware"),
        (START + pd.Timedelta(minutes=30), END, "whole hour"),
        (END, START, "after start"),
    ],
)
def test_invalid_bounds_raise_before_any_request(start, end, match) -> None:
    session, adapter = _recorded_session([(200, b"")])
    with pytest.raises(ValueError, match=match):
        get_openmeteo_forecast(LAT, LON, start, end, session=session)
    assert adapter.requests == []


# --------------------------------------------------------------------------------------------
# Malformed responses
# --------------------------------------------------------------------------------------------


def test_variable_count_mismatch_raises() -> None:
    body = _variant(lambda vs: vs[:3])
    session, _ = _recorded_session([(200, body)])
    with pytest.raises(WeatherSourceError, match=r"3 variables but 4 were requested") as err:
        _fetch(session)
    assert FORECAST_URL in str(err.value)


def test_wrong_variable_is_named() -> None:
    def swap_dni(vs):
        dni = vs[3]
        return [*vs[:3], mf.RecordedVariable(Variable.direct_radiation, 0, dni.unit, dni.values)]

    session, _ = _recorded_session([(200, _variant(swap_dni))])
    with pytest.raises(WeatherSourceError, match=r"'direct_normal_irradiance' not in the response"):
        _fetch(session)


def test_wrong_altitude_is_rejected() -> None:
    def temp_at_80m(vs):
        t = vs[0]
        return [mf.RecordedVariable(t.variable, 80, t.unit, t.values), *vs[1:]]

    session, _ = _recorded_session([(200, _variant(temp_at_80m))])
    with pytest.raises(WeatherSourceError, match=r"'temperature_2m' not in the response"):
        _fetch(session)


def test_wrong_unit_is_rejected() -> None:
    def fahrenheit(vs):
        t = vs[0]
        return [mf.RecordedVariable(t.variable, t.altitude, Unit.fahrenheit, t.values), *vs[1:]]

    session, _ = _recorded_session([(200, _variant(fahrenheit))])
    with pytest.raises(WeatherSourceError, match=r"'temperature_2m' has unit"):
        _fetch(session)


def test_value_length_mismatch_is_rejected() -> None:
    def short_rh(vs):
        rh = vs[1]
        return [
            vs[0],
            mf.RecordedVariable(rh.variable, rh.altitude, rh.unit, rh.values[:-1]),
            *vs[2:],
        ]

    session, _ = _recorded_session([(200, _variant(short_rh))])
    with pytest.raises(WeatherSourceError, match=r"'relative_humidity_2m' has 47 values"):
        _fetch(session)


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>captive portal</html>", b"\x08\x00\x00\x00" + b"\xff" * 8],
    ids=["empty", "html", "garbage"],
)
def test_undecodable_body_raises(body: bytes) -> None:
    session, _ = _recorded_session([(200, body)])
    with pytest.raises(WeatherSourceError, match="Open-Meteo"):
        _fetch(session)


def test_http_error_without_retries_raises(fontana_bytes: bytes) -> None:
    session, adapter = _recorded_session([(500, b"oops"), (200, fontana_bytes)])
    with pytest.raises(WeatherSourceError, match=FORECAST_URL):
        _fetch(session)
    assert len(adapter.requests) == 1


# --------------------------------------------------------------------------------------------
# Retries and timeout (real urllib3 retry loop against 127.0.0.1)
# --------------------------------------------------------------------------------------------


def test_make_session_retry_configuration() -> None:
    session = make_session(None, retries=3, backoff_factor=0.25)
    assert not isinstance(session, requests_cache.CachedSession)
    for prefix in ("http://", "https://"):
        retry = session.get_adapter(prefix + "example.org").max_retries
        assert retry.total == 3
        assert retry.backoff_factor == 0.25
        assert set(retry.status_forcelist) == {429, 500, 502, 503, 504}
        assert retry.respect_retry_after_header


def test_retries_on_429_then_503_then_succeeds(fontana_bytes: bytes) -> None:
    script = [(429, b'{"error": true, "reason": "Too many"}'), (503, b"busy"), (200, fontana_bytes)]
    with _ScriptedServer(script) as server:
        session = make_session(None, retries=5, backoff_factor=0)
        df = get_openmeteo_forecast(
            LAT, LON, START, END, session=session, url=server.url, issue_time=ISSUE
        )
    assert len(server.paths) == 3
    assert len(df) == 48
    np.testing.assert_array_equal(df["temperature_2m"].iloc[:2], [15.0, 15.25])


def test_persistent_429_exhausts_bounded_retry_budget() -> None:
    retries = 3
    with _ScriptedServer([(429, b'{"error": true, "reason": "Too many"}')]) as server:
        session = make_session(None, retries=retries, backoff_factor=0)
        with pytest.raises(WeatherSourceError, match=r"127\.0\.0\.1"):
            get_openmeteo_forecast(LAT, LON, START, END, session=session, url=server.url)
    assert len(server.paths) == retries + 1


def test_retry_after_header_is_respected(fontana_bytes: bytes) -> None:
    script = [(429, b"{}", {"Retry-After": "1"}), (200, fontana_bytes)]
    with _ScriptedServer(script) as server:
        session = make_session(None, retries=2, backoff_factor=0)
        t0 = time.monotonic()
        get_openmeteo_forecast(LAT, LON, START, END, session=session, url=server.url)
        elapsed = time.monotonic() - t0
    assert len(server.paths) == 2
    assert elapsed >= 0.9


@pytest.fixture
def hung_server() -> Iterator[int]:
    """TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept_forever() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


def test_hung_socket_times_out(hung_server: int) -> None:
    url = f"http://127.0.0.1:{hung_server}/v1/forecast"
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            get_openmeteo_forecast(
                LAT, LON, START, END, session=make_session(None, retries=0), url=url, timeout_s=0.5
            )
        except BaseException as exc:  # handed to the main thread
            outcome.append(exc)
        else:
            outcome.append(None)

    # Watchdog thread: without a working timeout the call would hang forever, not just fail.
    worker = threading.Thread(target=call, daemon=True)
    t0 = time.monotonic()
    worker.start()
    worker.join(timeout=3.0)
    assert not worker.is_alive(), "request to a silent server did not time out within 3 s"
    assert time.monotonic() - t0 < 3.0
    assert len(outcome) == 1 and isinstance(outcome[0], WeatherSourceError), outcome
    assert "timeout 0.5 s" in str(outcome[0])


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def test_cached_session_serves_second_identical_call_from_cache(
    tmp_path: Path, fontana_bytes: bytes
) -> None:
    cache = tmp_path / "openmeteo_cache"
    session, adapter = _recorded_session([(200, fontana_bytes)], cache_path=str(cache))
    assert isinstance(session, requests_cache.CachedSession)
    first = _fetch(session)
    second = _fetch(session)
    assert len(adapter.requests) == 1
    pd.testing.assert_frame_equal(first, second)
    assert (tmp_path / "openmeteo_cache.sqlite").is_file()

    # A different window is a different request.
    get_openmeteo_forecast(
        LAT, LON, START, START + pd.Timedelta(hours=3), session=session, issue_time=ISSUE
    )
    assert len(adapter.requests) == 2


def test_cache_does_not_store_errors(tmp_path: Path, fontana_bytes: bytes) -> None:
    session, adapter = _recorded_session(
        [(503, b"busy"), (200, fontana_bytes)], cache_path=str(tmp_path / "c")
    )
    with pytest.raises(WeatherSourceError):
        _fetch(session)
    assert len(_fetch(session)) == 48
    assert len(adapter.requests) == 2


# --------------------------------------------------------------------------------------------
# Live API (deselected by default: -m 'not slow and not network')
# --------------------------------------------------------------------------------------------


@pytest.mark.network
def test_live_open_meteo_forecast() -> None:
    start = pd.Timestamp.now(tz="UTC").floor("h")
    end = start + pd.Timedelta(hours=24)
    df = get_openmeteo_forecast(
        LAT, LON, start, end, session=make_session(None, retries=2), timeout_s=20
    )
    assert len(df) == 24
    assert df["ts"].iloc[0] == start
    assert df[list(WEATHER_VARIABLES)].notna().all().all()
    assert df["temperature_2m"].between(-30, 55).all()
    assert df["relative_humidity_2m"].between(0, 100).all()
    assert (df[["diffuse_radiation", "direct_normal_irradiance"]] >= 0).all().all()


def _closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here now: connections are refused, as offline
    return port


def test_offline_an_expired_cached_forecast_is_never_served(
    fontana_bytes: bytes, tmp_path: Path
) -> None:
    """Reliability item 12: the cache answers only while its answer is fresh; once it has
    expired and the network is gone, the fetch fails naming the URL instead of serving it."""
    with _ScriptedServer([(200, fontana_bytes)]) as server:
        session = make_session(str(tmp_path / "cache"), expire_after_s=1, retries=0)
        first = get_openmeteo_forecast(
            LAT, LON, START, END, session=session, url=server.url, issue_time=ISSUE
        )
    assert len(first) == 48
    again = get_openmeteo_forecast(
        LAT, LON, START, END, session=session, url=server.url, issue_time=ISSUE
    )
    pd.testing.assert_frame_equal(first, again)  # fresh: served from the cache, server gone
    time.sleep(1.2)
    with pytest.raises(WeatherSourceError, match=r"127\.0\.0\.1.*failed"):
        get_openmeteo_forecast(LAT, LON, START, END, session=session, url=server.url)


def test_offline_without_a_cache_fails_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1/forecast"
    with pytest.raises(
        WeatherSourceError, match=r"request to http://127\.0\.0\.1:\d+/v1/forecast failed"
    ):
        get_openmeteo_forecast(
            LAT, LON, START, END, session=make_session(None, retries=1, backoff_factor=0), url=url
        )
