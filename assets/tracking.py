"""MLflow logging of forecaster training runs (one experiment per target family).

Every day logs one run per target (parameters and window metrics in one batch). The model
behind the day's champion is registered as a new version of the target's registered model
(``ecm-load``, ``ecm-pv``, ``ecm-price``) only when it differs from the version the
``@champion`` alias points to (another model, or a new weekly training origin), so the alias
moves when a challenger wins over the 28-day window or the champion is retrained, and the
registry does not grow by a version a day.

A backtest logs one parent run with a child run per target and model, and its plots as
artifacts (:func:`log_backtest`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from models.forecasting import TargetForecast

PIP_REQUIREMENTS = ["lightgbm", "pandas", "numpy", "scikit-learn"]


class ForecasterModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: feature frame in, ``point`` and quantile columns out (normalised)."""

    def __init__(self, forecaster: Any) -> None:
        self.forecaster = forecaster

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Predict quantiles for a feature frame."""
        return self.forecaster.predict_quantiles(model_input)


def _experiment(name: str, artifact_root: Path) -> str:
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifact_root.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(name, artifact_location=(artifact_root / name).as_uri())


def log_target_forecast(
    tracking_uri: str,
    artifact_root: Path,
    result: TargetForecast,
    *,
    partition: str,
    dagster_run_id: str,
    git_commit: str,
) -> str:
    """Log parameters, backtest metrics of every model vs the baseline, and the champion model.

    Returns
    -------
    str
        The MLflow run id.
    """
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(tracking_uri)
    exp_id = _experiment(f"ecm-{result.target}", artifact_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{result.target}-{partition}") as run:
            mlflow.set_tags(
                {
                    "dagster_run_id": dagster_run_id,
                    "partition": partition,
                    "git_commit": git_commit,
                    "champion": result.champion,
                    "issue_time": result.issue_time.isoformat(),
                }
            )
            client = mlflow.MlflowClient(tracking_uri)
            params: dict[str, Any] = {
                "training_rows": result.training_rows,
                "training_origin": str(result.origin),
            }
            for name, model in result.fitted.items():
                for k, v in model.get_params().items():
                    params[f"{name}.{k}"] = str(v)[:250]
            metrics = {
                f"{m}.{k}": float(v)
                for m, d in result.metrics.items()
                for k, v in d.items()
                if v == v  # NaN is not logged
            }
            client.log_batch(
                run.info.run_id,
                metrics=[mlflow.entities.Metric(k, v, 0, 0) for k, v in metrics.items()],
                params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()],
            )
            champion = result.fitted.get(result.champion)
            example = result.feature_example
            if result.weights:
                mlflow.set_tag(
                    "ensemble_weights",
                    ", ".join(f"{m}={w:.3f}" for m, w in result.weights.items()),
                )
            if (
                champion is not None
                and example is not None
                and _promotes(client, result.target, result.champion, str(result.origin), partition)
            ):
                signature = infer_signature(example, champion.predict_quantiles(example))
                info = mlflow.pyfunc.log_model(
                    name="forecaster",
                    python_model=ForecasterModel(champion),
                    signature=signature,
                    input_example=example,
                    pip_requirements=PIP_REQUIREMENTS,
                    registered_model_name=registered_name(result.target),
                )
                if info.registered_model_version is not None:
                    name = registered_name(result.target)
                    version = str(info.registered_model_version)
                    for key, value in (
                        ("model", result.champion),
                        ("partition", partition),
                        ("origin", str(result.origin)),
                    ):
                        client.set_model_version_tag(name, version, key, value)
                    client.set_registered_model_alias(name, "champion", version)
            return run.info.run_id


def _promotes(client: Any, target: str, model: str, origin: str, partition: str) -> bool:
    """Whether this day's champion becomes ``@champion`` of the target: the alias is missing,
    or points to another model or training origin set by this day or an earlier one. A
    re-run of an older day (or days forecast side by side in a backfill, finishing out of
    order) never moves the alias back to an older model."""
    try:
        v = client.get_model_version_by_alias(registered_name(target), "champion")
    except Exception:  # noqa: BLE001 - no registered model or alias yet
        return True
    if v.tags.get("partition", "") > partition:  # ISO dates order as strings
        return False
    return v.tags.get("model") != model or v.tags.get("origin") != origin


def registered_name(target: str) -> str:
    """The MLflow registered model of a target's forecaster, e.g. ``ecm-load``."""
    return f"ecm-{target}"


def log_backtest(
    tracking_uri: str, artifact_root: Path, result: Any, *, git_commit: str, out_dir: Path
) -> str:
    """Log a :class:`models.backtest.BacktestResult`: one parent run, a child run per target
    and model (its overall and community metrics), and plots as artifacts.

    Returns
    -------
    str
        The parent run id.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(tracking_uri)
    exp_id = _experiment("ecm-backtests", artifact_root)
    client = mlflow.MlflowClient(tracking_uri)
    m = result.metrics
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, g in m.groupby("target", sort=False):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for model, gm in g[g["scope"] == "horizon"].groupby("model"):
            gm = gm.assign(h=gm["key"].astype(int)).sort_values("h")
            axes[0].plot(gm["h"], gm["mae"], label=model)
        axes[0].set(xlabel="hour after issue [h]", ylabel="MAE", title=f"{target}: MAE by hour")
        axes[0].legend(fontsize=7)
        cov = g[(g["scope"] == "day") & (g["model"] == "champion")]
        axes[1].plot(pd.to_datetime(cov["key"]), cov["coverage_80"], marker=".")
        axes[1].axhspan(0.78, 0.82, color="green", alpha=0.15)
        axes[1].set(title=f"{target}: champion q10-q90 coverage per day", ylim=(0, 1))
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(out_dir / f"{target}.png", dpi=90)
        plt.close(fig)
    m.to_csv(out_dir / "metrics.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(
            experiment_id=exp_id, run_name=f"backtest {result.start}..{result.end}"
        ) as parent:
            mlflow.set_tags(
                {
                    "start": str(result.start),
                    "end": str(result.end),
                    "git_commit": git_commit,
                    **{f"seconds.{t}": f"{s:.1f}" for t, s in result.seconds.items()},
                }
            )
            mlflow.log_artifacts(str(out_dir))
            for (target, model), g in m[m["scope"].isin(["all", "community"])].groupby(
                ["target", "model"], sort=False
            ):
                with mlflow.start_run(
                    experiment_id=exp_id, run_name=f"{target}/{model}", nested=True
                ) as child:
                    metrics = [
                        mlflow.entities.Metric(f"{row.scope}.{col}", float(getattr(row, col)), 0, 0)
                        for row in g.itertuples()
                        for col in ("mae", "rmse", "pinball", "crps", "coverage_80", "skill_mae")
                        if getattr(row, col) == getattr(row, col)
                    ]
                    client.log_batch(child.info.run_id, metrics=metrics)
                    client.set_tag(child.info.run_id, "target", target)
                    client.set_tag(child.info.run_id, "model", model)
            return parent.info.run_id
