"""Money as integer minor units of an ISO 4217 currency.

Amounts never pass through floats: a charge of EUR 12.50 is `Money(1250, "EUR")`, ¥500 is
`Money(500, "JPY")`. The exponent table below is ISO 4217's; it decides how a minor-unit amount is
shown and how large an amount may be.
"""

from __future__ import annotations

from dataclasses import dataclass

# Exponents that are not 2. Every other code in ISO_4217_CODES has two minor digits.
_EXPONENTS: dict[str, int] = {
    # no minor unit
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # three minor digits
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # four minor digits
    "CLF": 4, "UYW": 4,
}  # fmt: skip

# Active ISO 4217 currency codes (funds and precious metals excluded, they are not payable).
ISO_4217_CODES: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN
    BZD CAD CDF CHF CLF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL
    GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW
    KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN
    NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK
    SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYI UYU
    UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)

# Largest amount accepted in one operation, in minor units of any currency: eight digits, the
# ceiling card PSPs apply (EUR 999,999.99; JPY 99,999,999). Larger sums go by bank transfer in parts.
MAX_AMOUNT_MINOR = 99_999_999


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
        return cls(code, _EXPONENTS.get(code, 2))


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
