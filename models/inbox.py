"""The community's inbox: files delivered by distributors, price feeds and weather services.

A community folder has ``inbox/meters/``, ``inbox/prices/`` and ``inbox/weather/``. Every run
takes the new files from them, each exactly once (tracked by the SHA-256 of its bytes in the
``inbox_files`` table), validates the whole file, stores it and moves it to ``processed/``;
a file that fails validation moves to ``rejected/`` with ``<name>.error.txt`` beside it, naming
the file, row and field, and nothing of it is stored. After that, a run works only on what is
stored: no source is ever re-fetched over stored readings.

File formats (CSV, Parquet or Excel ``.xlsx``; CSV is UTF-8, comma-separated, a header row;
timestamps are ISO 8601 **with** a UTC offset and mark the interval start):

meters
    ``metering_point_id, ts, kwh[, quality]``, see :mod:`models.meters`; or an Austrian EDA
    consumption record (``.xml``) or a Spanish Datadis hourly CSV, see :mod:`models.exchange`.
prices
    ``ts, price_type, price_per_kwh[, unit]``: ``price_type`` is ``import`` or ``export``;
    ``unit`` is ``<CUR>/kWh`` or ``<CUR>/MWh`` (default ``tariffs.price_file_unit``, else the
    community's ``<CUR>/kWh``). An ENTSO-E day-ahead export maps to it with
    ``price_type=import`` and ``unit=EUR/MWh``.
weather
    ``ts, temperature_2m, relative_humidity_2m, diffuse_radiation, direct_normal_irradiance``
    [degC, %, W/m^2, W/m^2], hourly observations; with an ``issue_time`` column, forecasts
    issued at that time.

A file whose readings differ from stored ones (a correction) replaces them; the replaced rows
move to ``meter_readings_history`` with the file that replaced them, so nothing is lost. Files
are taken in the order they arrived (modification time, then name).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.meters import (
    MeterFileError,
    MeteringPointInfo,
    _parse_ts,
    _row_no,
    file_sha256,
    parse_numbers,
    read_meter_file,
    validate_meter_frame,
)
from models.prices import PER_KWH_PLAUSIBLE_MAX, PriceUnitError, parse_price_unit
from models.timeutil import local_day

KINDS = ("meters", "prices", "weather")
"""Inbox sub-folders, in the order they are processed."""

WEATHER_COLUMNS = (
    "temperature_2m",
    "relative_humidity_2m",
    "diffuse_radiation",
    "direct_normal_irradiance",
)
WEATHER_RANGES = {
    "temperature_2m": (-70.0, 60.0),
    "relative_humidity_2m": (0.0, 100.0),
    "diffuse_radiation": (0.0, 1400.0),
    "direct_normal_irradiance": (0.0, 1400.0),
}
"""Physically plausible range of each weather column [degC, %, W/m^2, W/m^2]."""

DOCS_HINT = "see 'Onboard your community' in the README for the file formats"


class InboxFileError(MeterFileError):
    """A price or weather file is invalid. Names the file, row and field."""


@dataclass(frozen=True)
class InboxOutcome:
    """What happened to one inbox file."""

    kind: str
    file_name: str
    sha256: str
    status: str
    """processed | rejected | duplicate"""
    rows: int
    moved_to: Path
    error: str | None = None
    corrected_rows: int = 0
    corrected_days: tuple[dt.date, ...] = ()
    quarantined_rows: int = 0
    """rows held back as conflicting duplicates (``quarantined_readings``)"""


def inbox_folders(inbox: Path) -> dict[str, Path]:
    """The inbox's sub-folders, created if missing."""
    out = {}
    for kind in KINDS:
        p = Path(inbox) / kind
        (p / "processed").mkdir(parents=True, exist_ok=True)
        (p / "rejected").mkdir(parents=True, exist_ok=True)
        out[kind] = p
    return out


def pending_files(inbox: Path) -> list[tuple[str, Path]]:
    """New files waiting in the inbox: (kind, path), by kind then arrival order.

    Hidden files and files still being written (``*.part``, ``*.tmp``) are left alone.
    """
    out = []
    for kind, folder in inbox_folders(inbox).items():
        files = [
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix not in (".part", ".tmp")
        ]
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        out.extend((kind, p) for p in files)
    return out


