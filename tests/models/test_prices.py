"""Price units are checked: EUR/MWh converted, per-MWh values declared per kWh refused."""

import pandas as pd
import pytest

from models.prices import PriceUnitError, parse_price_unit, to_per_kwh


def test_mwh_converted_to_kwh():
    out = to_per_kwh(pd.Series([85.0, 120.0]), "EUR/MWh", "EUR", "day-ahead.csv")
    assert list(out) == pytest.approx([0.085, 0.12])


def test_per_mwh_values_declared_per_kwh_refused_naming_the_unit():
    with pytest.raises(PriceUnitError, match="EUR/kWh.*EUR/MWh"):
        to_per_kwh(pd.Series([85.0, 120.0]), "EUR/kWh", "EUR", "day-ahead.csv")


def test_per_kwh_values_declared_per_mwh_refused():
    with pytest.raises(PriceUnitError, match="EUR/kWh"):
        to_per_kwh(pd.Series([0.085, 0.12]), "EUR/MWh", "EUR", "x")


def test_gaps_other_currency_and_unknown_units_refused():
    with pytest.raises(PriceUnitError, match="missing"):
        to_per_kwh(pd.Series([0.1, None]), "USD/kWh", "USD", "x")
    with pytest.raises(PriceUnitError, match="USD"):
        to_per_kwh(pd.Series([0.1]), "USD/kWh", "EUR", "x")
    with pytest.raises(PriceUnitError, match="unknown price unit"):
        parse_price_unit("euro per kilowatt")
