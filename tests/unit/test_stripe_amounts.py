"""Stripe's representation of amounts (adapters/stripe_psp.py), one case per rule of Stripe's currency
documentation: ISO 4217 minor units in, Stripe's units out, or the reason Stripe would refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.stripe_psp import (
    STRIPE_MAX_AMOUNT,
    STRIPE_THREE_DECIMAL,
    STRIPE_ZERO_DECIMAL,
    stripe_amount_problem,
    to_stripe_amount,
)
from server.domain.money import ISO_4217_CODES, Currency, Money


@pytest.mark.parametrize(
    ("amount", "currency", "sent"),
    [
        (1250, "EUR", 1250),  # two decimals in both
        (500, "JPY", 500),  # zero-decimal in both
        (5, "ISK", 500),  # special case: no minor unit in ISO, two decimals at Stripe
        (50000, "MGA", 500),  # zero-decimal at Stripe, two decimals in ISO
        (1250, "KWD", 1250),  # three decimals in both
        (20000, "HUF", 20000),  # charged with two decimals (the divisible-by-100 rule is for payouts)
        (20000, "TWD", 20000),
        (2000, "UGX", 2000),  # zero-decimal in both
    ],
)
def test_amounts_are_sent_in_stripes_units(amount: int, currency: str, sent: int) -> None:
    assert to_stripe_amount(Money(amount, currency)) == sent
    assert stripe_amount_problem(Money(amount, currency), charge=True) is None


@pytest.mark.parametrize(
    ("amount", "currency", "charge", "why"),
    [
        (49, "EUR", True, "minimum"),  # EUR 0.50 is Stripe's minimum charge
        (49, "EUR", False, None),  # refunds and transfers have no such minimum
        (29, "GBP", True, "minimum"),
        (49, "JPY", True, "minimum"),
        (17499, "HUF", True, "minimum"),
        (100_000_000, "EUR", True, "at most"),  # eight digits
        (100_000_000, "VND", True, "at most"),
        (1_000_000, "ISK", True, "at most"),  # 1,000,000 ISK is 100,000,000 in Stripe's units
        (1005, "KWD", True, "last"),  # the thousandth digit must be 0
        (12345, "MGA", True, "whole units"),  # no ariary fractions at Stripe
    ],
)
def test_what_stripe_refuses_is_named(amount: int, currency: str, charge: bool, why: str | None) -> None:
    problem = stripe_amount_problem(Money(amount, currency), charge=charge)
    if why is None:
        assert problem is None
    else:
        assert problem is not None
        assert why in problem


@given(code=st.sampled_from(sorted(ISO_4217_CODES)), amount=st.integers(1, 10**12))
def test_every_accepted_amount_converts_exactly(code: str, amount: int) -> None:
    """Whatever passes the check is sent without rounding: converting back gives the same amount."""
    money = Money(amount, code)
    if stripe_amount_problem(money, charge=False) is not None:
        return
    sent = to_stripe_amount(money)
    assert 1 <= sent <= STRIPE_MAX_AMOUNT
    iso = Currency.of(code).exponent
    stripe = 0 if code in STRIPE_ZERO_DECIMAL else 3 if code in STRIPE_THREE_DECIMAL else 2
    assert sent * 10**iso == amount * 10**stripe