def _columns(raw: pd.DataFrame, path: str, required: tuple[str, ...], optional: tuple[str, ...]):
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise InboxFileError(path, f"missing column(s) {missing}; {DOCS_HINT}", row=1)
    extra = [c for c in raw.columns if c not in (*required, *optional)]
    if extra:
        raise InboxFileError(path, f"unexpected column(s) {extra}; {DOCS_HINT}", row=1)
    if raw.empty:
        raise InboxFileError(path, "no rows in file")


def _aligned(ts: pd.Series, interval_minutes: int, path: str, header_rows: int = 1) -> None:
    t = pd.DatetimeIndex(ts)
    off = (t.minute * 60 + t.second) % (interval_minutes * 60) + t.microsecond
    bad = np.flatnonzero(np.asarray(off) != 0)
    if len(bad):
        i = int(bad[0])
        raise InboxFileError(
            path,
            f"{t[i].isoformat()} is not aligned to {interval_minutes}-minute intervals",
            _row_no(i, header_rows),
            "ts",
        )


def parse_price_file(
    raw: pd.DataFrame,
    *,
    source: str,
    currency: str,
    tz: str,
    interval_minutes: int = 60,
    default_unit: str | None = None,
) -> pd.DataFrame:
    """Validate a price file and return ``prices`` rows in [currency/kWh].

    Raises
    ------
    InboxFileError
        Missing column, bad timestamp, unknown price type, a number that is not one, a unit
        that is unknown, in another currency or contradicted by the magnitudes (85 declared as
        EUR/kWh), a negative price, or the same interval twice with different prices.
    """
    _columns(raw, source, ("ts", "price_type", "price_per_kwh"), ("unit",))
    ts = _parse_ts(raw["ts"], source, 1)
    _aligned(ts, interval_minutes, source)
    ptype = raw["price_type"].astype(str).str.strip().str.lower()
    for i, v in enumerate(ptype):
        if v not in ("import", "export"):
            raise InboxFileError(
                source, f"price_type must be import or export, got {v!r}", i + 2, "price_type"
            )
    value = parse_numbers(raw["price_per_kwh"], source, "price_per_kwh")
    unit = (
        raw["unit"].astype(str).str.strip()
        if "unit" in raw.columns
        else pd.Series([default_unit or f"{currency}/kWh"] * len(raw))
    )
    factor = np.empty(len(raw))
    for u in unit.unique():
        rows = np.flatnonzero((unit == u).to_numpy())
        try:
            cur, f = parse_price_unit(u)
        except PriceUnitError as exc:
            raise InboxFileError(source, str(exc), int(rows[0]) + 2, "unit") from None
        if cur != currency:
            raise InboxFileError(
                source,
                f"prices in {cur} but the community settles in {currency}",
                int(rows[0]) + 2,
                "unit",
            )
        factor[rows] = f
    per_kwh = value * factor
    neg = np.flatnonzero(per_kwh < 0)
    if len(neg):
        raise InboxFileError(
            source,
            f"negative price {value[neg[0]]:g}: ECM does not plan on negative prices yet",
            int(neg[0]) + 2,
            "price_per_kwh",
        )
    high = np.flatnonzero(per_kwh > PER_KWH_PLAUSIBLE_MAX)
    if len(high):
        i = int(high[0])
        raise InboxFileError(
            source,
            f"{value[i]:g} {unit.iloc[i]} is implausible (more than {PER_KWH_PLAUSIBLE_MAX} "
            f"{currency}/kWh); is the unit {currency}/MWh?",
            i + 2,
            "price_per_kwh",
        )
    df = pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(ts).tz_convert("UTC"),
            "price_type": ptype.to_numpy(),
            "price_per_kwh": per_kwh,
            "currency": currency,
            "source": f"inbox:{Path(source).name}",
            "_row": np.arange(len(raw)) + 2,
        }
    )
    _no_conflicting_duplicates(df, ["ts", "price_type"], "price_per_kwh", source)
    df = df.drop_duplicates(["ts", "price_type"]).drop(columns="_row")
    df["day"] = local_day(df["ts"], tz).to_numpy()
    return df.sort_values(["price_type", "ts"]).reset_index(drop=True)


