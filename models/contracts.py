"""Data contracts: the columns, types and checks of every table ECM writes.

This module is the single place where the warehouse tables are defined. The DuckDB DDL
(:mod:`models.warehouse`), the pandera schemas that validate frames crossing module
boundaries, the asset checks and the README's table reference all derive from :data:`TABLES`.

Conventions: timestamps are tz-aware UTC and mark the *start* of an interval; ``day`` is the
community's local calendar day (the Dagster partition); energies are [kWh] per interval;
prices are [currency/kWh]; money amounts are DECIMAL(18, 2) in the community's currency.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa


@dataclass(frozen=True)
class Column:
    """One column of a table: name, DuckDB type, nullability and meaning (with unit)."""

    name: str
    sql: str
    doc: str
    nullable: bool = False
    check: pa.Check | None = None


@dataclass(frozen=True)
class Table:
    """A warehouse table: its columns, primary key and the column that partitions it."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partition: str | None = "day"

    @property
    def column_names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    def ddl(self) -> str:
        """``CREATE TABLE IF NOT EXISTS`` statement for DuckDB."""
        cols = [f'"{c.name}" {c.sql}{"" if c.nullable else " NOT NULL"}' for c in self.columns]
        cols.append(f"PRIMARY KEY ({', '.join(self.key)})")
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  " + ",\n  ".join(cols) + "\n)"


_NONNEG = pa.Check.ge(0)
_PROB = pa.Check.in_range(0, 1)
_TS = "TIMESTAMPTZ"


