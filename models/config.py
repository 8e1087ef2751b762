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
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

FAIRNESS_RULES = ("pro_rata_consumption", "shapley")
"""Allocation rules ECM implements (see :mod:`optimisation.allocation`)."""

INCENTIVE_SCHEMES = ("it_hourly_shared_energy",)
"""Incentive schemes ECM implements. ``it_hourly_shared_energy``: ARERA TIAD, a rate per kWh
of hourly shared energy = min(community injection, community withdrawal)."""


class ConfigError(ValueError):
    """The community configuration is invalid; the message names the file and the field(s)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Ids of members, metering points and assets: letters, digits, ``_``, ``.`` and ``-``, not
starting with a dot, at most 64 characters. They name files (statements), so nothing else."""


def _safe_id(v: str) -> str:
    if not re.fullmatch(SAFE_ID, v) or ".." in v:
        raise ValueError(
            f"unsafe id {v!r}: use letters, digits, '_', '.' and '-' (no '..', no spaces, "
            "no slashes), starting with a letter or digit, at most 64 characters"
        )
    return v


SafeId = Annotated[str, AfterValidator(_safe_id)]


class MeteringPoint(_Strict):
    """A metering point: one measured energy flow of one member or shared asset."""

    id: SafeId
    direction: Literal["consumption", "production"]


class Battery(_Strict):
    """A battery (home or shared).

    ``round_trip_efficiency`` is split evenly between charge and discharge
    (one-way efficiency = sqrt(round trip)).
    """

    id: SafeId
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

    id: SafeId
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

    id: SafeId
    kwp: float = Field(gt=0, description="peak power [kWp]")
    metering_point: SafeId


class SharedAssets(_Strict):
    """Assets owned by the community itself (not by one member)."""

    owner_id: SafeId = Field(default="COMMUNITY", description="the player id of the community fund")
    pv: SharedPV | None = None
    battery: Battery | None = None


_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"


class ComfortPeriod(_Strict):
    """A comfort band for some local hours (e.g. a wider band at night)."""

    hours: tuple[tuple[int, int], ...] = Field(description='local hours, "22-24" or a list')
    min_c: float = Field(description="lowest indoor temperature [degC]")
    max_c: float = Field(description="highest indoor temperature [degC]")

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, v: Any) -> tuple[tuple[int, int], ...]:
        return _hour_ranges(v)

    @model_validator(mode="after")
    def _band(self) -> ComfortPeriod:
        if self.min_c > self.max_c:
            raise ValueError(f"comfort period {self.hours}: min_c is above max_c")
        return self


class AirConditioner(_Strict):
    """A member's air conditioner, planned as thermal storage inside a comfort band
    (``optimisation.hvac``: first-order RC model of the dwelling). The defaults of R, C and
    COP are the Italian study's apartment (``models/italian_rec.py``: a 1.2 kW split unit in
    a 60 m2 flat); fit a dwelling's own R and C with ``optimisation.hvac.fit_rc``."""

    id: SafeId = Field(description="asset id")
    member: SafeId = Field(description="owner (a member id)")
    r_k_per_kw: float = Field(
        default=4.0, gt=0, description="thermal resistance of the envelope [K/kW]"
    )
    c_kwh_per_k: float = Field(default=2.5, gt=0, description="thermal capacitance [kWh/K]")
    cop: float = Field(default=3.2, gt=0, description="coefficient of performance [-]")
    max_power_kw: float = Field(default=1.2, ge=0, description="largest electrical power [kW]")
    comfort_periods: tuple[ComfortPeriod, ...] = Field(
        default=(),
        description="other bands for some local hours (the first period matching an hour "
        "wins; other hours keep comfort_min_c and comfort_max_c)",
    )
    comfort_min_c: float = Field(description="lowest indoor temperature [degC]")
    comfort_max_c: float = Field(description="highest indoor temperature [degC]")
    initial_temp_c: float = Field(description="indoor temperature at the start of the day [degC]")
    mode: Literal["cooling", "heating"] = "cooling"

    def band(self, local_hours: Sequence[int]) -> tuple[list[float], list[float]]:
        """The comfort band of each interval from its local hour [degC]."""
        lo, hi = [], []
        for h in local_hours:
            p = next((p for p in self.comfort_periods if any(a <= h < b for a, b in p.hours)), None)
            lo.append(self.comfort_min_c if p is None else p.min_c)
            hi.append(self.comfort_max_c if p is None else p.max_c)
        return lo, hi

    @model_validator(mode="after")
    def _band(self) -> AirConditioner:
        if self.comfort_min_c > self.comfort_max_c:
            raise ValueError(
                f"flexible_loads.air_conditioners {self.id} of {self.member}: comfort_min_c "
                f"{self.comfort_min_c} is above comfort_max_c {self.comfort_max_c}"
            )
        return self


