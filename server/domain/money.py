"""Money as integer minor units of an ISO 4217 currency.

Amounts never pass through floats: a charge of EUR 12.50 is `Money(1250, "EUR")`, ¥500 is
`Money(500, "JPY")`. The exponents are ISO 4217's (the iso4217 package); a PSP that counts in other
units (Stripe sends ISK with two decimals) converts in its adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import iso4217

# ISO 4217 itself, as published by its maintenance agency (SIX), from the iso4217 package: codes and
# minor-unit exponents change (BGN left on 2026-01-01 when Bulgaria adopted the euro; ANG became XCG in
# 2025), and a hand-typed table silently falls behind. Payable means: a currency with a minor unit
# (precious metals, SDR and test codes have none), not a fund code (IsFund: CLF, UYI, ...), and not
# an accounting unit of an institution (XAD, the Arab Monetary Fund's).
_NOT_PAYABLE_UNITS = frozenset({"XAD"})
_FUNDS: frozenset[str] = frozenset(
    entry.findtext("Ccy") or ""
    for entry in iso4217.raw_xml.iter("CcyNtry")
    if (name := entry.find("CcyNm")) is not None and name.attrib.get("IsFund")
)
_EXPONENTS: dict[str, int] = {
    currency.code: currency.exponent
    for currency in iso4217.Currency
    if currency.exponent is not None and currency.code not in _FUNDS | _NOT_PAYABLE_UNITS
}
ISO_4217_CODES: frozenset[str] = frozenset(_EXPONENTS)
ISO_4217_PUBLISHED = iso4217.__published__

# The service's own ceiling for one operation, in minor units of any currency: twelve digits, above any
# single payment the teams make and far inside int64. Each PSP narrows it (Stripe: eight digits in its
# own representation, see adapters/stripe_psp.py; SEPA: EUR 999,999,999.99), and the API edge checks
# the PSP's limits before a key is claimed.
MAX_AMOUNT_MINOR = 999_999_999_999


class UnknownCurrency(ValueError):
    """The code is not an active ISO 4217 currency."""


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency and the rules that depend on it."""

    code: str
    exponent: int

    @property
    def max_amount_minor(self) -> int:
        return MAX_AMOUNT_MINOR

    @classmethod
    def of(cls, code: str) -> Currency:
        if code not in ISO_4217_CODES:
            raise UnknownCurrency(code)
        return cls(code, _EXPONENTS[code])


def is_known_currency(code: str) -> bool:
    return code in ISO_4217_CODES


@dataclass(frozen=True, slots=True)
class Money:
    """A positive or zero integer amount of minor units in one currency."""

    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.amount_minor) is not int:  # bool and float are refused alike
            raise TypeError("amount_minor must be an int")
        Currency.of(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def format(self) -> str:
        """Decimal text for humans (e.g. "12.50 EUR"), computed with integers only."""
        exponent = Currency.of(self.currency).exponent
        sign = "-" if self.amount_minor < 0 else ""
        units, minor = divmod(abs(self.amount_minor), 10**exponent)
        if exponent == 0:
            return f"{sign}{units} {self.currency}"
        return f"{sign}{units}.{minor:0{exponent}d} {self.currency}"


def amount_to_take(
    requested: Money | None, available: int, currency: str, *, what: str, refuse: Callable[[str], Exception]
) -> int:
    """How much of `available` (minor units of `currency`) a request takes: all of it when nothing is
    asked, else the amount asked if it is in that currency and no more than that. `refuse` makes the
    business error (a refund's, a capture's) from the reason; `what` names the operation in it."""
    if requested is None:
        if available <= 0:
            raise refuse(f"nothing remains to {what} on this payment")
        return available
    if requested.currency != currency:
        raise refuse(f"the {what} must be in the payment's currency {currency}, not {requested.currency}")
    if requested.amount_minor > available:
        raise refuse(f"the {what} exceeds what remains on the payment ({Money(max(available, 0), currency).format()})")
    return requested.amount_minor
