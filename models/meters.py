"""Meter files: reading, validation and conversion to the ``meter_readings`` contract.

The documented meter file format (CSV, Parquet or Excel ``.xlsx``), one row per metering point
and interval:

============================  ===============================================================
column                        meaning
============================  ===============================================================
``metering_point_id``         a metering point known to the community (master data)
``ts``                        interval start, ISO 8601 **with** a UTC offset
                              (``2017-06-14T07:00:00Z`` or ``2017-06-14T00:00:00-07:00``);
                              a local offset must be the community's at that instant
``kwh``                       energy in the interval [kWh], dot as decimal separator
``quality`` (optional)        ``measured`` (default) or ``estimated``
============================  ===============================================================

CSV files are UTF-8 (a byte-order mark is accepted), comma-separated, with a header row.
Austrian EDA consumption records (``.xml``) and Spanish Datadis downloads are read into these
columns by :mod:`models.exchange`.
Any problem raises :class:`MeterFileError` naming the file, the row (as the file shows it:
the header is row 1) and the field; nothing is written unless the whole file is valid.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.timeutil import day_intervals_utc

REQUIRED_COLUMNS = ("metering_point_id", "ts", "kwh")
QUALITIES = ("measured", "estimated")
MAX_FILE_BYTES = 512 * 1024 * 1024


class MeterFileError(ValueError):
    """A meter file is invalid. Names the file, row and field."""

    def __init__(self, path: str, message: str, row: int | None = None, field: str | None = None):
        self.path, self.row, self.field = str(path), row, field
        where = "".join(
            [f", row {row}" if row is not None else "", f", field {field!r}" if field else ""]
        )
        super().__init__(f"{path}{where}: {message}")


@dataclass(frozen=True)
class MeteringPointInfo:
    """What validation needs to know of a metering point."""

    owner_id: str
    interval_minutes: int
    valid_from: dt.date
    valid_to: dt.date | None = None


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (recorded with every reading for audit)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_meter_file(path: str | Path, tz: str | None = None) -> pd.DataFrame:
    """Read a meter file into raw string/number columns, without interpreting them.

    An Austrian EDA consumption record (``.xml``) or a Spanish Datadis download (a ``;``
    CSV with the Datadis header) is read into the same columns (``models.exchange``); the
    Datadis days are local, so it needs ``tz``.

    Raises
    ------
    MeterFileError
        Unreadable, too large, wrong delimiter or unknown extension (``ExchangeFileError``
        for an EDA or Datadis file, naming the element or row).
    """
    p = Path(path)
    if not p.is_file():
        raise MeterFileError(str(p), "no such file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise MeterFileError(str(p), f"file larger than {MAX_FILE_BYTES} bytes")
    suffix = p.suffix.lower()
    from models import exchange

    if suffix == ".xml":
        return exchange.read_eda_xml(p)
    try:
        if suffix == ".csv":
            text = p.read_bytes().decode("utf-8-sig")
            if exchange.is_datadis(text):
                if tz is None:
                    raise MeterFileError(str(p), "a Datadis file needs the community time zone")
                return exchange.read_datadis_csv(p, text, tz)
            header = text.split("\n", 1)[0]
            if ";" in header and "," not in header:
                raise MeterFileError(str(p), "delimiter must be ',' (found ';')", row=1)
            if "\t" in header and "," not in header:
                raise MeterFileError(str(p), "delimiter must be ',' (found a tab)", row=1)
            _check_field_counts(text, str(p))
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        elif suffix == ".parquet":
            df = pd.read_parquet(p)
        elif suffix in (".xlsx", ".xlsm"):
            df = pd.read_excel(p, dtype=object)
        else:
            raise MeterFileError(
                str(p), f"unknown file type {suffix!r} (csv, parquet, xlsx, EDA xml)"
            )
    except MeterFileError:
        raise
    except UnicodeDecodeError as exc:
        raise MeterFileError(str(p), f"not UTF-8 text: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - parsers raise many types on bad files
        raise MeterFileError(str(p), f"cannot parse file: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _check_field_counts(text: str, path: str) -> None:
    """Every CSV row has as many fields as the header (catches decimal commas, truncation)."""
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise MeterFileError(path, "empty file") from None
    except csv.Error as exc:
        raise MeterFileError(path, f"cannot parse header: {exc}", row=1) from None
    try:
        for i, row in enumerate(reader, start=2):
            if row and len(row) != len(header):
                last = reader.line_num == text.count("\n") + 1 and not text.endswith("\n")
                hint = (
                    "the file ends mid-row: truncated?"
                    if last
                    else "a decimal comma or a stray delimiter?"
                )
                raise MeterFileError(
                    path, f"expected {len(header)} fields, got {len(row)} ({hint})", row=i
                )
    except csv.Error as exc:
        hint = (
            " (the file ends inside a quoted field: truncated?)"
            if "end of data" in str(exc)
            else ""
        )
        raise MeterFileError(path, f"cannot parse: {exc}{hint}", row=reader.line_num) from None


def _row_no(i: int, header_rows: int) -> int:
    return i + 1 + header_rows


def _written_offsets(values: pd.Series) -> np.ndarray:
    """The UTC offset each timestamp was written with [s]; NaN where it says UTC (``Z`` or
    +00:00) or is not text."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if isinstance(v, str):
            try:
                off = pd.Timestamp(v.strip()).utcoffset()
            except (ValueError, TypeError):
                continue
            if off is not None and off.total_seconds() != 0:
                out[i] = off.total_seconds()
    return out


