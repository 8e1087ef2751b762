"""Forecast and scenario assets."""

import datetime as dt

import dagster as dg
import pandas as pd

from assets.ingest import history_days, meter_readings, prices, weather
from assets.partitions import daily_partitions
from assets.queries import actuals
from assets.resources import EcmResource, MlflowTracker
from models.forecasting import forecast_community
from models.scenarios import estimate_dependence, generate_scenarios
from models.timeutil import as_date


@dg.asset(
    partitions_def=daily_partitions,
    kinds={"lightgbm", "mlflow", "duckdb"},
    group_name="forecast",
    deps=[meter_readings, weather, prices],
)
def forecasts(
    context: dg.AssetExecutionContext, ecm: EcmResource, mlflow_tracker: MlflowTracker
) -> dg.MaterializeResult:
    """Quantile forecasts of load, PV and price for the day, from every model; champion marked.

    Trained only on what was known at the issue time (local midnight), backtested against the
    seasonal-naive baseline, and logged to MLflow (one experiment per target).
    """
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    first = day - dt.timedelta(days=history_days(cfg))
    act = actuals(wh, cfg, first, day - dt.timedelta(days=1))
    wx = wh.query("SELECT * FROM weather WHERE day BETWEEN ? AND ?", [first, day])
    results = forecast_community(act, wx, day, cfg)
    frames, meta = [], {}
    for target, res in results.items():
        run_id = mlflow_tracker.log_forecast(
            res, partition=context.partition_key, dagster_run_id=context.run_id
        )
        bt_dir = ecm.home_path() / "backtests" / context.partition_key
        bt_dir.mkdir(parents=True, exist_ok=True)
        res.backtest.to_parquet(bt_dir / f"{target}.parquet", index=False)
        frames.append(
            res.forecasts.assign(
                day=day,
                issue_time=res.issue_time,
                mlflow_run_id=run_id,
                weather_basis=res.weather_basis,
            )
        )
        table = pd.DataFrame(res.metrics).T[["mae", "rmse", "pinball", "coverage_80"]]
        meta[f"{target}_backtest"] = dg.MetadataValue.md(table.round(4).to_markdown())
        meta[f"{target}_champion"] = res.champion
        meta[f"{target}_weather_basis"] = res.weather_basis
        for name, error in res.failed_models.items():
            context.log.warning(f"{target}: model {name} failed to train: {error}")
            meta[f"{target}_{name}_failed"] = error[:300]
        meta[f"{target}_mlflow_run"] = run_id
    n = wh.replace("forecasts", pd.concat(frames, ignore_index=True), {"day": day})
    meta.update({"rows_written": n, "mlflow_tracking_uri": mlflow_tracker.uri()})
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    partitions_def=daily_partitions, kinds={"duckdb"}, group_name="forecast", deps=[forecasts]
)
def scenarios(context: dg.AssetExecutionContext, ecm: EcmResource) -> dg.MaterializeResult:
    """Joint load/PV/price scenarios with probabilities, keeping the correlation across hours."""
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    fc = wh.query("SELECT * FROM forecasts WHERE day = ? AND is_champion", [day])
    dep = {}
    for target, g in fc.groupby("target"):
        champion = str(g["model"].iloc[0])
        dep[target] = estimate_dependence(
            _champion_backtest(ecm, context.partition_key, target, champion)
        )
    s = cfg.scenarios
    df = generate_scenarios(
        fc, dep, day, n_samples=s.n_samples, n_scenarios=s.n_scenarios, seed=s.seed
    )
    n = wh.replace("scenarios", df, {"day": day})
    probs = df.groupby("scenario")["probability"].first()
    return dg.MaterializeResult(
        metadata={
            "rows_written": n,
            "scenarios": int(probs.size),
            "probabilities": ", ".join(f"{p:.3f}" for p in probs),
            **{f"{t}_rho_hours": round(d.rho_hours, 3) for t, d in dep.items()},
            **{f"{t}_common_factor": round(d.common, 3) for t, d in dep.items()},
        }
    )


def _champion_backtest(
    ecm: EcmResource, partition: str, target: str, champion: str
) -> pd.DataFrame:
    """The champion's backtest predictions written by the forecasts asset."""
    path = ecm.home_path() / "backtests" / partition / f"{target}.parquet"
    bt = pd.read_parquet(path)
    return bt[bt["model"] == champion]
