"""Open-Meteo hourly weather forecasts for ECM (pure Python: no Dagster, no MLflow).

The forecast is fetched with :class:`openmeteo_requests.Client` (FlatBuffers transport) over a
:mod:`requests` session built by :func:`make_session`: optionally cached on disk by
:mod:`requests_cache`, and always retried by :func:`retry_requests.retry` (urllib3 ``Retry``) on
HTTP 429/500/502/503/504 and on connection/read errors, with exponential backoff and honouring
``Retry-After``. Every request carries an explicit ``timeout``.

Time labelling
--------------
Open-Meteo labels hourly radiation with the END of the hour it averages over (backward-looking:
the value labelled 13:00 is the mean over 12:00-13:00). ECM frames label every hour by its START,
so :func:`_parse_hourly` shifts the API labels back by one hour: ``ts = api_label - 1 h``. For
simplicity the same shift is applied to the instantaneous variables (temperature, relative
humidity), i.e. their value at the END of the interval is attached to the interval start. At
hourly resolution the one-hour skew is small relative to the forecast error and keeps all
columns on one time axis.
"""

from __future__ import annotations

import inspect
import re
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import openmeteo_requests
import pandas as pd
import requests
import requests_cache
import retry_requests
from openmeteo_sdk.Unit import Unit
from openmeteo_sdk.Variable import Variable
from urllib3.util.retry import Retry

__all__ = [
    "FORECAST_URL",
    "RETRY_STATUS_CODES",
    "WEATHER_VARIABLES",
    "WeatherSourceError",
    "get_openmeteo_forecast",
    "make_session",
]

#: The ONE list of hourly variables ECM requests. They are requested in this order and mapped
#: back to columns BY NAME (SDK variable enum + altitude), never by position.
WEATHER_VARIABLES: tuple[str, ...] = (
    "temperature_2m",  # [degC]
    "relative_humidity_2m",  # [%]
    "diffuse_radiation",  # diffuse horizontal irradiance, mean of the preceding hour [W/m^2]
    "direct_normal_irradiance",  # mean of the preceding hour [W/m^2]
)

FORECAST_URL = "https://api.open-meteo.com/v1/forecast"

#: HTTP status codes retried by :func:`make_session`.
RETRY_STATUS_CODES: tuple[int, ...] = (429, 500, 502, 503, 504)

#: Upper bound on a server-requested ``Retry-After`` wait [s] (if urllib3 supports capping).
RETRY_AFTER_MAX_S = 120

FRAME_COLUMNS: tuple[str, ...] = (
    "ts",
    "issue_time",
    "kind",
    "source",
    "lead_hours",
    *WEATHER_VARIABLES,
)

_SOURCE = "open-meteo"
_KIND = "forecast"
_HOUR = pd.Timedelta(hours=1)

#: Units the API reports for the variables ECM relies on (checked when parsing).
_EXPECTED_UNITS: dict[str, int] = {
    "temperature_2m": Unit.celsius,
    "relative_humidity_2m": Unit.percentage,
    "diffuse_radiation": Unit.watt_per_square_metre,
    "direct_normal_irradiance": Unit.watt_per_square_metre,
}

_VARIABLE_ENUM: dict[str, int] = {
    name: value
    for name, value in vars(Variable).items()
    if not name.startswith("_") and isinstance(value, int)
}
_ENUM_NAME: dict[int, str] = {value: name for name, value in _VARIABLE_ENUM.items()}
_ALTITUDE_SUFFIX = re.compile(r"^(?P<base>[a-z0-9_]+?)_(?P<altitude>\d+)m$")


class WeatherSourceError(RuntimeError):
    """The weather source failed: retries exhausted, timeout, or malformed response."""


# --------------------------------------------------------------------------------------------
# HTTP session
# --------------------------------------------------------------------------------------------