class ElectricVehicle(_Strict):
    """A member's EV plugged in daily between two local times, needing energy by departure."""

    id: SafeId = Field(description="asset id")
    member: SafeId = Field(description="owner (a member id)")
    arrival: str = Field(pattern=_HHMM, description="local time it is plugged in (HH:MM)")
    departure: str = Field(pattern=_HHMM, description="local time it leaves (HH:MM, 24:00)")
    energy_kwh: float = Field(ge=0, description="energy to add by departure [kWh]")
    max_power_kw: float = Field(ge=0, description="largest charging power [kW]")
    efficiency: float = Field(default=0.92, gt=0, le=1, description="grid to battery [-]")


class DeferrableLoad(_Strict):
    """A cycle of fixed shape (washing machine, boiler) to run once inside a local window."""

    id: SafeId = Field(description="asset id")
    member: SafeId = Field(description="owner (a member id)")
    profile_kwh: tuple[float, ...] = Field(
        min_length=1, description="energy per interval of the cycle, in order [kWh]"
    )
    earliest: str = Field(pattern=_HHMM, description="local time it may start (HH:MM)")
    latest_end: str = Field(pattern=_HHMM, description="local time it must end by (HH:MM)")


class FlexibleLoads(_Strict):
    """Flexible loads planned with the batteries (none by default)."""

    air_conditioners: tuple[AirConditioner, ...] = ()
    evs: tuple[ElectricVehicle, ...] = ()
    deferrable: tuple[DeferrableLoad, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.air_conditioners or self.evs or self.deferrable)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_TYPES = (*WEEKDAYS, "holiday")


def _hour_ranges(v: Any) -> tuple[tuple[int, int], ...]:
    """Parse ``"08-19"`` or a list of them into [from, to) local hours."""
    items = [v] if isinstance(v, str) else list(v)
    out = []
    for item in items:
        parts = str(item).split("-")
        try:
            a, b = (int(x) for x in parts)
        except ValueError:
            raise ValueError(f"hours {item!r} must read 'HH-HH', e.g. '08-19'") from None
        if not 0 <= a < b <= 24:
            raise ValueError(f"hours {item!r}: need 0 <= from < to <= 24")
        out.append((a, b))
    return tuple(out)


class TouPeriod(_Strict):
    """One period of a time-of-use tariff. Empty filters match everything.

    A local interval is priced by the first period whose ``months``, ``days`` and ``hours``
    all match it. On a holiday (``tariffs.holidays``) only periods that list ``holiday`` in
    ``days``, or have no ``days`` filter, match.
    """

    name: str = Field(min_length=1)
    price_per_kwh: float = Field(ge=0, description="[currency/kWh]")
    months: tuple[int, ...] = Field(default=(), description="1..12; empty: every month")
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun", "holiday"], ...] = ()
    hours: tuple[tuple[int, int], ...] = Field(
        default=(), description="local [from, to) hour ranges, e.g. ['08-19']; empty: all"
    )

    @field_validator("months")
    @classmethod
    def _months(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= m <= 12 for m in v):
            raise ValueError("months must be between 1 and 12")
        return v

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, v: Any) -> Any:
        if v is None or v == () or v == []:
            return ()
        if isinstance(v, tuple) and all(isinstance(x, tuple) for x in v):
            return v
        return _hour_ranges(v)

    def matches(self, month: int, day_type: str, hour: int) -> bool:
        """Whether the period covers a local (month, day type, hour)."""
        if self.months and month not in self.months:
            return False
        if day_type == "holiday":
            if self.days and "holiday" not in self.days:
                return False
        elif self.days and day_type not in self.days:
            return False
        return not self.hours or any(a <= hour < b for a, b in self.hours)