def parse_weather_file(raw: pd.DataFrame, *, source: str, tz: str) -> pd.DataFrame:
    """Validate a weather file and return ``weather`` rows.

    Without ``issue_time`` the rows are hourly observations, known at the end of their hour;
    with it they are forecasts issued then (``issue_time`` must not be after ``ts``).

    Raises
    ------
    InboxFileError
        Missing column, bad timestamp, a value that is not a number or outside its physical
        range, a forecast issued after its valid time, or conflicting duplicates.
    """
    _columns(raw, source, ("ts", *WEATHER_COLUMNS), ("issue_time",))
    ts = pd.DatetimeIndex(_parse_ts(raw["ts"], source, 1)).tz_convert("UTC")
    _aligned(pd.Series(ts), 60, source)
    values = {}
    for c in WEATHER_COLUMNS:
        v = parse_numbers(raw[c], source, c)
        lo, hi = WEATHER_RANGES[c]
        bad = np.flatnonzero((v < lo) | (v > hi))
        if len(bad):
            raise InboxFileError(
                source,
                f"{v[bad[0]]:g} is outside the plausible range [{lo:g}, {hi:g}]",
                int(bad[0]) + 2,
                c,
            )
        values[c] = v
    if "issue_time" in raw.columns:
        issue = pd.DatetimeIndex(_parse_ts(raw["issue_time"], source, 1)).tz_convert("UTC")
        late = np.flatnonzero(np.asarray(issue > ts))
        if len(late):
            raise InboxFileError(
                source,
                f"issue_time {issue[late[0]].isoformat()} is after the valid time "
                f"{ts[late[0]].isoformat()}",
                int(late[0]) + 2,
                "issue_time",
            )
        kind, lead = "forecast", np.asarray((ts - issue) / pd.Timedelta(hours=1), dtype=float)
    else:
        issue = ts + pd.Timedelta(hours=1)
        kind, lead = "observation", np.full(len(ts), -1.0)
    df = pd.DataFrame(
        {
            "ts": ts,
            "issue_time": issue,
            "kind": kind,
            "source": "inbox",
            "lead_hours": lead,
            **values,
            "_row": np.arange(len(raw)) + 2,
        }
    )
    _no_conflicting_duplicates(df, ["ts", "issue_time"], "temperature_2m", source)
    df = df.drop_duplicates(["ts", "issue_time"]).drop(columns="_row")
    df["day"] = local_day(df["ts"], tz).to_numpy()
    return df.reset_index(drop=True)


def _no_conflicting_duplicates(df: pd.DataFrame, key: list[str], value: str, source: str):
    dup = df.duplicated(key, keep=False)
    if not dup.any():
        return
    for k, g in df[dup].groupby(key):
        if g[value].nunique() > 1:
            raise InboxFileError(
                source,
                f"{k} appears {len(g)} times with different {value} (rows "
                f"{', '.join(str(r) for r in g['_row'])})",
                int(g["_row"].iloc[1]),
                value,
            )


@dataclass(frozen=True)
class InboxContext:
    """What validation needs to know of the community."""

    tz: str
    currency: str
    interval_minutes: int
    metering_points: Mapping[str, MeteringPointInfo]
    price_file_unit: str | None = None


def parse_inbox_file(kind: str, path: Path, ctx: InboxContext, sha256: str) -> pd.DataFrame:
    """Read and validate one inbox file into its table's rows.

    Raises
    ------
    MeterFileError
        (or its subclass :class:`InboxFileError`) naming the file, row and field.
    """
    raw = read_meter_file(path, ctx.tz)
    raw.columns = [str(c).strip() for c in raw.columns]
    name = path.name
    if kind == "meters":
        return validate_meter_frame(
            raw,
            source=name,
            metering_points=ctx.metering_points,
            tz=ctx.tz,
            sha256=sha256,
            on_conflict="quarantine",
        )
    if kind == "prices":
        return parse_price_file(
            raw,
            source=name,
            currency=ctx.currency,
            tz=ctx.tz,
            interval_minutes=ctx.interval_minutes,
            default_unit=ctx.price_file_unit,
        )
    if kind == "weather":
        return parse_weather_file(raw, source=name, tz=ctx.tz)
    raise ValueError(f"unknown inbox kind {kind!r}")


