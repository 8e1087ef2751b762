"""Shared fixtures."""

from __future__ import annotations

import pytest

from models.config import load_config
from models.demo import DEFAULT_CONFIG


@pytest.fixture(scope="session")
def demo_config():
    """The bundled demo community configuration."""
    return load_config(DEFAULT_CONFIG)