class PriceSpec(_Strict):
    """Where one price (import or export) comes from: exactly one of the three.

    In YAML: a number (flat), ``inbox`` (price files dropped in ``inbox/prices/``), or
    ``{time_of_use: [periods]}``.
    """

    flat: float | None = Field(default=None, ge=0, description="[currency/kWh]")
    time_of_use: tuple[TouPeriod, ...] | None = None
    inbox: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError("a price is a number, 'inbox' or {time_of_use: [...]}")
        if isinstance(v, int | float):
            return {"flat": v}
        if v == "inbox":
            return {"inbox": True}
        if isinstance(v, str):
            raise ValueError(f"{v!r}: a price is a number, 'inbox' or {{time_of_use: [...]}}")
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> PriceSpec:
        n = (self.flat is not None) + (self.time_of_use is not None) + int(self.inbox)
        if n != 1:
            raise ValueError("give exactly one of: a flat number, 'inbox', time_of_use")
        if self.time_of_use is not None:
            gaps = [
                f"month {m} {d} {h:02d}h"
                for m in range(1, 13)
                for d in DAY_TYPES
                for h in range(24)
                if not any(p.matches(m, d, h) for p in self.time_of_use)
            ]
            if gaps:
                raise ValueError(
                    f"time_of_use leaves {len(gaps)} (month, day, hour) combinations unpriced, "
                    f"e.g. {', '.join(gaps[:3])}: end with a period without filters"
                )
        return self

    @property
    def describe(self) -> str:
        """Short label stored as the price's source."""
        if self.flat is not None:
            return "tariff:flat"
        return "inbox" if self.inbox else "tariff:time_of_use"


class Tariffs(_Strict):
    """Grid tariffs: the import and export price, each flat, time-of-use or from price files.

    Price files (``inbox/prices/``): ``ts, price_type, price_per_kwh`` and an optional
    ``unit`` column (default :attr:`price_file_unit`), see :mod:`models.inbox`.
    """

    import_price: PriceSpec
    export_price: PriceSpec
    holidays: tuple[dt.date, ...] = Field(
        default=(), description="local dates priced as 'holiday' by time-of-use periods"
    )
    price_file_unit: str | None = Field(
        default=None, description="unit of price files without a unit column (default CUR/kWh)"
    )
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

    @field_validator("approved_by", "reference")
    @classmethod
    def _filled(cls, v: str) -> str:
        if v.strip().upper().startswith("TO FILL IN"):
            raise ValueError(
                "not filled in: the fairness rules settle money only under a recorded "
                "approval (who approved them, and the minutes or decision id)"
            )
        return v