def _c(name: str, sql: str, doc: str, nullable: bool = False, check: pa.Check | None = None):
    return Column(name, sql, doc, nullable, check)


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(
            "members",
            "Community members (master data, from the configuration or an Excel workbook).",
            (
                _c("member_id", "VARCHAR", "member id"),
                _c("name", "VARCHAR", "display name"),
                _c("kind", "VARCHAR", "household | business | municipality"),
                _c("joined", "DATE", "first day of membership"),
                _c("left_on", "DATE", "last day of membership (null: still a member)", True),
                _c("pv_kwp", "DOUBLE", "rooftop PV peak power [kWp]", check=_NONNEG),
                _c("source_building", "VARCHAR", "demo: CityLearn building", True),
            ),
            ("member_id",),
            None,
        ),
        Table(
            "metering_points",
            "Metering points: one measured flow of a member or of a shared asset.",
            (
                _c("metering_point_id", "VARCHAR", "metering point id"),
                _c("owner_id", "VARCHAR", "member id, or the community owner id for shared assets"),
                _c("direction", "VARCHAR", "consumption | production"),
                _c("interval_minutes", "INTEGER", "reading interval [min]"),
            ),
            ("metering_point_id",),
            None,
        ),
        Table(
            "assets",
            "Batteries and PV plants, behind a member's meter or shared by the community.",
            (
                _c("asset_id", "VARCHAR", "asset id"),
                _c("owner_id", "VARCHAR", "member id or the community owner id"),
                _c("asset_type", "VARCHAR", "battery | pv"),
                _c("capacity_kwh", "DOUBLE", "battery usable capacity [kWh]", True),
                _c("power_kw", "DOUBLE", "battery charge/discharge power [kW]", True),
                _c("round_trip_efficiency", "DOUBLE", "battery round-trip efficiency [-]", True),
                _c("initial_soc_fraction", "DOUBLE", "battery SoC at the start of a day [-]", True),
                _c("kwp", "DOUBLE", "PV peak power [kWp]", True),
                _c("shared", "BOOLEAN", "owned by the community"),
            ),
            ("asset_id",),
            None,
        ),
        Table(
            "meter_readings",
            "Interval energy per metering point, as measured (raw, never overwritten silently).",
            (
                _c("metering_point_id", "VARCHAR", "metering point id"),
                _c("ts", _TS, "interval start (UTC)"),
                _c("kwh", "DOUBLE", "energy in the interval [kWh]"),
                _c("quality", "VARCHAR", "measured | estimated"),
                _c("day", "DATE", "local day of the interval"),
                _c("source", "VARCHAR", "file or source the reading came from"),
                _c("source_sha256", "VARCHAR", "SHA-256 of the source file", True),
                _c("ingested_at", _TS, "when the reading was stored (UTC)"),
            ),
            ("metering_point_id", "ts"),
        ),
        Table(
            "meter_readings_history",
            "Readings replaced by a later file (a correction): kept, never deleted, for audit.",
            (
                _c("metering_point_id", "VARCHAR", "metering point id"),
                _c("ts", _TS, "interval start (UTC)"),
                _c("kwh", "DOUBLE", "the replaced energy [kWh]"),
                _c("quality", "VARCHAR", "measured | estimated"),
                _c("day", "DATE", "local day of the interval"),
                _c("source", "VARCHAR", "file or source of the replaced reading"),
                _c("source_sha256", "VARCHAR", "SHA-256 of that file", True),
                _c("ingested_at", _TS, "when the replaced reading was stored (UTC)"),
                _c("superseded_at", _TS, "when it was replaced (UTC)"),
                _c("superseded_by", "VARCHAR", "file that replaced it"),
                _c("new_kwh", "DOUBLE", "the value that replaced it [kWh]"),
            ),
            ("metering_point_id", "ts", "superseded_at"),
        ),
        Table(
            "quarantined_readings",
            "Readings held back: the same interval delivered twice in one file with different "
            "values. Not billed; the interval counts as missing until a file delivers it once.",
            (
                _c("metering_point_id", "VARCHAR", "metering point id"),
                _c("ts", _TS, "interval start (UTC)"),
                _c("kwh", "DOUBLE", "one of the conflicting values [kWh]"),
                _c("quality", "VARCHAR", "measured | estimated"),
                _c("day", "DATE", "local day of the interval"),
                _c("source", "VARCHAR", "file the rows came from"),
                _c("source_sha256", "VARCHAR", "SHA-256 of that file"),
                _c("file_row", "INTEGER", "row of the file (1 = header)"),
                _c("reason", "VARCHAR", "why it was quarantined"),
                _c("quarantined_at", _TS, "when (UTC)"),
            ),
            ("source_sha256", "file_row"),
        ),
        Table(
            "inbox_files",
            "Every file taken from the inbox, once per SHA-256: processed or rejected, and why.",
            (
                _c("sha256", "VARCHAR", "SHA-256 of the file's bytes"),
                _c("kind", "VARCHAR", "meters | prices | weather"),
                _c("file_name", "VARCHAR", "name as delivered"),
                _c("received_at", _TS, "when ECM took it (UTC)"),
                _c("status", "VARCHAR", "processed | rejected"),
                _c("rows", "INTEGER", "rows stored (0 when rejected)"),
                _c("first_day", "DATE", "first local day the file covers", True),
                _c("last_day", "DATE", "last local day the file covers", True),
                _c("new_rows", "INTEGER", "rows not stored before"),
                _c("corrected_rows", "INTEGER", "stored rows replaced by a different value"),
                _c("corrected_days", "VARCHAR", "local days with corrected rows (comma list)"),
                _c(
                    "quarantined_rows",
                    "INTEGER",
                    "rows held back as conflicting duplicates (see quarantined_readings)",
                    True,
                ),
                _c("error", "VARCHAR", "why it was rejected (file, row, field)", True),
                _c("moved_to", "VARCHAR", "where the file is now"),
            ),
            ("sha256",),
            None,
        ),
        Table(
            "weather",
            "Weather observations and forecasts with the time each became known.",
            (
                _c("ts", _TS, "valid interval start (UTC)"),
                _c("issue_time", _TS, "when the value became known (UTC)"),
                _c("kind", "VARCHAR", "observation | forecast"),
                _c("source", "VARCHAR", "inbox | open-meteo"),
                _c("lead_hours", "DOUBLE", "ts - issue_time [h]"),
                _c("temperature_2m", "DOUBLE", "air temperature [degC]", True),
                _c("relative_humidity_2m", "DOUBLE", "relative humidity [%]", True),
                _c("diffuse_radiation", "DOUBLE", "diffuse horizontal irradiance [W/m^2]", True),
                _c("direct_normal_irradiance", "DOUBLE", "direct normal irradiance [W/m^2]", True),
                _c("day", "DATE", "local day of ts"),
            ),
            ("ts", "issue_time", "kind", "source"),
        ),
        Table(
            "prices",
            "Import (time-of-use) and export prices per interval, converted to [currency/kWh].",
            (
                _c("ts", _TS, "interval start (UTC)"),
                _c("price_type", "VARCHAR", "import | export"),
                _c("price_per_kwh", "DOUBLE", "price [currency/kWh]", check=_NONNEG),
                _c("currency", "VARCHAR", "ISO 4217 currency"),
                _c("source", "VARCHAR", "file or tariff the price came from"),
                _c("day", "DATE", "local day of ts"),
            ),
            ("ts", "price_type"),
        ),
        Table(
            "forecasts",
            "Quantile and point forecasts for the day, per model (champion marked).",
            (
                _c("day", "DATE", "local day forecast"),
                _c("issue_time", _TS, "forecast issue time (UTC): only data known then is used"),
                _c("target", "VARCHAR", "load | pv | price"),
                _c("unique_id", "VARCHAR", "member id, shared asset id, or 'import' for price"),
                _c(
                    "model",
                    "VARCHAR",
                    "seasonal_naive | naive_168 | clearsky_persistence | linear_quantile | "
                    "lightgbm | ensemble",
                ),
                _c("ts", _TS, "interval start (UTC)"),
                _c("point", "DOUBLE", "point forecast [kWh or currency/kWh]"),
                _c("q10", "DOUBLE", "10% quantile"),
                _c("q50", "DOUBLE", "median"),
                _c("q90", "DOUBLE", "90% quantile"),
                _c(
                    "is_champion",
                    "BOOLEAN",
                    "model given to the dispatch: the best naive, or a challenger beating it on "
                    "pinball loss and MAE over the out-of-sample window",
                ),
                _c("mlflow_run_id", "VARCHAR", "MLflow run of the training", True),
                _c(
                    "weather_basis",
                    "VARCHAR",
                    "forecast (weather forecasts as features) | clearsky (none stored: PV from "
                    "clear-sky physics, load without weather)",
                ),
                _c("model_origin", "DATE", "training origin of the model (weekly grid)", True),
                _c(
                    "window_coverage",
                    "DOUBLE",
                    "share of actuals in the model's raw [q10, q90] over the 28-day "
                    "out-of-sample window, before the conformal offset widened it [-]",
                    True,
                ),
                _c(
                    "note",
                    "VARCHAR",
                    "what the operator should know: an earlier model used because training failed",
                    True,
                ),
            ),
            ("day", "target", "unique_id", "model", "ts"),
        ),
        Table(
            "scenarios",
            "Joint scenarios of load, PV and price with probabilities (hour-correlated).",
            (
                _c("day", "DATE", "local day"),
                _c("scenario", "INTEGER", "scenario number"),
                _c("probability", "DOUBLE", "scenario probability [-]", check=_PROB),
                _c("target", "VARCHAR", "load | pv | price"),
                _c("unique_id", "VARCHAR", "member id, shared asset id, or 'import'"),
                _c("ts", _TS, "interval start (UTC)"),
                _c("value", "DOUBLE", "scenario value [kWh or currency/kWh]"),
            ),
            ("day", "scenario", "target", "unique_id", "ts"),
        ),
        Table(
            "dispatch_plan",
            "Battery plan and grid flows per member (or shared asset), interval and scenario.",
            (
                _c("day", "DATE", "local day"),
                _c(
                    "member_id", "VARCHAR", "member id, or the community owner id for shared assets"
                ),
                _c("ts", _TS, "interval start (UTC)"),
                _c("scenario", "VARCHAR", "'expected' (probability-weighted) or 's<k>'"),
                _c("probability", "DOUBLE", "scenario probability (1 for expected) [-]"),
                _c("load_kwh", "DOUBLE", "consumption [kWh]", check=_NONNEG),
                _c("pv_kwh", "DOUBLE", "PV generation [kWh]", check=_NONNEG),
                _c("charge_kwh", "DOUBLE", "battery charge, grid side [kWh]", check=_NONNEG),
                _c("discharge_kwh", "DOUBLE", "battery discharge, grid side [kWh]", check=_NONNEG),
                _c(
                    "soc_kwh",
                    "DOUBLE",
                    "battery state of charge at interval end [kWh]",
                    check=_NONNEG,
                ),
                _c("import_kwh", "DOUBLE", "grid withdrawal [kWh]", check=_NONNEG),
                _c("export_kwh", "DOUBLE", "grid injection [kWh]", check=_NONNEG),
                _c("import_price", "DOUBLE", "import price [currency/kWh]"),
                _c("export_price", "DOUBLE", "export price [currency/kWh]"),
                _c(
                    "community_shared_kwh",
                    "DOUBLE",
                    "community shared energy min(injection, withdrawal) of the interval's "
                    "incentive period (the hour of quarter-hours), spread equally over the "
                    "period's intervals [kWh]",
                ),
                _c("plan_kind", "VARCHAR", "optimal (LP) | fallback (rule-based)"),
            ),
            ("day", "member_id", "ts", "scenario"),
        ),
        Table(
            "flexible_plan",
            "Flexible loads in the day's plan (`flexible_loads` in the configuration): per "
            "asset and interval the planned electricity, the dwelling's indoor temperature, "
            "the EV's delivered energy, a cycle's start. Their energy is in the owner's "
            "`dispatch_plan.load_kwh`.",
            (
                _c("day", "DATE", "local day"),
                _c("asset_id", "VARCHAR", "air conditioner, EV or deferrable load id"),
                _c("kind", "VARCHAR", "air_conditioner | ev | deferrable"),
                _c("member_id", "VARCHAR", "owner"),
                _c("ts", _TS, "interval start (UTC)"),
                _c(
                    "energy_kwh",
                    "DOUBLE",
                    "planned electricity in the interval [kWh]",
                    check=_NONNEG,
                ),
                _c("power_kw", "DOUBLE", "planned electrical power [kW]", check=_NONNEG),
                _c(
                    "indoor_temp_c",
                    "DOUBLE",
                    "air conditioner: indoor temperature at the interval's end [degC]",
                    True,
                ),
                _c(
                    "outside_band_k",
                    "DOUBLE",
                    "air conditioner: distance outside the comfort band [K]",
                    True,
                ),
                _c(
                    "delivered_kwh",
                    "DOUBLE",
                    "EV: energy into its battery over the stay [kWh]",
                    True,
                ),
                _c("shortfall_kwh", "DOUBLE", "EV: need not met by departure [kWh]", True),
                _c("starts", "BOOLEAN", "deferrable: the cycle starts in this interval"),
            ),
            ("day", "asset_id", "ts"),
        ),
        Table(
            "allocations",
            "The day's community benefit allocated to members under each fairness rule.",
            (
                _c("day", "DATE", "local day"),
                _c("member_id", "VARCHAR", "member id, or the community owner id (community fund)"),
                _c("rule", "VARCHAR", "pro_rata_consumption | shapley"),
                _c("shared_kwh", "DOUBLE", "shared energy allocated to the member [kWh]"),
                _c("amount", "DECIMAL(18,2)", "benefit allocated [currency], whole cents"),
                _c("currency", "VARCHAR", "ISO 4217 currency"),
                _c("consumption_kwh", "DOUBLE", "metered consumption [kWh]"),
                _c("import_kwh", "DOUBLE", "grid withdrawal after batteries [kWh]"),
                _c("export_kwh", "DOUBLE", "grid injection after batteries [kWh]"),
                _c("standalone_cost", "DOUBLE", "grid cost acting alone [currency]"),
                _c("community_cost", "DOUBLE", "grid cost with the community plan [currency]"),
                _c("is_settlement", "BOOLEAN", "the rule that is billed (per the approved policy)"),
                _c("explanation", "VARCHAR", "why the member got this amount"),
                _c("version", "INTEGER", "settlement version of the day (1, 2, ...)"),
                _c(
                    "delta",
                    "DECIMAL(18,2)",
                    "amount minus the previous version's [currency]; null in version 1",
                    True,
                ),
            ),
            ("day", "version", "member_id", "rule"),
        ),
        Table(
            "settlement_versions",
            "Each settlement of a day: why it was made, on what inputs, under which approved "
            "policy; hash-chained in audit_ledger. Versions are never overwritten.",
            (
                _c("day", "DATE", "local day settled"),
                _c("version", "INTEGER", "1 for the first settlement, +1 for each restatement"),
                _c("created_at", _TS, "when it was settled (UTC)"),
                _c("reason", "VARCHAR", "first settlement | meter data corrected | ..."),
                _c("input_hash", "VARCHAR", "SHA-256 of the settlement's inputs"),
                _c("meter_hash", "VARCHAR", "SHA-256 of the day's meter readings"),
                _c("policy_hash", "VARCHAR", "SHA-256 of the fairness policy settled under"),
                _c("approval_reference", "VARCHAR", "the approval of that policy"),
                _c("settlement_rule", "VARCHAR", "the rule billed"),
                _c("total", "DECIMAL(18,2)", "benefit distributed [currency]"),
                _c("method", "VARCHAR", "how the Shapley value was computed (exact | sampled)"),
                _c("in_core", "BOOLEAN", "no coalition would gain by leaving (checked)"),
                _c("core_max_violation", "DOUBLE", "max v(S) - x(S) over coalitions [currency]"),
                _c("core_method", "VARCHAR", "exact (every coalition) | sampled"),
                _c("prev_hash", "VARCHAR", "hash of the previous ledger entry"),
                _c("hash", "VARCHAR", "this version's ledger hash (covers its allocation rows)"),
                _c(
                    "settled_by",
                    "VARCHAR",
                    "who settled it: $ECM_ACTOR, else the OS user",
                    True,
                ),
                _c("settled_in_run", "VARCHAR", "the Dagster run that settled it", True),
                _c(
                    "input_files",
                    "VARCHAR",
                    "JSON list of the meter files of the day's readings, each with its SHA-256",
                    True,
                ),
            ),
            ("day", "version"),
        ),
        Table(
            "policy_approvals",
            "Recorded approvals of fairness policies, each bound to the policy's hash.",
            (
                _c("policy_hash", "VARCHAR", "SHA-256 of the policy document"),
                _c("policy_json", "VARCHAR", "the policy approved (rules, settlement rule, ...)"),
                _c("approved_by", "VARCHAR", "who approved it"),
                _c("reference", "VARCHAR", "minutes or decision id"),
                _c("approved_on", "DATE", "date of the decision"),
                _c("recorded_at", _TS, "when ECM recorded it (UTC)"),
                _c("source", "VARCHAR", "configuration (first policy) | ecm policy approve"),
                _c("prev_hash", "VARCHAR", "hash of the previous ledger entry"),
                _c("hash", "VARCHAR", "this approval's ledger hash"),
            ),
            ("policy_hash",),
            None,
        ),
        Table(
            "plan_decisions",
            "Operator decisions on a day's plan (approve or reject), each bound to the plan's "
            "version; a plan whose version has no decision is 'proposed'.",
            (
                _c("day", "DATE", "local day of the plan"),
                _c("plan_version", "VARCHAR", "version of the plan decided on (plan hash)"),
                _c("decision", "VARCHAR", "approved | rejected"),
                _c("decided_by", "VARCHAR", "who decided ('auto-approve' for the configuration)"),
                _c("comment", "VARCHAR", "the operator's comment", True),
                _c("decided_at", _TS, "when it was recorded (UTC)"),
                _c("source", "VARCHAR", "cli | api | auto"),
                _c("prev_hash", "VARCHAR", "hash of the previous ledger entry"),
                _c("hash", "VARCHAR", "this decision's ledger hash"),
            ),
            ("day", "decided_at"),
            None,
        ),
        Table(
            "api_tokens",
            "API tokens of the service (`ecm token create`): only a SHA-256 of the secret is "
            "stored; a member token sees that member's data only.",
            (
                _c("token_id", "VARCHAR", "public id of the token (its first part)"),
                _c("secret_sha256", "VARCHAR", "SHA-256 of the token's secret part (hex)"),
                _c("role", "VARCHAR", "operator | member"),
                _c("member_id", "VARCHAR", "the member of a member token", True),
                _c("label", "VARCHAR", "what the token is for", True),
                _c("created_at", _TS, "when it was created (UTC)"),
                _c("expires_at", _TS, "when it stops being valid (UTC; null: never)", True),
                _c("revoked_at", _TS, "when it was revoked (UTC; null: valid)", True),
            ),
            ("token_id",),
            None,
        ),
        Table(
            "anomaly_cases",
            "The triage queue: a case per rule and subject while it stays active; daily flags "
            "join it instead of repeating (`ecm triage`).",
            (
                _c("case_id", "VARCHAR", "case id (rule, subject and first day)"),
                _c("rule", "VARCHAR", "the anomaly rule"),
                _c("subject_id", "VARCHAR", "metering point, member or series"),
                _c("first_seen", "DATE", "first local day flagged"),
                _c("last_seen", "DATE", "last local day flagged"),
                _c("severity", "VARCHAR", "highest severity flagged: low | medium | high"),
                _c("status", "VARCHAR", "open | acknowledged | confirmed | dismissed | resolved"),
                _c("owner", "VARCHAR", "who handles it", True),
                _c("note", "VARCHAR", "the latest note", True),
                _c("suppressed_until", "DATE", "dismissed: the same flag is swallowed until", True),
                _c("updated_at", _TS, "last change (UTC)"),
            ),
            ("case_id",),
            None,
        ),
        Table(
            "anomaly_case_events",
            "Every status change of a case: who, when, from and to, and the note.",
            (
                _c("case_id", "VARCHAR", "case id"),
                _c("changed_at", _TS, "when (UTC)"),
                _c("actor", "VARCHAR", "who changed it"),
                _c("action", "VARCHAR", "ack | confirm | dismiss | resolve | reopen"),
                _c("from_status", "VARCHAR", "status before"),
                _c("to_status", "VARCHAR", "status after"),
                _c("note", "VARCHAR", "the note given", True),
                _c("suppressed_until", "DATE", "dismiss: flags swallowed until", True),
            ),
            ("case_id", "changed_at"),
            None,
        ),
        Table(
            "backtests",
            "Scores of `ecm backtest` runs: every model, the ensemble, the daily champion and the "
            "naive baselines on the same rows, overall, per series, per horizon hour, per day "
            "and for the community sum.",
            (
                _c("backtest_id", "VARCHAR", "id of the backtest run"),
                _c("run_at", _TS, "when it ran (UTC)"),
                _c("start_day", "DATE", "first local day scored"),
                _c("end_day", "DATE", "last local day scored"),
                _c("target", "VARCHAR", "load | pv | price"),
                _c("model", "VARCHAR", "a registered model, ensemble, or champion"),
                _c("scope", "VARCHAR", "all | community | series | horizon | day"),
                _c("key", "VARCHAR", "series id, horizon hour or day ('' for all/community)"),
                _c("mae", "DOUBLE", "mean absolute error of the point [kWh or currency/kWh]"),
                _c("rmse", "DOUBLE", "root mean squared error of the point", True),
                _c("pinball", "DOUBLE", "mean pinball loss over the quantiles", True),
                _c("crps", "DOUBLE", "CRPS approximated from the quantiles", True),
                _c(
                    "coverage_80",
                    "DOUBLE",
                    "share of actuals in [q10, q90] (PV nights left out)",
                    True,
                ),
                _c("n", "DOUBLE", "rows scored"),
                _c("skill_mae", "DOUBLE", "1 - MAE / MAE of the best naive, same scope [-]", True),
                _c("mlflow_run_id", "VARCHAR", "MLflow parent run", True),
            ),
            ("backtest_id", "target", "model", "scope", "key"),
            None,
        ),
        Table(
            "audit_ledger",
            "Append-only hash chain over settlement versions and policy approvals.",
            (
                _c("seq", "INTEGER", "position in the chain (1, 2, ...)"),
                _c("kind", "VARCHAR", "settlement | approval"),
                _c("subject", "VARCHAR", "'<day> v<version>' or the policy hash"),
                _c("payload_hash", "VARCHAR", "SHA-256 of the entry's rows"),
                _c("created_at", _TS, "when it was appended (UTC)"),
                _c("prev_hash", "VARCHAR", "hash of entry seq - 1 ('' for the first)"),
                _c("hash", "VARCHAR", "SHA-256 of prev_hash, kind, subject, payload, time"),
            ),
            ("seq",),
            None,
        ),
        Table(
            "realised_flows",
            "Battery and grid flows on the metered day per controller, member (or the community "
            "owner) and interval; the state of charge carries from day to day.",
            (
                _c("day", "DATE", "local day"),
                _c(
                    "member_id", "VARCHAR", "member id, or the community owner id for shared assets"
                ),
                _c("ts", _TS, "interval start (UTC)"),
                _c(
                    "controller",
                    "VARCHAR",
                    "no_battery | self_consumption | ecm | perfect_foresight",
                ),
                _c("load_kwh", "DOUBLE", "metered consumption [kWh]", check=_NONNEG),
                _c("pv_kwh", "DOUBLE", "metered PV generation [kWh]", check=_NONNEG),
                _c("charge_kwh", "DOUBLE", "battery charge, grid side [kWh]", check=_NONNEG),
                _c("discharge_kwh", "DOUBLE", "battery discharge, grid side [kWh]", check=_NONNEG),
                _c("soc_kwh", "DOUBLE", "state of charge at interval end [kWh]", check=_NONNEG),
                _c("import_kwh", "DOUBLE", "net grid withdrawal [kWh]", check=_NONNEG),
                _c("export_kwh", "DOUBLE", "net grid injection [kWh]", check=_NONNEG),
                _c(
                    "mode",
                    "VARCHAR",
                    "rule | optimised | fallback_rule (the solve failed, the rule ran)",
                ),
            ),
            ("day", "member_id", "ts", "controller"),
        ),
        Table(
            "evaluation",
            "Community totals of each controller on the metered day.",
            (
                _c("day", "DATE", "local day"),
                _c(
                    "controller",
                    "VARCHAR",
                    "no_battery | self_consumption | ecm | perfect_foresight",
                ),
                _c("grid_cost", "DOUBLE", "imports x price - exports x export price [currency]"),
                _c("incentive", "DOUBLE", "incentive on shared energy [currency]"),
                _c("net_cost", "DOUBLE", "grid_cost - incentive [currency]"),
                _c("co2_kg", "DOUBLE", "imports x grid carbon intensity [kg]"),
                _c(
                    "peak_import_kwh",
                    "DOUBLE",
                    "highest community net import in an interval [kWh]",
                ),
                _c(
                    "ramping_kwh",
                    "DOUBLE",
                    "sum of |change of community net exchange| between intervals [kWh]",
                ),
                _c("shared_kwh", "DOUBLE", "min(community import, export) summed [kWh]"),
                _c(
                    "standalone_cost",
                    "DOUBLE",
                    "members acting alone (own battery, greedy rule) plus the shared plant "
                    "exporting with its battery idle [currency]",
                ),
                _c("benefit", "DOUBLE", "standalone_cost - net_cost [currency]"),
                _c("end_soc_kwh", "DOUBLE", "energy stored at the end of the day [kWh]"),
                _c(
                    "fallback_intervals",
                    "INTEGER",
                    "intervals where the optimisation failed and the rule ran",
                ),
                _c("seconds", "DOUBLE", "computation time of the controller for the day [s]"),
            ),
            ("day", "controller"),
        ),
        Table(
            "anomalies",
            "Flags on meter data and on forecasts against actuals, with severity and evidence.",
            (
                _c("day", "DATE", "local day the check ran for"),
                _c(
                    "rule",
                    "VARCHAR",
                    "gap | negative | spike | flatline | vacancy | forecast_miss | "
                    "conflicting_duplicate | negative_benefit | negative_amount | "
                    "settlement_jump | forecast_drift",
                ),
                _c("severity", "VARCHAR", "low | medium | high"),
                _c("subject_id", "VARCHAR", "metering point or forecast series flagged"),
                _c("ts_start", _TS, "first interval concerned (UTC)"),
                _c("ts_end", _TS, "end of the last interval concerned (UTC)"),
                _c("message", "VARCHAR", "what looks wrong"),
                _c("evidence", "VARCHAR", "JSON with the numbers behind the flag"),
            ),
            ("day", "rule", "subject_id", "ts_start"),
        ),
    ]
}
"""Every warehouse table, by name."""