def make_session(
    cache_path: str | None,
    expire_after_s: int = 3600,
    retries: int = 5,
    backoff_factor: float = 0.5,
) -> requests.Session:
    """Build the HTTP session used for Open-Meteo: optional on-disk cache plus retries.

    Parameters
    ----------
    cache_path
        Path of the SQLite cache file for :class:`requests_cache.CachedSession` (``.sqlite`` is
        appended when it has no suffix). ``None`` gives a plain, uncached
        :class:`requests.Session`.
    expire_after_s
        Lifetime of a cached response [s]. Only HTTP 200 responses to GET are cached.
    retries
        Maximum number of retries (so at most ``retries + 1`` requests per call) on HTTP
        429/500/502/503/504, connection errors and read timeouts.
    backoff_factor
        urllib3 exponential backoff factor [s]: the n-th retry waits about
        ``backoff_factor * 2 ** (n - 1)`` s (capped by urllib3). A ``Retry-After`` header on a
        429/503 takes precedence, capped at :data:`RETRY_AFTER_MAX_S` when urllib3 supports it.

    Returns
    -------
    requests.Session
        A session with a retrying :class:`requests.adapters.HTTPAdapter` mounted on
        ``http://`` and ``https://`` (via :func:`retry_requests.retry`). It sets no default
        timeout: :func:`get_openmeteo_forecast` passes one explicitly on every request.
    """
    session: requests.Session
    if cache_path is None:
        session = requests.Session()
    else:
        session = requests_cache.CachedSession(
            cache_name=str(cache_path),
            backend="sqlite",
            expire_after=expire_after_s,
            allowable_codes=(200,),
            allowable_methods=("GET",),
            stale_if_error=False,
        )
    retry_kwargs: dict[str, Any] = {"respect_retry_after_header": True}
    if "retry_after_max" in inspect.signature(Retry.__init__).parameters:
        retry_kwargs["retry_after_max"] = RETRY_AFTER_MAX_S
    return retry_requests.retry(
        session,
        retries=retries,
        backoff_factor=backoff_factor,
        status_to_retry=RETRY_STATUS_CODES,
        **retry_kwargs,
    )


# --------------------------------------------------------------------------------------------
# Fetch
# --------------------------------------------------------------------------------------------


def _as_utc(value: pd.Timestamp | str, name: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {ts})")
    return ts.tz_convert("UTC")