class Fairness(_Strict):
    """Fairness policy: which rules are computed and which one settles (is billed)."""

    rules: tuple[str, ...] = Field(min_length=1)
    settlement_rule: str
    loss_sharing: Literal["pro_rata_consumption", "equal"] = Field(
        default="pro_rata_consumption",
        description="how a day whose benefit is negative is shared (the members all lost "
        "against acting alone)",
    )
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

    training_days: int = Field(default=56, ge=14, description="days each model is fitted on [d]")
    retrain_every_days: int = Field(
        default=7, ge=1, le=28, description="training cadence: models are refitted on this grid [d]"
    )
    calibration_days: int = Field(
        default=28,
        ge=7,
        description="out-of-sample days before a forecast day that give the conformal offsets, "
        "the ensemble weights and the champion [d]",
    )
    champion_min_days: int = Field(
        default=28,
        ge=7,
        description="a challenger replaces the baseline only over a window this long [d]",
    )
    champion_margin: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        description="a challenger must beat the best naive by this share on pinball and MAE [-]",
    )
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    lightgbm_trees: int = Field(default=150, ge=10)
    holiday_country: str | None = Field(
        default=None,
        description="ISO country of the public holidays (python-holidays), e.g. US, DE, IT",
    )
    holiday_subdivision: str | None = Field(
        default=None, description="state or region code of the holidays, e.g. CA, BW"
    )

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
    auto_approve: bool = Field(
        default=False,
        description="approve each day's plan when its report is made ('auto-approve' in the "
        "audit ledger), so scheduled runs export approved setpoints; otherwise a plan stays "
        "proposed until `ecm plan approve`",
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
    ramping_penalty_per_kwh: float | None = Field(
        default=None,
        ge=0,
        description="on |change of community net exchange| [currency/kWh]; null: "
        "ramping_penalty_fraction of the tariff's spread",
    )
    ramping_penalty_fraction: float = Field(
        default=0.05,
        ge=0,
        description="without ramping_penalty_per_kwh: the ramping penalty is this fraction of "
        "each plan's import price spread (max - min over the horizon) [-]",
    )
    deviation_margin_fraction: float = Field(
        default=0.02,
        ge=0,
        description="the real-time layer deviates from the self-consumption rule only where "
        "the plan expects to gain at least this fraction of the mean import price per kWh "
        "deviated [-]; 0: every planned deviation",
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
    last_day: dt.date | None = Field(
        default=None, description="last local day with data; null: a live community"
    )
    demo_day: dt.date | None = Field(default=None, description="default day of `ecm demo`")

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
    flexible_loads: FlexibleLoads = FlexibleLoads()
    weather_source: Literal["inbox", "open-meteo", "none"] = Field(
        default="inbox",
        description="inbox: observation and forecast files dropped in inbox/weather/; "
        "open-meteo: live forecasts; none: no weather (PV from clear-sky physics)",
    )
    inbox_dir: str | None = Field(
        default=None,
        description="the community's inbox folder (relative to this file); null: $ECM_HOME/inbox",
    )
    missing_data: Literal["refuse", "estimate"] = Field(
        default="refuse",
        description="a day with missing meter intervals is refused, or settled on flagged "
        "estimates (same hour of the previous days)",
    )
    feed: Literal["none", "citylearn-2022"] = Field(
        default="none",
        description="a simulated distributor that delivers files into the inbox (demo only)",
    )
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
        fl = self.flexible_loads
        for kind, items in (
            ("air_conditioners", fl.air_conditioners),
            ("evs", fl.evs),
            ("deferrable", fl.deferrable),
        ):
            for item in items:
                if item.member not in ids:
                    raise ValueError(
                        f"flexible_loads.{kind} {item.id}: member {item.member!r} is not a member"
                    )
        owners = [a.member for a in fl.air_conditioners]
        dup = sorted({i for i in owners if owners.count(i) > 1})
        if dup:
            raise ValueError(f"flexible_loads.air_conditioners: more than one for {dup}")
        assets = [a.id for a in (*fl.air_conditioners, *fl.evs, *fl.deferrable)]
        dup = sorted({i for i in assets if assets.count(i) > 1})
        if dup:
            raise ValueError(f"flexible_loads: duplicate asset ids {dup}")
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
    lines.append("(every field is described under 'Onboard your community' in the README)")
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

    A daily run asks for the configuration in every step: the validated result is kept per
    process (it is frozen) and returned again while neither the file nor its workbook
    changed (size, modification time, inode), so an edit is seen at the next call.
    """
    path = Path(path)
    try:
        key = _file_key(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    hit = _CONFIG_CACHE.get(key)
    if hit is not None and all(_same_file(p, k) for p, k in hit[1]):
        return hit[0]
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping")
    raw["base_dir"] = str(path.parent.resolve())
    master = raw.pop("master_data_file", None)
    deps: list[tuple[Path, tuple]] = []
    if master is not None:
        xl = Path(master) if Path(master).is_absolute() else path.parent / master
        raw["members"] = read_master_data_excel(xl)
        deps.append((xl, _file_key(xl)))
    cfg = parse_config(raw, source=str(path))
    _CONFIG_CACHE.clear()  # one community per process in practice; never grows
    _CONFIG_CACHE[key] = (cfg, deps)
    return cfg


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CONFIG_CACHE: dict[tuple, tuple[CommunityConfig, list[tuple[Path, tuple]]]] = {}


def _file_key(path: Path) -> tuple:
    st = path.resolve().stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size, st.st_ino)


def _same_file(path: Path, key: tuple) -> bool:
    try:
        return _file_key(path) == key
    except OSError:
        return False


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
"""Sheets and required columns of the master-data workbook (``contracted_power_kw`` is an
optional column of ``members``)."""

_MEMBER_FIELD_COLUMN = {"id": "member_id", "left": "left", "joined": "joined"}
_BATTERY_FIELD_COLUMN = {"id": "battery_id"}


def _nan_to_none(v: Any) -> Any:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
        return None
    if isinstance(v, str) and not v.strip():
        return None
    return v


def _date_cell(v: Any, where: str) -> dt.date | None:
    v = _nan_to_none(v)
    if v is None:
        return None
    try:
        return pd.Timestamp(v).date()
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: not a date: {v!r}") from None


def read_master_data_excel(path: str | Path) -> list[dict[str, Any]]:
    """Read members, metering points and batteries from an Excel workbook.

    The workbook has the sheets and columns of :data:`MASTER_DATA_SHEETS`. Every member is
    validated here, so an error names the sheet, the row (as Excel shows it, the header is
    row 1) and the column.

    Returns
    -------
    list of dict
        The ``members`` list of the configuration.

    Raises
    ------
    ConfigError
        Missing sheet or column, empty, duplicate or unsafe id, a metering point or battery
        whose member does not exist, a member with two batteries, or an invalid value.
    """
    path = Path(path)
    try:
        sheets = pd.read_excel(path, sheet_name=None, dtype=object)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types
        raise ConfigError(f"{path}: cannot read workbook: {exc}") from None
    for sheet, cols in MASTER_DATA_SHEETS.items():
        if sheet not in sheets:
            raise ConfigError(
                f"{path}: missing sheet {sheet!r} (the workbook needs the sheets "
                f"{', '.join(MASTER_DATA_SHEETS)}; see 'Onboard your community' in the README)"
            )
        sheets[sheet].columns = [str(c).strip() for c in sheets[sheet].columns]
        missing = [c for c in cols if c not in sheets[sheet].columns]
        if missing:
            raise ConfigError(f"{path}: sheet {sheet!r} row 1: missing columns {missing}")

    def where(sheet: str, row: int, col: str) -> str:
        return f"{path}: sheet {sheet!r} row {row} column {col!r}"

    def ident(sheet: str, row: int, col: str, value: Any) -> str:
        v = _nan_to_none(value)
        if v is None:
            raise ConfigError(f"{where(sheet, row, col)}: empty")
        v = str(v).strip()
        try:
            return _safe_id(v)
        except ValueError as exc:
            raise ConfigError(f"{where(sheet, row, col)}: {exc}") from None

    members: dict[str, dict[str, Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for i, row in sheets["members"].iterrows():
        r = int(i) + 2
        mid = ident("members", r, "member_id", row["member_id"])
        if mid in members:
            raise ConfigError(
                f"{where('members', r, 'member_id')}: duplicate member id {mid!r} "
                f"(first on row {rows[mid]['members']})"
            )
        joined = _date_cell(row["joined"], where("members", r, "joined"))
        if joined is None:
            raise ConfigError(f"{where('members', r, 'joined')}: empty")
        rec = {
            "id": mid,
            "name": str(_nan_to_none(row["name"]) or mid),
            "kind": _nan_to_none(row["kind"]) or "household",
            "joined": joined,
            "left": _date_cell(row["left"], where("members", r, "left")),
            "pv_kwp": _nan_to_none(row["pv_kwp"]) or 0.0,
            "source_building": _nan_to_none(row["source_building"]),
            "metering_points": [],
        }
        if "contracted_power_kw" in row.index and _nan_to_none(row["contracted_power_kw"]):
            rec["contracted_power_kw"] = row["contracted_power_kw"]
        members[mid] = rec
        rows[mid] = {"members": r, "metering_points": [], "batteries": None}
    seen_mp: dict[str, int] = {}
    for i, row in sheets["metering_points"].iterrows():
        r = int(i) + 2
        mp = ident("metering_points", r, "metering_point_id", row["metering_point_id"])
        if mp in seen_mp:
            raise ConfigError(
                f"{where('metering_points', r, 'metering_point_id')}: duplicate metering point "
                f"{mp!r} (first on row {seen_mp[mp]})"
            )
        seen_mp[mp] = r
        mid = ident("metering_points", r, "member_id", row["member_id"])
        if mid not in members:
            raise ConfigError(
                f"{where('metering_points', r, 'member_id')}: unknown member {mid!r} "
                "(not in sheet 'members')"
            )
        members[mid]["metering_points"].append(
            {"id": mp, "direction": str(_nan_to_none(row["direction"]) or "").strip()}
        )
        rows[mid]["metering_points"].append(r)
    seen_bat: dict[str, int] = {}
    for i, row in sheets["batteries"].iterrows():
        r = int(i) + 2
        bid = ident("batteries", r, "battery_id", row["battery_id"])
        if bid in seen_bat:
            raise ConfigError(
                f"{where('batteries', r, 'battery_id')}: duplicate battery {bid!r} "
                f"(first on row {seen_bat[bid]})"
            )
        seen_bat[bid] = r
        mid = ident("batteries", r, "member_id", row["member_id"])
        if mid not in members:
            raise ConfigError(
                f"{where('batteries', r, 'member_id')}: battery without a member: unknown "
                f"member {mid!r} (not in sheet 'members')"
            )
        if rows[mid]["batteries"] is not None:
            raise ConfigError(
                f"{where('batteries', r, 'member_id')}: member {mid!r} already has a battery "
                f"(row {rows[mid]['batteries']}); one battery per member"
            )
        rec = {c: _nan_to_none(row[c]) for c in MASTER_DATA_SHEETS["batteries"][2:]}
        members[mid]["battery"] = {"id": bid, **{k: v for k, v in rec.items() if v is not None}}
        rows[mid]["batteries"] = r
    for mid, rec in members.items():
        try:
            Member.model_validate(rec)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [str(x) for x in err["loc"]]
            if loc and loc[0] == "battery":
                field = loc[1] if len(loc) > 1 else "battery_id"
                at = where(
                    "batteries", rows[mid]["batteries"], _BATTERY_FIELD_COLUMN.get(field, field)
                )
            elif loc and loc[0] == "metering_points" and len(loc) > 1 and loc[1].isdigit():
                field = loc[2] if len(loc) > 2 else "metering_point_id"
                at = where(
                    "metering_points",
                    rows[mid]["metering_points"][int(loc[1])],
                    "metering_point_id" if field == "id" else field,
                )
            else:
                field = loc[0] if loc else "member_id"
                at = where("members", rows[mid]["members"], _MEMBER_FIELD_COLUMN.get(field, field))
            raise ConfigError(f"{at}: {err['msg']} (member {mid!r})") from None
    return list(members.values())
