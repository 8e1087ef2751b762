"""EDA consumption records and Datadis downloads: read into the meter format, through the same
validation and inbox, refused with the file and the element or row named."""

from __future__ import annotations

import re
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from models.exchange import ExchangeFileError, read_datadis_csv, read_eda_xml
from models.warehouse import Warehouse
from pipelines.cli import app

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples" / "exchange"
EDA = SAMPLES / "eda_consumption_record.xml"
DATADIS = SAMPLES / "datadis_consumption.csv"
EDA_MP = "AT0010000000000000001000000000042"
CUPS = "ES0031405123456789AB0F"
runner = CliRunner()


def test_the_eda_sample_reads_every_quarter_hour_and_skips_the_allocation_codes():
    df = read_eda_xml(EDA)
    assert len(df) == 96 and set(df["metering_point_id"]) == {EDA_MP}
    ts = pd.to_datetime(df["ts"], utc=True)
    assert (ts.diff().dropna() == pd.Timedelta(minutes=15)).all()
    assert ts.iloc[0] == pd.Timestamp("2026-06-14T22:00Z")
    assert df["quality"].value_counts().to_dict() == {"measured": 94, "estimated": 2}


def test_the_datadis_sample_maps_hour_ending_local_hours_to_utc_across_the_dst_change():
    df = read_datadis_csv(DATADIS, DATADIS.read_text(), "Europe/Madrid")
    assert len(df) == 24 + 23
    ts = pd.to_datetime(df["ts"], utc=True)
    # consecutive UTC hours: 00:00 CET on the 28th .. 00:00 CEST on the 30th
    assert (ts.diff().dropna() == pd.Timedelta(hours=1)).all()
    assert ts.iloc[0] == pd.Timestamp("2026-03-27T23:00Z")
    assert ts.iloc[-1] == pd.Timestamp("2026-03-29T21:00Z")
    assert (df["quality"] == "estimated").sum() == 1
    assert df["kwh"].astype(float).gt(0).all()


def _broken_eda(tmp_path: Path, old: str, new: str) -> Path:
    p = tmp_path / "broken.xml"
    p.write_text(EDA.read_text().replace(old, new, 1))
    return p


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('UOM="KWH"', 'UOM="MWH"', r"EnergyData 1 \(1-1:1\.9\.0 G\.01\), attribute UOM: 'MWH'"),
        ("<cp:BQ>0.0450</cp:BQ>", "<cp:BQ>lots</cp:BQ>", r"EP 1, BQ: 'lots' is not a number"),
        ("<cp:MM>L1</cp:MM>", "<cp:MM>X9</cp:MM>", r"EP 1, MM: 'X9'"),
        ("<cp:MeteringIntervall>QH", "<cp:MeteringIntervall>D", r"MeteringIntervall: 'D'"),
        ("</cp:ConsumptionRecord>", "", r"broken XML"),
        ('<?xml version="1.0" encoding="UTF-8"?>', '<!DOCTYPE x [<!ENTITY a "b">]>', "DTD"),
        (f"<cp:MeteringPoint>{EDA_MP}</cp:MeteringPoint>", "", r"<MeteringPoint> is missing"),
    ],
)
def test_broken_eda_files_are_refused_naming_the_element(tmp_path, old, new, message):
    p = _broken_eda(tmp_path, old, new)
    with pytest.raises(ExchangeFileError, match=message) as err:
        read_eda_xml(p)
    assert str(p) in str(err.value)


@pytest.mark.parametrize(
    ("row", "field", "value", "message"),
    [
        (48, "Hora", "24:00", "hour 24 on a day of 23 hours"),
        (2, "Consumo_kWh", "n/a", "is not a number"),
        (3, "Metodo_obtencion", "Guess", "is not Real or Estimada"),
        (4, "Fecha", "2026-03-28", "is not a day"),
    ],
)
def test_broken_datadis_rows_are_refused_naming_row_and_field(tmp_path, row, field, value, message):
    lines = DATADIS.read_text().splitlines()
    header = lines[0].split(";")
    rec = lines[row - 1].split(";")
    rec[header.index(field)] = value
    lines[row - 1] = ";".join(rec)
    p = tmp_path / "datadis.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ExchangeFileError, match=re.escape(message)) as err:
        read_datadis_csv(p, p.read_text(), "Europe/Madrid")
    assert f"row {row}" in str(err.value) and field in str(err.value)


def _community(tmp_path: Path, tz: str, minutes: int, first: str, mp: str) -> Path:
    """A community made by `ecm init` with one member owning ``mp``."""
    root = tmp_path / "c"
    r = runner.invoke(
        app,
        ["init", str(root), "--name", "X", "--timezone", tz, "--latitude", "48",
         "--longitude", "16", "--currency", "EUR"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    cfg = root / "community.yaml"
    text = re.sub(r"interval_minutes: \d+", f"interval_minutes: {minutes}", cfg.read_text())
    text = re.sub(r"first_day: \S+", f"first_day: {first}", text)
    text = text.replace('"TO FILL IN"', '"test"')
    cfg.write_text(text)
    wb = openpyxl.load_workbook(root / "master_data.xlsx")
    wb["members"]["D2"] = pd.Timestamp(first).to_pydatetime()
    wb["metering_points"]["A2"] = mp
    wb.save(root / "master_data.xlsx")
    return cfg


@pytest.mark.parametrize(
    ("sample", "tz", "minutes", "first", "mp", "n"),
    [
        (EDA, "Europe/Vienna", 15, "2026-06-01", EDA_MP, 96),
        (DATADIS, "Europe/Madrid", 60, "2026-03-01", CUPS, 47),
    ],
)
def test_the_samples_import_through_the_inbox(
    tmp_path, monkeypatch, sample, tz, minutes, first, mp, n
):
    cfg = _community(tmp_path, tz, minutes, first, mp)
    monkeypatch.setenv("ECM_CONFIG", str(cfg))
    monkeypatch.delenv("ECM_HOME", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    r = runner.invoke(app, ["ingest", "meters", str(sample)])
    assert r.exit_code == 0, r.output
    homes = list(cfg.parent.glob("**/warehouse.duckdb"))
    assert len(homes) == 1
    rows = Warehouse(homes[0]).read("meter_readings")
    assert len(rows) == n and set(rows["metering_point_id"]) == {mp}
    assert (rows["quality"] == "estimated").sum() == (2 if sample == EDA else 1)


def test_an_unknown_metering_point_is_refused_and_nothing_is_stored(tmp_path, monkeypatch):
    cfg = _community(
        tmp_path, "Europe/Vienna", 15, "2026-06-01", "AT0010000000000000001000000000099"
    )
    monkeypatch.setenv("ECM_CONFIG", str(cfg))
    monkeypatch.delenv("ECM_HOME", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    r = runner.invoke(app, ["ingest", "meters", str(EDA)])
    assert r.exit_code == 2
    assert "eda_consumption_record.xml" in r.output and EDA_MP in r.output
    homes = list(cfg.parent.glob("**/warehouse.duckdb"))
    assert Warehouse(homes[0]).row_counts()["meter_readings"] == 0