def schema(table: str) -> pa.DataFrameSchema:
    """Pandera schema of a warehouse table (types, nullability, value checks, unique key).

    Parameters
    ----------
    table : str
        Name of a table in :data:`TABLES`.
    """
    t = TABLES[table]
    dtypes = {
        "VARCHAR": str,
        "DOUBLE": float,
        "INTEGER": int,
        "BOOLEAN": bool,
        "DATE": object,
        "DECIMAL(18,2)": object,
        _TS: pd.DatetimeTZDtype(tz="UTC"),
    }
    cols = {
        c.name: pa.Column(
            dtypes[c.sql],
            checks=[c.check] if c.check is not None else None,
            nullable=c.nullable,
            coerce=c.sql not in ("DATE", "DECIMAL(18,2)"),
        )
        for c in t.columns
    }
    return pa.DataFrameSchema(cols, strict=True, unique=list(t.key), name=table)


def conform(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Validate ``df`` against the table's contract and return it with columns in order.

    Raises
    ------
    pandera.errors.SchemaError
        Naming the column and failing rows.
    """
    out = schema(table).validate(df[TABLES[table].column_names].reset_index(drop=True))
    for c in TABLES[table].columns:
        if c.sql.startswith("DECIMAL"):
            # as exact text: DuckDB types a column of Python Decimals from a sample of its
            # rows (DECIMAL(4,2) for amounts under 100) and then refuses a larger one (found
            # settling 1,000 members); text is cast to the column's DECIMAL(18,2) on insert
            out[c.name] = [None if v is None or v != v else str(v) for v in out[c.name]]
    return out


APPEND_ONLY = {
    "inbox_files": "one row per file",
    "meter_readings_history": "appended, never deleted",
    "quarantined_readings": "appended per file, never deleted",
    "settlement_versions": "appended per version, never overwritten",
    "policy_approvals": "appended, never deleted",
    "plan_decisions": "appended, never deleted",
    "anomaly_case_events": "appended, never deleted",
    "audit_ledger": "append-only",
    "backtests": "appended per backtest run",
}


def contracts_markdown() -> str:
    """The README's table reference, generated from :data:`TABLES` (a test keeps it in sync)."""
    out = []
    for t in TABLES.values():
        scope = f"partitioned by `{t.partition}`" if t.partition else "replaced whole"
        if t.name in APPEND_ONLY:
            scope = APPEND_ONLY[t.name]
        out.append(f"#### `{t.name}`\n{t.doc} Key: `({', '.join(t.key)})`; {scope}.\n")
        out.append("| column | type | meaning |\n|---|---|---|")
        for c in t.columns:
            typ = c.sql + (" (nullable)" if c.nullable else "")
            out.append(f"| `{c.name}` | {typ} | {c.doc} |")
        out.append("")
    return "\n".join(out)
