"""The community configuration: members, assets, tariffs, incentive and fairness rules.

The configuration is a human-editable YAML file (see ``data/demo/community.yaml``). It is
validated at load time; every error names the offending field, e.g.
``members.3.battery.capacity_kwh: Input should be greater than or equal to 0``.

Master data (members, metering points, assets) may instead come from an Excel workbook, since
operators keep these in spreadsheets: set ``master_data_file`` and see
:func:`read_master_data_excel`.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

FAIRNESS_RULES = ("pro_rata_consumption", "shapley")
"""Allocation rules ECM implements (see :mod:`optimisation.allocation`)."""

INCENTIVE_SCHEMES = ("it_hourly_shared_energy",)
"""Incentive schemes ECM implements. ``it_hourly_shared_energy``: ARERA TIAD, a rate per kWh
of hourly shared energy = min(community injection, community withdrawal)."""


class ConfigError(ValueError):
    """The community configuration is invalid; the message names the file and the field(s)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeteringPoint(_Strict):
    """A metering point: one measured energy flow of one member or shared asset."""

    id: str = Field(min_length=1)
    direction: Literal["consumption", "production"]


class Battery(_Strict):
    """A battery (home or shared).

    ``round_trip_efficiency`` is split evenly between charge and discharge
    (one-way efficiency = sqrt(round trip)).
    """

    id: str = Field(min_length=1)
    capacity_kwh: float = Field(gt=0, description="usable energy capacity [kWh]")
    power_kw: float = Field(gt=0, description="max charge and discharge power [kW]")
    round_trip_efficiency: float = Field(gt=0, le=1)
    initial_soc_fraction: float = Field(default=0.5, ge=0, le=1)
    min_soc_fraction: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _soc_order(self) -> Battery:
        if self.initial_soc_fraction < self.min_soc_fraction:
            raise ValueError("initial_soc_fraction is below min_soc_fraction")
        return self