def _free_name(folder: Path, name: str, sha256: str) -> Path:
    target = folder / name
    if not target.exists():
        return target
    p = Path(name)
    return folder / f"{p.stem}.{sha256[:12]}{p.suffix}"


def process_inbox(
    inbox: Path,
    ctx: InboxContext,
    *,
    status_of: Callable[[str], str | None],
    store: Callable[[str, pd.DataFrame, dict], dict],
    record: Callable[[dict], None],
) -> list[InboxOutcome]:
    """Take every new file from the inbox: validate, store, move; each file exactly once.

    Parameters
    ----------
    inbox : Path
        The inbox folder.
    ctx : InboxContext
        Time zone, currency, interval and metering points for validation.
    status_of : callable
        ``sha256 -> 'processed' | 'rejected' | None`` from ``inbox_files``.
    store : callable
        ``(kind, rows, record) -> counts``: stores the rows **and** the ``inbox_files`` record
        in one transaction (see :meth:`models.warehouse.Warehouse.store_inbox_file`).
    record : callable
        Stores the ``inbox_files`` record of a rejected file.

    Returns
    -------
    list of InboxOutcome
        One per file, in processing order.
    """
    out = []
    for kind, path in pending_files(inbox):
        sha = file_sha256(path)
        folder = path.parent
        now = pd.Timestamp.now(tz="UTC").floor("s")
        if status_of(sha) == "processed":
            dest = _free_name(folder / "processed", path.name, sha)
            shutil.move(str(path), dest)
            out.append(InboxOutcome(kind, path.name, sha, "duplicate", 0, dest))
            continue
        try:
            rows = parse_inbox_file(kind, path, ctx, sha)
        except MeterFileError as err:
            dest = _free_name(folder / "rejected", path.name, sha)
            message = f"{err}\n({DOCS_HINT})\n"
            record(_record(kind, path.name, sha, now, "rejected", None, dest, error=str(err)))
            shutil.move(str(path), dest)
            dest.with_name(dest.name + ".error.txt").write_text(message, encoding="utf-8")
            out.append(InboxOutcome(kind, path.name, sha, "rejected", 0, dest, error=str(err)))
            continue
        dest = _free_name(folder / "processed", path.name, sha)
        rec = _record(kind, path.name, sha, now, "processed", rows, dest)
        counts = store(kind, rows, rec)  # meters: conflicting rows go to quarantine
        shutil.move(str(path), dest)
        os.utime(dest)
        out.append(
            InboxOutcome(
                kind,
                path.name,
                sha,
                "processed",
                len(rows) - int(counts.get("quarantined_rows", 0)),
                dest,
                corrected_rows=int(counts.get("corrected_rows", 0)),
                corrected_days=tuple(counts.get("corrected_days", ())),
                quarantined_rows=int(counts.get("quarantined_rows", 0)),
            )
        )
    return out


def _record(
    kind: str,
    name: str,
    sha: str,
    now: pd.Timestamp,
    status: str,
    rows: pd.DataFrame | None,
    dest: Path,
    error: str | None = None,
) -> dict:
    days = sorted(rows["day"].unique()) if rows is not None and len(rows) else []
    return {
        "sha256": sha,
        "kind": kind,
        "file_name": name,
        "received_at": now,
        "status": status,
        "rows": 0 if rows is None else len(rows),
        "first_day": days[0] if days else None,
        "last_day": days[-1] if days else None,
        "new_rows": 0,
        "corrected_rows": 0,
        "corrected_days": "",
        "quarantined_rows": 0,
        "error": error,
        "moved_to": str(dest),
    }
