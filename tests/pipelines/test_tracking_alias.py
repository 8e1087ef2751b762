"""@champion moves forward only: a re-run of an older day never moves it back."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import pytest

from assets.tracking import _promotes, registered_name


@pytest.fixture
def client(tmp_path):
    c = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    c.create_registered_model(registered_name("load"))
    return c


def _alias(client, partition: str, model: str = "lightgbm", origin: str = "2017-04-10"):
    name = registered_name("load")
    v = client.create_model_version(name, source="file:///nothing")
    for k, val in (("partition", partition), ("model", model), ("origin", origin)):
        client.set_model_version_tag(name, v.version, k, val)
    client.set_registered_model_alias(name, "champion", v.version)


def test_no_alias_yet_promotes(client) -> None:
    assert _promotes(client, "load", "lightgbm", "2017-04-10", "2017-04-12")


def test_a_later_day_with_another_champion_promotes(client) -> None:
    _alias(client, "2017-04-12")
    assert _promotes(client, "load", "ensemble", "2017-04-10", "2017-04-13")
    assert _promotes(client, "load", "lightgbm", "2017-04-17", "2017-04-17")
    assert not _promotes(client, "load", "lightgbm", "2017-04-10", "2017-04-13")  # unchanged


def test_an_earlier_day_never_moves_the_alias_back(client) -> None:
    _alias(client, "2017-04-20", model="ensemble", origin="2017-04-17")
    assert not _promotes(client, "load", "lightgbm", "2017-04-10", "2017-04-12")
    got = SimpleNamespace(
        **client.get_model_version_by_alias(registered_name("load"), "champion").tags
    )
    assert got.partition == "2017-04-20"