class Member(_Strict):
    """A community member with its metering points and behind-the-meter assets."""

    id: str = Field(min_length=1)
    name: str
    kind: Literal["household", "business", "municipality"] = "household"
    joined: dt.date
    left: dt.date | None = None
    source_building: str | None = Field(
        default=None, description="demo only: the CityLearn building whose data this member has"
    )
    pv_kwp: float = Field(default=0.0, ge=0, description="rooftop PV peak power [kWp]")
    metering_points: tuple[MeteringPoint, ...] = Field(min_length=1)
    battery: Battery | None = None
    contracted_power_kw: float | None = Field(
        default=None, gt=0, description="connection limit on import and export [kW]"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Member:
        directions = [mp.direction for mp in self.metering_points]
        if "consumption" not in directions:
            raise ValueError("member needs a consumption metering point")
        if self.pv_kwp > 0 and "production" not in directions:
            raise ValueError("member with pv_kwp > 0 needs a production metering point")
        if self.left is not None and self.left < self.joined:
            raise ValueError("left is before joined")
        return self

    def metering_point(self, direction: str) -> str | None:
        """Return the id of the member's metering point for ``direction``, if any."""
        for mp in self.metering_points:
            if mp.direction == direction:
                return mp.id
        return None


class SharedPV(_Strict):
    """The community PV plant. Its output profile is the mean measured per-kW profile."""

    id: str = Field(min_length=1)
    kwp: float = Field(gt=0, description="peak power [kWp]")
    metering_point: str = Field(min_length=1)


class SharedAssets(_Strict):
    """Assets owned by the community itself (not by one member)."""

    owner_id: str = Field(default="COMMUNITY", description="the player id of the community fund")
    pv: SharedPV | None = None
    battery: Battery | None = None


class Tariffs(_Strict):
    """Grid tariffs. The import price is a time-of-use series ingested into ``prices``."""

    import_price_source: str = Field(description="file with the time-of-use import price")
    import_price_unit: str = Field(description="unit of the import price file, e.g. USD/kWh")
    export_price: float = Field(ge=0, description="flat export (feed-in) price [currency/kWh]")
    carbon_intensity_source: str | None = Field(
        default=None, description="file with the grid carbon intensity [kg/kWh] by ts"
    )


class Incentive(_Strict):
    """The incentive on shared energy."""

    scheme: str
    rate_per_kwh: float = Field(
        ge=0, description="incentive per kWh of shared energy [currency/kWh]"
    )

    @field_validator("scheme")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in INCENTIVE_SCHEMES:
            raise ValueError(
                f"unknown incentive scheme {v!r}; known: {', '.join(INCENTIVE_SCHEMES)}"
            )
        return v


class Approval(_Strict):
    """A recorded governance approval of the fairness policy."""

    approved_by: str = Field(min_length=1)
    approved_on: dt.date
    reference: str = Field(min_length=1, description="minutes or decision id")


class Fairness(_Strict):
    """Fairness policy: which rules are computed and which one settles (is billed)."""

    rules: tuple[str, ...] = Field(min_length=1)
    settlement_rule: str
    approval: Approval

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for r in v:
            if r not in FAIRNESS_RULES:
                raise ValueError(f"unknown fairness rule {r!r}; known: {', '.join(FAIRNESS_RULES)}")
        return v

    @model_validator(mode="after")
    def _settles_known(self) -> Fairness:
        if self.settlement_rule not in self.rules:
            raise ValueError(f"settlement_rule {self.settlement_rule!r} is not among rules")
        return self


class ForecastSettings(_Strict):
    """Forecasting settings."""

    training_days: int = Field(default=56, ge=7)
    backtest_days: int = Field(default=7, ge=1)
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    lightgbm_trees: int = Field(default=150, ge=10)

    @field_validator("quantiles")
    @classmethod
    def _q(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if sorted(v) != list(v) or any(not 0 < q < 1 for q in v) or 0.5 not in v:
            raise ValueError("quantiles must be increasing, in (0, 1) and include 0.5")
        return v


class ScenarioSettings(_Strict):
    """Scenario generation settings."""

    n_samples: int = Field(default=200, ge=10)
    n_scenarios: int = Field(default=8, ge=1)
    seed: int = 20160801


class DispatchSettings(_Strict):
    """Dispatch (LP) settings."""

    solver: Literal["highs"] = "highs"
    time_limit_s: float = Field(default=120, gt=0)
    cycling_penalty_per_kwh: float = Field(
        default=1e-4, ge=0, description="small penalty on charge + discharge [currency/kWh]"
    )


class ControlSettings(_Strict):
    """The real-time layer and the grid-aware terms of its re-optimisation."""

    horizon_hours: float = Field(
        default=24, gt=0, le=24, description="look-ahead of every re-plan [h]"
    )
    terminal_value_fraction: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="energy left at the horizon's end is worth this fraction of the "
        "horizon's cheapest import price x discharge efficiency [-]",
    )
    ramping_penalty_per_kwh: float = Field(
        default=0.05, ge=0, description="on |change of community net exchange| [currency/kWh]"
    )
    peak_charge_per_kwh: float = Field(
        default=0.0,
        ge=0,
        description="demand charge on the highest community import [currency/kWh]",
    )
    carbon_price_per_kg: float = Field(default=0.0, ge=0, description="[currency/kg CO2]")
    feeder_cap_kw: float | None = Field(
        default=None, gt=0, description="community net import/export limit [kW]"
    )
    load_decay: float = Field(
        default=0.5, ge=0, lt=1, description="persistence of the newest load error per step [-]"
    )
    pv_decay: float = Field(
        default=0.5, ge=0, lt=1, description="persistence of the newest PV ratio per step [-]"
    )
    history_days: int = Field(default=7, ge=1, description="days of the load profile [d]")


class Community(_Strict):
    """Identity and location of the community."""

    id: str = Field(min_length=1)
    name: str
    timezone: str
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    currency: str = Field(min_length=3, max_length=3)
    interval_minutes: Literal[15, 60] = 60
    first_day: dt.date = Field(description="first local day with data")
    last_day: dt.date = Field(description="last local day with data")
    demo_day: dt.date

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v


class CommunityConfig(_Strict):
    """The whole validated configuration."""

    community: Community
    members: tuple[Member, ...] = Field(min_length=1)
    shared_assets: SharedAssets = SharedAssets()
    tariffs: Tariffs
    incentive: Incentive
    fairness: Fairness
    forecast: ForecastSettings = ForecastSettings()
    scenarios: ScenarioSettings = ScenarioSettings()
    dispatch: DispatchSettings = DispatchSettings()
    control: ControlSettings = ControlSettings()
    weather_source: Literal["bundled", "open-meteo"] = "bundled"
    base_dir: Path | None = Field(default=None, description="folder of the config file")

    @model_validator(mode="after")
    def _unique_ids(self) -> CommunityConfig:
        ids = [m.id for m in self.members]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate member ids: {dup}")
        if self.shared_assets.owner_id in ids:
            raise ValueError("shared_assets.owner_id collides with a member id")
        mps = [mp.id for m in self.members for mp in m.metering_points]
        if self.shared_assets.pv is not None:
            mps.append(self.shared_assets.pv.metering_point)
        dup = sorted({i for i in mps if mps.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate metering point ids: {dup}")
        return self

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        """The community's time zone."""
        return zoneinfo.ZoneInfo(self.community.timezone)

    @property
    def member_ids(self) -> list[str]:
        """Member ids in configuration order."""
        return [m.id for m in self.members]

    def resolve(self, path: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        p = Path(path)
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid community configuration"]
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> CommunityConfig:
    """Validate a configuration mapping.

    Parameters
    ----------
    data : Mapping
        The parsed YAML document.
    source : str
        Name used in error messages (the file path).

    Returns
    -------
    CommunityConfig

    Raises
    ------
    ConfigError
        Naming every invalid field.
    """
    try:
        return CommunityConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None


def load_config(path: str | Path) -> CommunityConfig:
    """Load and validate the community configuration from a YAML file.

    If the file names a ``master_data_file`` (an Excel workbook), members are read from it
    (see :func:`read_master_data_excel`) instead of the ``members`` list.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping")
    raw["base_dir"] = str(path.parent.resolve())
    master = raw.pop("master_data_file", None)
    if master is not None:
        xl = Path(master) if Path(master).is_absolute() else path.parent / master
        raw["members"] = read_master_data_excel(xl)
    return parse_config(raw, source=str(path))


MASTER_DATA_SHEETS = {
    "members": ["member_id", "name", "kind", "joined", "left", "pv_kwp", "source_building"],
    "metering_points": ["metering_point_id", "member_id", "direction"],
    "batteries": [
        "battery_id",
        "member_id",
        "capacity_kwh",
        "power_kw",
        "round_trip_efficiency",
        "initial_soc_fraction",
        "min_soc_fraction",
    ],
}
"""Sheets and columns of the master-data workbook."""


def _nan_to_none(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and pd.isna(v)) else v


def read_master_data_excel(path: str | Path) -> list[dict[str, Any]]:
    """Read members, metering points and batteries from an Excel workbook.

    The workbook has the sheets and columns of :data:`MASTER_DATA_SHEETS`. The result is the
    ``members`` list of the configuration, validated later with the rest of it.

    Raises
    ------
    ConfigError
        Naming the file, sheet, row (1-based, as Excel shows it) and column.
    """
    path = Path(path)
    try:
        sheets = pd.read_excel(path, sheet_name=None, dtype=object)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types
        raise ConfigError(f"{path}: cannot read workbook: {exc}") from None
    for sheet, cols in MASTER_DATA_SHEETS.items():
        if sheet not in sheets:
            raise ConfigError(f"{path}: missing sheet {sheet!r}")
        missing = [c for c in cols if c not in sheets[sheet].columns]
        if missing:
            raise ConfigError(f"{path}: sheet {sheet!r} misses columns {missing}")
    members: dict[str, dict[str, Any]] = {}
    for i, row in sheets["members"].iterrows():
        mid = _nan_to_none(row["member_id"])
        if mid is None:
            raise ConfigError(
                f"{path}: sheet 'members' row {int(i) + 2} column 'member_id' is empty"
            )
        members[str(mid)] = {
            "id": str(mid),
            "name": str(row["name"]),
            "kind": _nan_to_none(row["kind"]) or "household",
            "joined": pd.Timestamp(row["joined"]).date(),
            "left": None if _nan_to_none(row["left"]) is None else pd.Timestamp(row["left"]).date(),
            "pv_kwp": float(_nan_to_none(row["pv_kwp"]) or 0.0),
            "source_building": _nan_to_none(row["source_building"]),
            "metering_points": [],
        }
    for sheet, key in (("metering_points", "metering_points"), ("batteries", "battery")):
        for i, row in sheets[sheet].iterrows():
            mid = str(row["member_id"])
            if mid not in members:
                raise ConfigError(
                    f"{path}: sheet {sheet!r} row {int(i) + 2} column 'member_id': "
                    f"unknown member {mid!r}"
                )
            if key == "metering_points":
                members[mid][key].append(
                    {"id": str(row["metering_point_id"]), "direction": str(row["direction"])}
                )
            else:
                rec = {c: _nan_to_none(row[c]) for c in MASTER_DATA_SHEETS["batteries"][2:]}
                members[mid][key] = {"id": str(row["battery_id"]), **rec}
    return list(members.values())
