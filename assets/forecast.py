"""Forecast and scenario assets."""

import datetime as dt

import dagster as dg
import pandas as pd

from assets.ingest import history_days, meter_readings, prices, weather
from assets.partitions import daily_partitions
from assets.queries import actuals
from assets.resources import EcmResource, MlflowTracker
from models.forecasting import ModelCache, forecast_community
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

    Models are retrained weekly on a fixed grid (cached by training-data fingerprint) on what
    was known at each origin; intervals are conformally calibrated and the champion chosen on
    the 28 out-of-sample days before the day (see ``models.forecasting``). Logged to MLflow;
    when MLflow is down the forecasts are still written and the failure is reported.
    """
    cfg, day = ecm.community(), as_date(context.partition_key)
    wh = ecm.warehouse()
    act, wx = _inputs(ecm, day)
    cache = ModelCache(ecm.home_path() / "model_cache")
    results = forecast_community(act, wx, day, cfg, cache=cache)
    frames, meta = [], {}
    for target, res in results.items():
        try:
            run_id = mlflow_tracker.log_forecast(
                res, partition=context.partition_key, dagster_run_id=context.run_id
            )
        except Exception as exc:  # noqa: BLE001 - tracking down must not stop the plan
            run_id = None
            context.log.warning(f"{target}: MLflow unavailable, not logged: {exc}")
            meta[f"{target}_mlflow_error"] = str(exc)[:300]
        bt_dir = ecm.home_path() / "backtests" / context.partition_key
        bt_dir.mkdir(parents=True, exist_ok=True)
        res.backtest.to_parquet(bt_dir / f"{target}.parquet", index=False)
        notes = [
            f"{key.split('@')[0]}: training at {key.split('@')[1]} failed, the model trained "
            f"at {origin} was used"
            for key, origin in res.stale_models.items()
        ]
        fc = res.forecasts.assign(
            day=day,
            issue_time=res.issue_time,
            mlflow_run_id=run_id,
            weather_basis=res.weather_basis,
            model_origin=res.origin,
            window_coverage=res.forecasts["model"].map(
                {m: v.get("coverage_80") for m, v in res.metrics.items()}
            ),
            note="; ".join(notes) or None,
        )
        frames.append(fc)
        table = pd.DataFrame(res.metrics).T[["mae", "rmse", "pinball", "crps", "coverage_80"]]
        meta[f"{target}_window_scores"] = dg.MetadataValue.md(table.round(4).to_markdown())
        meta[f"{target}_champion"] = res.champion
        meta[f"{target}_weather_basis"] = res.weather_basis
        meta[f"{target}_training_origin"] = str(res.origin)
        meta[f"{target}_models_trained"] = res.trained
        if res.weights:
            meta[f"{target}_ensemble_weights"] = ", ".join(
                f"{m} {w:.2f}" for m, w in res.weights.items()
            )
        for name, error in res.failed_models.items():
            context.log.warning(f"{target}: model {name} failed to train: {error}")
            meta[f"{target}_{name}_failed"] = error[:300]
        for note in notes:
            context.log.warning(f"{target}: {note}")
        if run_id:
            meta[f"{target}_mlflow_run"] = run_id
            try:
                meta[f"{target}_mlflow_run_link"] = dg.MetadataValue.url(
                    mlflow_tracker.run_url(run_id)
                )
            except Exception as exc:  # noqa: BLE001 - a link is not worth failing the day
                context.log.warning(f"{target}: no MLflow link: {exc}")
    n = wh.replace("forecasts", pd.concat(frames, ignore_index=True), {"day": day})
    try:
        meta["mlflow_tracking_uri"] = mlflow_tracker.uri()
    except OSError as exc:  # its folder cannot be made: reported above, not fatal
        meta["mlflow_tracking_uri"] = f"unavailable: {exc}"
    meta["rows_written"] = n
    return dg.MaterializeResult(metadata=meta)


def _inputs(ecm: EcmResource, day: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Actuals known at the day's issue time and the weather rows the forecasts read."""
    cfg, wh = ecm.community(), ecm.warehouse()
    first = day - dt.timedelta(days=history_days(cfg))
    act = actuals(wh, cfg, first, day - dt.timedelta(days=1))
    wx = wh.query("SELECT * FROM weather WHERE day BETWEEN ? AND ?", [first, day])
    return act, wx


def train_models(ecm: EcmResource, day: dt.date, target: str) -> int:
    """Fit and cache the models the ``forecasts`` asset of ``day`` needs for one target.

    The same inputs and the same code as the asset (a cache hit there, by training-data
    fingerprint), so a parallel backfill can train a day's targets in separate processes
    before that day's forecasts run; nothing is written but the model cache.

    Returns
    -------
    int
        Models fitted (0 when every one was cached already).
    """
    act, wx = _inputs(ecm, day)
    cache = ModelCache(ecm.home_path() / "model_cache")
    res = forecast_community(act, wx, day, ecm.community(), cache=cache, targets=(target,))
    return res[target].trained


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