def get_openmeteo_forecast(
    latitude: float,
    longitude: float,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    session: requests.Session | None = None,
    timeout_s: float = 10.0,
    issue_time: pd.Timestamp | None = None,
    url: str = FORECAST_URL,
) -> pd.DataFrame:
    """Fetch the hourly Open-Meteo forecast for valid times ``[start, end)``.

    Parameters
    ----------
    latitude, longitude
        Site coordinates [deg, WGS84].
    start, end
        Timezone-aware, whole-hour bounds of the wanted interval starts ``ts`` (``end``
        excluded). Because the API labels hours by their end, the request asks for API labels
        ``start + 1 h`` .. ``end`` (``start_hour``/``end_hour``, both inclusive, in UTC).
    session
        HTTP session, normally from :func:`make_session` (cache + retries). ``None`` builds an
        uncached retrying session for this call only.
    timeout_s
        Socket timeout [s] passed explicitly to ``session.get`` for both connect and each read.
        It is not a total deadline: with retries the worst case is about
        ``(retries + 1) * timeout_s`` plus the backoff waits.
    issue_time
        When this forecast became known (timezone-aware). Default: now in UTC, floored to the
        hour. Stored on every row. Note that with a cached session the response may be up to
        ``expire_after_s`` older than this default.
    url
        Forecast endpoint.

    Returns
    -------
    pandas.DataFrame
        One row per hour, columns ``ts`` (datetime64[ns, UTC], interval start), ``issue_time``
        (datetime64[ns, UTC]), ``kind`` ("forecast"), ``source`` ("open-meteo"), ``lead_hours``
        (float, ``(ts - issue_time) / 1 h`` [h]; negative for hours already past), then
        ``temperature_2m`` [degC], ``relative_humidity_2m`` [%], ``diffuse_radiation``
        [W/m^2] and ``direct_normal_irradiance`` [W/m^2] (float64; the radiation values are the
        mean over the hour starting at ``ts``).

    Raises
    ------
    ValueError
        If ``start``/``end`` are naive, not on whole hours, or ``end <= start``.
    WeatherSourceError
        If the request fails after the retry budget, times out, or the response is malformed
        (wrong number, name or unit of variables, bad time axis, undecodable bytes).
    """
    start_utc = _as_utc(start, "start")
    end_utc = _as_utc(end, "end")
    for name, ts in (("start", start_utc), ("end", end_utc)):
        if ts != ts.floor("h"):
            raise ValueError(f"{name} must be on a whole hour (got {ts})")
    if end_utc <= start_utc:
        raise ValueError(f"end ({end_utc}) must be after start ({start_utc})")
    issue = (
        pd.Timestamp.now(tz="UTC").floor("h")
        if issue_time is None
        else _as_utc(issue_time, "issue_time")
    )

    params: dict[str, Any] = {
        "latitude": latitude,
        "longitude": longitude,
        "hourly": list(WEATHER_VARIABLES),
        "timezone": "UTC",
        # API labels are hour ENDS: interval starts [start, end) <=> labels [start+1h, end].
        "start_hour": (start_utc + _HOUR).strftime("%Y-%m-%dT%H:%M"),
        "end_hour": end_utc.strftime("%Y-%m-%dT%H:%M"),
    }

    own_session = session is None
    http = make_session(None) if session is None else session
    try:
        client = openmeteo_requests.Client(session=http)
        try:
            # Client.weather_api forwards **kwargs to session.get(...): explicit timeout here.
            responses = client.weather_api(url, params=params, timeout=timeout_s)
        except Exception as exc:  # OpenMeteoRequestsError wraps requests/urllib3 errors
            raise WeatherSourceError(
                f"Open-Meteo request to {url} failed (timeout {timeout_s} s): {exc}"
            ) from exc
    finally:
        if own_session:
            http.close()

    if len(responses) != 1:
        raise WeatherSourceError(
            f"Open-Meteo response from {url}: expected 1 location, got {len(responses)}"
        )
    try:
        frame = _parse_hourly(responses[0], WEATHER_VARIABLES, issue_time=issue)
    except WeatherSourceError as exc:
        raise WeatherSourceError(f"Open-Meteo response from {url}: {exc}") from exc

    in_window = (frame["ts"] >= start_utc) & (frame["ts"] < end_utc)
    return frame.loc[in_window].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Parse
# --------------------------------------------------------------------------------------------


def _variable_key(name: str) -> tuple[int, int]:
    """SDK identity ``(Variable enum, altitude [m])`` of an API variable name.

    ``"temperature_2m"`` -> ``(Variable.temperature, 2)``;
    ``"diffuse_radiation"`` -> ``(Variable.diffuse_radiation, 0)``.
    """
    if name in _VARIABLE_ENUM:
        return _VARIABLE_ENUM[name], 0
    match = _ALTITUDE_SUFFIX.match(name)
    if match and match["base"] in _VARIABLE_ENUM:
        return _VARIABLE_ENUM[match["base"]], int(match["altitude"])
    raise ValueError(f"cannot map Open-Meteo variable {name!r} to an openmeteo_sdk Variable")


def _describe(key: tuple[int, int]) -> str:
    variable, altitude = key
    base = _ENUM_NAME.get(variable, f"<enum {variable}>")
    return f"{base}_{altitude}m" if altitude else base


