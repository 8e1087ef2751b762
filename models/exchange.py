"""Meter data in the exchange formats of real communities, read into the documented meter
format (``models/meters.py``) so that the same validation, typed errors and inbox apply.

**Austrian EDA consumption records** (``.xml``): the ``ConsumptionRecord`` messages
(``CR_MSG``) that the distribution system operator sends to a community operator through
EDA (energy data exchange, `ebutilities.at <https://www.ebutilities.at>`_, schema family
``customerprocesses/consumptionrecord``). ECM reads, per ``ProcessDirectory``:

* ``MeteringPoint``: the 33-character metering point id (``AT00...``);
* each ``Energy`` block's ``MeteringIntervall`` (``QH`` quarter-hour or ``H`` hour) and its
  ``EnergyData`` of meter code ``1-1:1.9.0 G.01`` (energy withdrawn from the grid) or
  ``1-1:2.9.0 G.01`` (energy fed in), ``UOM="KWH"``; the community's own allocation codes
  (``... P.01`` and the like) are not read, because ECM computes the sharing itself;
* every ``EP``: ``DTF`` (interval start, with its UTC offset), ``BQ`` (energy [kWh]) and
  ``MM`` (method: ``L1`` a measured value; ``L2`` and ``L3`` substituted or provisional values,
  stored as ``estimated``).

**Spanish distributor data platform** (`Datadis <https://datadis.es>`_, ``.csv``): the hourly
consumption download, ``;``-separated with a header
``CUPS;Fecha;Hora;Consumo_kWh;Metodo_obtencion`` (an ``Energia_vertida_kWh`` column, the net
surplus fed in, may follow). ``Fecha`` is the local day (``YYYY/MM/DD`` or ``DD/MM/YYYY``),
``Hora`` the hour *ending* (``01:00`` .. ``24:00``, ``25:00`` on the day the clocks go back,
23 hours on the day they go forward), ``Consumo_kWh`` the energy with a decimal comma or
point, ``Metodo_obtencion`` ``Real`` (measured) or ``Estimada`` (estimated). The CUPS is the
metering point id. The surplus is net export, not PV production, so it is not imported.

Both are grid-side readings: for a member with on-site PV behind the same meter they are net
withdrawals, not gross consumption (ECM's load), unless the generation is metered apart.

Any problem raises :class:`ExchangeFileError` (a ``MeterFileError``) naming the file and the
element or row; the rows then go through ``validate_meter_frame`` like any meter file
(unknown metering points, wrong interval length, duplicates), so nothing is written unless
the whole file is valid.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET  # noqa: S405 - parsed with entities refused, see below
from pathlib import Path

import pandas as pd

from models.meters import MAX_FILE_BYTES, MeterFileError

EDA_WITHDRAWAL = "1-1:1.9.0 G.01"
EDA_INJECTION = "1-1:2.9.0 G.01"
EDA_CODES = (EDA_WITHDRAWAL, EDA_INJECTION)
EDA_METHODS = {"L1": "measured", "L2": "estimated", "L3": "estimated"}
EDA_INTERVALS = {"QH": 15, "H": 60}
DATADIS_HEADER = ("CUPS", "Fecha", "Hora", "Consumo_kWh", "Metodo_obtencion")
DATADIS_METHODS = {"real": "measured", "estimada": "estimated"}


class ExchangeFileError(MeterFileError):
    """An EDA or Datadis file that cannot be read; names the file and the element or row."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element, name: str, path: str, where: str) -> str:
    found = _children(el, name)
    if not found or not (found[0].text or "").strip():
        raise ExchangeFileError(path, f"{where}: element <{name}> is missing or empty")
    return (found[0].text or "").strip()


def is_eda(path: Path) -> bool:
    """Whether a file is an EDA consumption record (by extension)."""
    return path.suffix.lower() == ".xml"