def _check_local_offsets(
    raw_ts: pd.Series,
    ts: pd.Series,
    mp: pd.Series,
    metering_points: Mapping[str, MeteringPointInfo],
    tz: str,
    source: str,
    header_rows: int,
) -> None:
    """Timestamps written in local time must carry the community's offset at that instant.

    A file that keeps one offset across a clock change (96 quarter-hours written for a
    23-hour day) would otherwise shift every reading after the change by an hour. Refused,
    naming the first such row and the day's interval count: "expected 92, got 96".
    """
    written = _written_offsets(raw_ts)
    if np.isnan(written).all():
        return
    idx = pd.DatetimeIndex(ts)
    local = (idx.tz_convert(tz).tz_localize(None) - idx.tz_localize(None)).total_seconds()
    bad = ~np.isnan(written) & (written != np.asarray(local))
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    m = mp.iloc[i]
    wall = (idx + pd.to_timedelta(np.nan_to_num(written), unit="s")).tz_localize(None)
    day = wall[i].date()
    same = (mp.to_numpy() == m) & ~np.isnan(written) & (wall.date == day)
    expected = len(day_intervals_utc(day, tz, metering_points[m].interval_minutes))
    raise MeterFileError(
        source,
        f"{m} on {day}: expected {expected}, got {int(same.sum())} intervals written in local "
        f"time; {raw_ts.iloc[i]} carries UTC offset {_hhmm(written[i])} where {tz} is at "
        f"{_hhmm(local[i])} (a clock change the file ignores?)",
        _row_no(i, header_rows),
        "ts",
    )


def _hhmm(seconds: float) -> str:
    m = int(round(seconds / 60))
    return f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"


def _parse_ts(values: pd.Series, path: str, header_rows: int) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):  # typed, with a zone (Parquet): no loop
        return pd.Series(pd.DatetimeIndex(values).tz_convert("UTC"))
    out = []
    for i, v in enumerate(values):
        if isinstance(v, pd.Timestamp | dt.datetime):
            ts = pd.Timestamp(v)
        else:
            s = str(v).strip()
            if not s:
                raise MeterFileError(path, "empty timestamp", _row_no(i, header_rows), "ts")
            try:
                ts = pd.Timestamp(s)
            except (ValueError, TypeError):
                raise MeterFileError(
                    path, f"not an ISO 8601 timestamp: {s!r}", _row_no(i, header_rows), "ts"
                ) from None
        if ts.tzinfo is None:
            raise MeterFileError(
                path,
                f"timestamp {v!s} has no UTC offset; local times are ambiguous on the autumn "
                "clock change: give an offset (e.g. -07:00) or Z",
                _row_no(i, header_rows),
                "ts",
            )
        out.append(ts.tz_convert("UTC"))
    return pd.Series(pd.DatetimeIndex(out, tz="UTC") if out else pd.DatetimeIndex([], tz="UTC"))


