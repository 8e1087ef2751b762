"""MLflow logging of forecaster training runs (one experiment per target family).

Each day's champion is registered as a new version of the target's registered model
(``ecm-load``, ``ecm-pv``, ``ecm-price``), tagged with the model and partition, and the
``@champion`` alias points to it (the 28-day challenger rule is not built yet).
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
            params: dict[str, Any] = {"training_rows": result.training_rows}
            for name, model in result.fitted.items():
                for k, v in model.get_params().items():
                    params[f"{name}.{k}"] = str(v)[:250]
            mlflow.log_params(params)
            metrics = {
                f"{m}.{k}": float(v) for m, d in result.metrics.items() for k, v in d.items()
            }
            mlflow.log_metrics(metrics)
            champion = result.fitted[result.champion]
            example = result.feature_example
            if example is not None:
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
                    client = mlflow.MlflowClient(tracking_uri)
                    version = str(info.registered_model_version)
                    client.set_model_version_tag(
                        registered_name(result.target), version, "model", result.champion
                    )
                    client.set_model_version_tag(
                        registered_name(result.target), version, "partition", partition
                    )
                    client.set_registered_model_alias(
                        registered_name(result.target), "champion", version
                    )
            return run.info.run_id


def registered_name(target: str) -> str:
    """The MLflow registered model of a target's forecaster, e.g. ``ecm-load``."""
    return f"ecm-{target}"