def _parse_hourly(
    response: Any,
    variables: Sequence[str] = WEATHER_VARIABLES,
    issue_time: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Turn one ``WeatherApiResponse`` into the ECM weather frame.

    Variables are matched BY NAME: each requested name is mapped to its SDK identity
    (``Variable`` enum + altitude, e.g. ``temperature_2m`` -> ``(temperature, 2)``) and looked up
    among the variables present in the response, so a reordered response still lands in the
    right columns. Units are checked for the variables in :data:`WEATHER_VARIABLES`.

    Parameters
    ----------
    response
        One decoded ``openmeteo_sdk.WeatherApiResponse`` (as returned by
        ``openmeteo_requests.Client.weather_api``).
    variables
        The hourly variable names that were requested.
    issue_time
        When the forecast became known (timezone-aware); default now in UTC floored to the
        hour.

    Returns
    -------
    pandas.DataFrame
        Columns ``ts``, ``issue_time``, ``kind``, ``source``, ``lead_hours`` and one float64
        column per name in ``variables`` (see :func:`get_openmeteo_forecast`). ``ts`` is the
        START of each hour: the API label (hour end, backward-looking mean) minus one hour.

    Raises
    ------
    WeatherSourceError
        If the hourly block is missing, the time axis is not hourly, the number of variables
        differs from ``len(variables)``, a requested variable is missing/duplicated/has the
        wrong unit, a value vector has the wrong length, or the bytes cannot be decoded.
    """
    issue = (
        pd.Timestamp.now(tz="UTC").floor("h")
        if issue_time is None
        else _as_utc(issue_time, "issue_time")
    )
    wanted = {name: _variable_key(name) for name in variables}
    try:
        return _parse_hourly_unchecked(response, variables, wanted, issue)
    except WeatherSourceError:
        raise
    except (struct.error, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise WeatherSourceError(f"malformed hourly block, cannot decode: {exc!r}") from exc


def _parse_hourly_unchecked(
    response: Any,
    variables: Sequence[str],
    wanted: dict[str, tuple[int, int]],
    issue: pd.Timestamp,
) -> pd.DataFrame:
    hourly = response.Hourly()
    if hourly is None:
        raise WeatherSourceError("response has no hourly block")
    n_vars = hourly.VariablesLength()
    if n_vars != len(variables):
        raise WeatherSourceError(
            f"hourly block has {n_vars} variables but {len(variables)} were requested "
            f"({', '.join(variables)})"
        )
    interval = hourly.Interval()
    if interval != 3600:
        raise WeatherSourceError(f"hourly interval is {interval} s, expected 3600 s")
    labels_s = np.arange(hourly.Time(), hourly.TimeEnd(), interval, dtype=np.int64)

    present: dict[tuple[int, int], Any] = {}
    for i in range(n_vars):
        var = hourly.Variables(i)
        key = (int(var.Variable()), int(var.Altitude()))
        if key in present:
            raise WeatherSourceError(f"variable {_describe(key)} appears twice in the response")
        present[key] = var

    columns: dict[str, np.ndarray] = {}
    for name, key in wanted.items():
        var = present.get(key)
        if var is None:
            got = ", ".join(_describe(k) for k in present)
            raise WeatherSourceError(
                f"requested variable {name!r} not in the response (got: {got})"
            )
        expected_unit = _EXPECTED_UNITS.get(name)
        if expected_unit is not None and var.Unit() != expected_unit:
            raise WeatherSourceError(
                f"variable {name!r} has unit enum {var.Unit()}, expected {expected_unit}"
            )
        values = np.asarray(var.ValuesAsNumpy(), dtype=np.float64)
        if values.shape != labels_s.shape:
            raise WeatherSourceError(
                f"variable {name!r} has {values.size} values for {labels_s.size} time steps"
            )
        columns[name] = values

    # API label = END of the averaging hour; ECM ts = START of the hour.
    ts = pd.DatetimeIndex(pd.to_datetime(labels_s, unit="s", utc=True)).as_unit("ns") - _HOUR
    issue_ns = issue.as_unit("ns")
    frame = pd.DataFrame(
        {
            "ts": ts,
            "issue_time": pd.DatetimeIndex([issue_ns] * len(ts), tz="UTC").as_unit("ns"),
            "kind": _KIND,
            "source": _SOURCE,
            "lead_hours": np.asarray((ts - issue_ns) / _HOUR, dtype=np.float64),
            **columns,
        }
    )
    return frame[["ts", "issue_time", "kind", "source", "lead_hours", *variables]]
