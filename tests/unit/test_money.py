from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.money import MAX_AMOUNT_MINOR, Currency, Money, UnknownCurrency, is_known_currency


@pytest.mark.parametrize(("code", "exponent"), [("EUR", 2), ("JPY", 0), ("KWD", 3), ("UYW", 4), ("USD", 2)])
def test_exponents_follow_iso_4217(code: str, exponent: int) -> None:
    assert Currency.of(code).exponent == exponent


@pytest.mark.parametrize("code", ["XYZ", "eur", "", "EURO", "XAU"])
def test_unknown_or_unpayable_codes_are_refused(code: str) -> None:
    assert not is_known_currency(code)
    with pytest.raises(UnknownCurrency):
        Currency.of(code)


@pytest.mark.parametrize(
    ("money", "text"),
    [(Money(1250, "EUR"), "12.50 EUR"), (Money(5, "EUR"), "0.05 EUR"), (Money(500, "JPY"), "500 JPY"),
     (Money(1001, "KWD"), "1.001 KWD"), (Money(-250, "EUR"), "-2.50 EUR")],
)  # fmt: skip
def test_format_uses_the_exponent(money: Money, text: str) -> None:
    assert money.format() == text


def test_amounts_must_be_integers() -> None:
    with pytest.raises(TypeError):
        Money(12.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "EUR")


def test_arithmetic_refuses_mixed_currencies() -> None:
    assert Money(100, "EUR") + Money(50, "EUR") == Money(150, "EUR")
    assert Money(100, "EUR") - Money(50, "EUR") == Money(50, "EUR")
    with pytest.raises(ValueError, match="currency mismatch"):
        _ = Money(100, "EUR") + Money(1, "USD")


@given(st.integers(0, MAX_AMOUNT_MINOR))
def test_format_round_trips_exactly(amount: int) -> None:
    units, _, minor = Money(amount, "EUR").format().split()[0].partition(".")
    assert int(units) * 100 + int(minor) == amount