def parse_numbers(values: pd.Series, path: str, field: str, header_rows: int = 1) -> np.ndarray:
    """Parse a column of numbers (dot decimals), naming the file, row and field of a bad one.

    Raises
    ------
    MeterFileError
        A decimal comma, text, or a non-finite value.
    """
    out = np.empty(len(values))
    for i, v in enumerate(values):
        if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
            x = float(v)
        else:
            s = str(v).strip()
            if "," in s:
                raise MeterFileError(
                    path, f"decimal comma in {s!r}: use a dot", _row_no(i, header_rows), field
                )
            try:
                x = float(s)
            except ValueError:
                raise MeterFileError(
                    path, f"not a number: {s!r}", _row_no(i, header_rows), field
                ) from None
        if not math.isfinite(x):
            raise MeterFileError(
                path, f"not a finite number: {v!r}", _row_no(i, header_rows), field
            )
        out[i] = x
    return out


def _parse_kwh(values: pd.Series, path: str, header_rows: int) -> np.ndarray:
    return parse_numbers(values, path, "kwh", header_rows)


def validate_meter_frame(
    raw: pd.DataFrame,
    *,
    source: str,
    metering_points: Mapping[str, MeteringPointInfo],
    tz: str,
    sha256: str | None = None,
    header_rows: int = 1,
    ingested_at: pd.Timestamp | None = None,
    on_conflict: str = "raise",
) -> pd.DataFrame:
    """Validate raw meter rows and return them in the ``meter_readings`` contract.

    Parameters
    ----------
    raw : DataFrame
        Columns of the documented format (strings or already-typed values).
    source : str
        File name or source label, used in errors and stored with the rows.
    metering_points : mapping
        Known metering points with their owner, interval and validity dates.
    tz : str
        The community's time zone (to compute the local ``day``).
    sha256 : str, optional
        Hash of the source file.
    header_rows : int
        Rows before the first data row in the source, so errors show file row numbers.
    on_conflict : str
        ``raise``: the same interval twice with different values (or qualities) is an error.
        ``quarantine``: every row of such an interval is kept with ``conflict`` True and its
        ``file_row``, for the caller to hold back (the inbox stores them in
        ``quarantined_readings``, not in ``meter_readings``).

    Returns
    -------
    DataFrame
        Rows sorted by metering point and ts; exact duplicates removed. With
        ``on_conflict="quarantine"`` also ``conflict`` and ``file_row``.

    Raises
    ------
    MeterFileError
        Missing column, empty id, bad timestamp or number, unknown metering point, interval
        misaligned or outside the membership, or (``on_conflict="raise"``) the same interval
        twice with different values.
    """
    if on_conflict not in ("raise", "quarantine"):
        raise ValueError(f"on_conflict must be 'raise' or 'quarantine', got {on_conflict!r}")
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise MeterFileError(source, f"missing column(s) {missing}", row=1)
    extra = [c for c in raw.columns if c not in (*REQUIRED_COLUMNS, "quality")]
    if extra:
        raise MeterFileError(source, f"unexpected column(s) {extra}", row=1)
    if raw.empty:
        raise MeterFileError(source, "no readings in file")
    mp = raw["metering_point_id"].astype(str).str.strip()
    for i, v in enumerate(mp):
        if not v or v.lower() == "nan":
            raise MeterFileError(
                source, "empty metering point id", _row_no(i, header_rows), "metering_point_id"
            )
        if v not in metering_points:
            raise MeterFileError(
                source,
                f"unknown metering point {v!r}",
                _row_no(i, header_rows),
                "metering_point_id",
            )
    ts = _parse_ts(raw["ts"], source, header_rows)
    _check_local_offsets(raw["ts"], ts, mp, metering_points, tz, source, header_rows)
    kwh = _parse_kwh(raw["kwh"], source, header_rows)
    if "quality" in raw.columns:
        quality = raw["quality"].astype(str).str.strip().replace({"": "measured"})
        for i, q in enumerate(quality):
            if q not in QUALITIES:
                raise MeterFileError(
                    source,
                    f"quality must be one of {QUALITIES}, got {q!r}",
                    _row_no(i, header_rows),
                    "quality",
                )
    else:
        quality = pd.Series(["measured"] * len(raw))
    local = pd.DatetimeIndex(ts).tz_convert(tz)
    days = pd.Series(local.date)
    # per-row checks, vectorised (a first ingest holds months of readings): the first failing
    # row is reported, as a row-by-row loop would
    known = {m: metering_points[m] for m in mp.unique()}

    def per_row(f) -> np.ndarray:
        return mp.map({m: f(i) for m, i in known.items()}).to_numpy()

    step_s = per_row(lambda i: i.interval_minutes * 60).astype(np.int64)
    idx = pd.DatetimeIndex(ts)
    secs = idx.minute.to_numpy() * 60 + idx.second.to_numpy()
    misaligned = np.flatnonzero((secs % step_s != 0) | (idx.microsecond.to_numpy() != 0))
    day64 = local.tz_localize(None).normalize().to_numpy().astype("datetime64[D]")
    start = per_row(lambda i: np.datetime64(i.valid_from, "D")).astype("datetime64[D]")
    end = per_row(lambda i: np.datetime64(i.valid_to or dt.date.max, "D")).astype("datetime64[D]")
    outside = np.flatnonzero((day64 < start) | (day64 > end))
    for i in sorted([*misaligned[:1], *outside[:1]])[:1]:
        info, t, d = known[mp.iloc[i]], ts.iloc[i], days.iloc[i]
        if i in misaligned[:1]:
            raise MeterFileError(
                source,
                f"{t.isoformat()} is not aligned to {info.interval_minutes}-minute intervals",
                _row_no(i, header_rows),
                "ts",
            )
        raise MeterFileError(
            source,
            f"reading on {d} is outside the membership of {info.owner_id!r} "
            f"({info.valid_from} to {info.valid_to or 'open'})",
            _row_no(i, header_rows),
            "ts",
        )
    df = pd.DataFrame(
        {
            "metering_point_id": mp.to_numpy(),
            "ts": ts.to_numpy(),
            "kwh": kwh,
            "quality": quality.to_numpy(),
            "day": days.to_numpy(),
            "_row": [_row_no(i, header_rows) for i in range(len(raw))],
        }
    )
    df["ts"] = pd.DatetimeIndex(df["ts"]).tz_localize("UTC") if df["ts"].dt.tz is None else df["ts"]
    df["conflict"] = False
    dup = df.duplicated(["metering_point_id", "ts"], keep=False)
    if dup.any():
        groups = df[dup].groupby(["metering_point_id", "ts"])
        for (m, t), g in groups:
            if g["kwh"].nunique() > 1 or g["quality"].nunique() > 1:
                if on_conflict == "quarantine":
                    df.loc[g.index, "conflict"] = True
                    continue
                rows = ", ".join(str(r) for r in g["_row"])
                raise MeterFileError(
                    source,
                    f"interval {t.isoformat()} of {m!r} appears {len(g)} times with different "
                    f"values {sorted(g['kwh'].tolist())} (rows {rows})",
                    int(g["_row"].iloc[1]),
                    "kwh",
                )
        df = df[df["conflict"] | ~df.duplicated(["metering_point_id", "ts"], keep="first")]
    df = df.sort_values(["metering_point_id", "ts", "_row"]).reset_index(drop=True)
    if on_conflict == "quarantine":
        df = df.rename(columns={"_row": "file_row"})
    else:
        df = df.drop(columns=["_row", "conflict"])
    df["source"] = source
    df["source_sha256"] = sha256
    df["ingested_at"] = (ingested_at or pd.Timestamp.now(tz="UTC")).floor("s")
    return df


def load_meter_file(
    path: str | Path, *, metering_points: Mapping[str, MeteringPointInfo], tz: str
) -> pd.DataFrame:
    """Read and validate one meter file (see the module docstring for the format)."""
    raw = read_meter_file(path, tz)
    header_rows = 1
    return validate_meter_frame(
        raw,
        source=str(path),
        metering_points=metering_points,
        tz=tz,
        sha256=file_sha256(path),
        header_rows=header_rows,
    )
