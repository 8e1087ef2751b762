"""Bills from flows."""

from __future__ import annotations

import numpy as np

from optimisation.settlement import grid_cost


def test_grid_cost_prices_imports_and_exports():
    imp = np.array([[1.0, 0.0]])
    exp = np.array([[0.0, 2.0]])
    assert grid_cost(imp, exp, np.array([0.3, 0.3]), np.array([0.05, 0.05]))[0] == 0.3 - 0.1