def read_eda_xml(path: str | Path) -> pd.DataFrame:
    """Read an EDA ``ConsumptionRecord`` into rows of the documented meter format.

    Returns
    -------
    DataFrame
        ``metering_point_id, ts, kwh, quality`` as strings, one row per ``EP``, in file order.

    Raises
    ------
    ExchangeFileError
        Not XML, a DTD or entity (refused: no entity expansion), no ``ProcessDirectory``, a
        missing element, a unit other than kWh, an unknown interval or method, or a
        ``BQ`` that is not a number; each names the element (by position).
    """
    p = Path(path)
    if p.stat().st_size > MAX_FILE_BYTES:
        raise ExchangeFileError(str(p), f"file larger than {MAX_FILE_BYTES} bytes")
    data = p.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ExchangeFileError(str(p), "a DTD or entity declaration is not accepted")
    try:
        root = ET.fromstring(data)  # noqa: S314 - no DTD or entities (checked above)
    except ET.ParseError as exc:
        raise ExchangeFileError(str(p), f"broken XML: {exc}") from None
    if _local(root.tag) != "ConsumptionRecord":
        raise ExchangeFileError(
            str(p), f"root element is <{_local(root.tag)}>, expected <ConsumptionRecord>"
        )
    rows: list[dict[str, str]] = []
    directories = [e for e in root.iter() if _local(e.tag) == "ProcessDirectory"]
    if not directories:
        raise ExchangeFileError(str(p), "no <ProcessDirectory> element")
    for d_no, pd_el in enumerate(directories, start=1):
        where = f"ProcessDirectory {d_no}"
        mp = _text(pd_el, "MeteringPoint", str(p), where)
        for e_no, energy in enumerate(_children(pd_el, "Energy"), start=1):
            ewhere = f"{where}, Energy {e_no}"
            interval = _text(energy, "MeteringIntervall", str(p), ewhere)
            if interval not in EDA_INTERVALS:
                raise ExchangeFileError(
                    str(p),
                    f"{ewhere}, MeteringIntervall: {interval!r} is not one of "
                    f"{sorted(EDA_INTERVALS)}",
                )
            for data_no, ed in enumerate(_children(energy, "EnergyData"), start=1):
                dwhere = f"{ewhere}, EnergyData {data_no}"
                code = (ed.get("MeterCode") or "").strip()
                if code not in EDA_CODES:
                    continue  # the community's allocation codes: ECM computes sharing itself
                uom = (ed.get("UOM") or "").strip()
                if uom.upper() != "KWH":
                    raise ExchangeFileError(
                        str(p), f"{dwhere} ({code}), attribute UOM: {uom!r}, expected 'KWH'"
                    )
                for ep_no, ep in enumerate(_children(ed, "EP"), start=1):
                    pwhere = f"{dwhere}, EP {ep_no}"
                    dtf = _text(ep, "DTF", str(p), pwhere)
                    bq = _text(ep, "BQ", str(p), pwhere).replace(",", ".")
                    mm_el = _children(ep, "MM")
                    mm = (mm_el[0].text or "").strip() if mm_el else "L1"
                    if mm not in EDA_METHODS:
                        raise ExchangeFileError(
                            str(p), f"{pwhere}, MM: {mm!r} is not one of {sorted(EDA_METHODS)}"
                        )
                    try:
                        float(bq)
                    except ValueError:
                        raise ExchangeFileError(
                            str(p), f"{pwhere}, BQ: {bq!r} is not a number"
                        ) from None
                    rows.append(
                        {"metering_point_id": mp, "ts": dtf, "kwh": bq, "quality": EDA_METHODS[mm]}
                    )
    if not rows:
        raise ExchangeFileError(
            str(p), f"no EnergyData of meter code {' or '.join(EDA_CODES)} with readings"
        )
    return pd.DataFrame(rows, columns=["metering_point_id", "ts", "kwh", "quality"])


def is_datadis(text: str) -> bool:
    """Whether CSV text is a Datadis download (its header)."""
    head = text.split("\n", 1)[0].strip().split(";")
    return tuple(h.strip() for h in head[: len(DATADIS_HEADER)]) == DATADIS_HEADER


_DAY_YMD = re.compile(r"^(\d{4})/(\d{2})/(\d{2})$")
_DAY_DMY = re.compile(r"^(\d{2})/(\d{2})/(\d{4})$")
_HOUR = re.compile(r"^(\d{1,2}):00$")


def read_datadis_csv(path: str | Path, text: str, tz: str) -> pd.DataFrame:
    """Read a Datadis hourly consumption CSV into rows of the documented meter format.

    Parameters
    ----------
    text : str
        The file's text (UTF-8, decoded).
    tz : str
        The community's time zone: ``Fecha`` and ``Hora`` are local.

    Returns
    -------
    DataFrame
        ``metering_point_id, ts, kwh, quality`` as strings (``ts`` ISO 8601 in UTC).

    Raises
    ------
    ExchangeFileError
        A row with the wrong number of fields, a day, hour, energy or method that cannot
        be read, or an hour beyond the local day's length; each names the row (the header is
        row 1) and the field.
    """
    p = str(path)
    reader = csv.reader(io.StringIO(text), delimiter=";")
    header = [h.strip() for h in next(reader)]
    rows = []
    for i, rec in enumerate(reader, start=2):
        if not rec or all(not f.strip() for f in rec):
            continue
        if len(rec) != len(header):
            raise ExchangeFileError(p, f"{len(rec)} fields, the header has {len(header)}", row=i)
        f = dict(zip(header, (v.strip() for v in rec), strict=True))
        m = _DAY_YMD.match(f["Fecha"]) or _DAY_DMY.match(f["Fecha"])
        if m is None:
            raise ExchangeFileError(p, f"{f['Fecha']!r} is not a day", row=i, field="Fecha")
        y, mo, d = m.groups() if _DAY_YMD.match(f["Fecha"]) else m.groups()[::-1]
        try:
            start = pd.Timestamp(int(y), int(mo), int(d)).tz_localize(tz)
        except (ValueError, TypeError) as exc:
            raise ExchangeFileError(p, f"{f['Fecha']!r}: {exc}", row=i, field="Fecha") from None
        h = _HOUR.match(f["Hora"])
        if h is None:
            raise ExchangeFileError(p, f"{f['Hora']!r} is not an hour HH:00", row=i, field="Hora")
        k = int(h.group(1))
        next_day = (start.tz_localize(None) + pd.Timedelta(days=1)).tz_localize(tz)
        hours = int((next_day - start) / pd.Timedelta(hours=1))
        if not 1 <= k <= hours:
            raise ExchangeFileError(p, f"hour {k} on a day of {hours} hours", row=i, field="Hora")
        kwh = f["Consumo_kWh"].replace(",", ".")
        try:
            float(kwh)
        except ValueError:
            raise ExchangeFileError(
                p, f"{f['Consumo_kWh']!r} is not a number", row=i, field="Consumo_kWh"
            ) from None
        method = DATADIS_METHODS.get(f["Metodo_obtencion"].lower())
        if method is None:
            raise ExchangeFileError(
                p,
                f"{f['Metodo_obtencion']!r} is not Real or Estimada",
                row=i,
                field="Metodo_obtencion",
            )
        ts = start.tz_convert("UTC") + pd.Timedelta(hours=k - 1)
        rows.append(
            {
                "metering_point_id": f["CUPS"],
                "ts": ts.isoformat(),
                "kwh": kwh,
                "quality": method,
            }
        )
    return pd.DataFrame(rows, columns=["metering_point_id", "ts", "kwh", "quality"])
