"""Write the small sample files of the meter exchange formats (data/examples/exchange/).

The files are made by the project: synthetic readings (a household profile) in the layout
of an Austrian EDA consumption record and of a Spanish Datadis hourly download, as
documented in ``models/exchange.py`` and ``data/examples/exchange/README.md``.
Usage: ``.venv/bin/python scripts/build_exchange_samples.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "data" / "examples" / "exchange"
EDA_MP = "AT0010000000000000001000000000042"
EDA_DAY = "2026-06-15"  # Europe/Vienna, a 96-quarter-hour day
CUPS = "ES0031405123456789AB0F"
DATADIS_DAYS = ("2026/03/28", "2026/03/29")  # Europe/Madrid; the clocks go forward on the 29th


def _profile(hour: float) -> float:
    """A household's load [kWh per hour]: night base, morning and evening peaks."""
    return round(
        0.18
        + 0.35 * math.exp(-((hour - 7.5) ** 2) / 2)
        + 0.6 * math.exp(-((hour - 19.5) ** 2) / 3),
        3,
    )


def eda() -> str:
    start = pd.Timestamp(EDA_DAY, tz="Europe/Vienna")
    eps = []
    for k in range(96):
        t = start + pd.Timedelta(minutes=15 * k)
        mm = "L2" if k in (40, 41) else "L1"  # two substituted values
        eps.append(
            "        <cp:EP>\n"
            f"          <cp:DTF>{t.isoformat()}</cp:DTF>\n"
            f"          <cp:MM>{mm}</cp:MM>\n"
            f"          <cp:BQ>{_profile(k / 4) / 4:.4f}</cp:BQ>\n"
            "        </cp:EP>\n"
        )
    shares = "".join(
        "        <cp:EP>\n"
        f"          <cp:DTF>{(start + pd.Timedelta(minutes=15 * k)).isoformat()}</cp:DTF>\n"
        "          <cp:MM>L1</cp:MM>\n          <cp:BQ>0.0100</cp:BQ>\n        </cp:EP>\n"
        for k in range(4)
    )
    end = start + pd.Timedelta(days=1)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<cp:ConsumptionRecord xmlns:cp="http://www.ebutilities.at/schemata/customerprocesses/'
        'consumptionrecord/01p31" xmlns:ct="http://www.ebutilities.at/schemata/'
        'customerprocesses/common/types/01p20">\n'
        '  <cp:MarketParticipantDirectory DocumentMode="SIMU" Duplicate="false" '
        'SchemaVersion="01.31">\n'
        "    <cp:RoutingHeader>\n"
        '      <ct:Sender AddressType="ECNumber"><ct:MessageAddress>AT001000</ct:MessageAddress>'
        "</ct:Sender>\n"
        '      <ct:Receiver AddressType="ECNumber"><ct:MessageAddress>RC100042'
        "</ct:MessageAddress></ct:Receiver>\n"
        "      <ct:DocumentCreationDateTime>2026-06-16T06:00:00+02:00"
        "</ct:DocumentCreationDateTime>\n"
        "    </cp:RoutingHeader>\n"
        "    <cp:Sector>01</cp:Sector>\n"
        "    <ct:MessageCode>DATEN_CRMSG</ct:MessageCode>\n"
        "  </cp:MarketParticipantDirectory>\n"
        "  <cp:ProcessDirectory>\n"
        "    <ct:MessageId>AT001000-SAMPLE-0001</ct:MessageId>\n"
        "    <ct:ConversationId>AT001000-SAMPLE-CONV-0001</ct:ConversationId>\n"
        "    <cp:ProcessDate>2026-06-16</cp:ProcessDate>\n"
        f"    <cp:MeteringPoint>{EDA_MP}</cp:MeteringPoint>\n"
        "    <cp:Energy>\n"
        "      <cp:MeteringReason>00</cp:MeteringReason>\n"
        f"      <cp:MeteringPeriodStart>{start.isoformat()}</cp:MeteringPeriodStart>\n"
        f"      <cp:MeteringPeriodEnd>{end.isoformat()}</cp:MeteringPeriodEnd>\n"
        "      <cp:MeteringIntervall>QH</cp:MeteringIntervall>\n"
        "      <cp:NumberOfMeteringIntervall>96</cp:NumberOfMeteringIntervall>\n"
        '      <cp:EnergyData MeterCode="1-1:1.9.0 G.01" UOM="KWH">\n'
        + "".join(eps)
        + "      </cp:EnergyData>\n"
        '      <cp:EnergyData MeterCode="1-1:2.9.0 P.01" UOM="KWH">\n'
        + shares
        + "      </cp:EnergyData>\n"
        "    </cp:Energy>\n"
        "  </cp:ProcessDirectory>\n"
        "</cp:ConsumptionRecord>\n"
    )


def datadis() -> str:
    lines = ["CUPS;Fecha;Hora;Consumo_kWh;Metodo_obtencion;Energia_vertida_kWh"]
    for day in DATADIS_DAYS:
        hours = 23 if day == "2026/03/29" else 24
        for k in range(1, hours + 1):
            method = "Estimada" if (day, k) == ("2026/03/28", 14) else "Real"
            kwh = f"{_profile(k - 0.5):.3f}".replace(".", ",")
            lines.append(f"{CUPS};{day};{k:02d}:00;{kwh};{method};0,000")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write both sample files."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "eda_consumption_record.xml").write_text(eda(), encoding="utf-8")
    (OUT / "datadis_consumption.csv").write_text(datadis(), encoding="utf-8")


if __name__ == "__main__":
    main()
