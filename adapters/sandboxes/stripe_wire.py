"""Stripe's wire conventions for the offline sandbox: form decoding, parameter checks, error bodies.

Kept apart from the resource rules (``stripe_intents``, ``stripe_refunds``, ``stripe_transfers``) so
those read like Stripe's API reference and this module reads like Stripe's HTTP conventions.
Everything here is pure: no state, no locks, no I/O. Money is always an ``int`` in minor units;
nothing here ever produces a float.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias
from urllib.parse import parse_qsl

from adapters.sandboxes.json_types import JsonDict

ParamValue: TypeAlias = str | list["ParamValue"] | dict[str, "ParamValue"]
Params: TypeAlias = dict[str, ParamValue]

DOC_URL_BASE = "https://stripe.com/docs/error-codes/"


def json_bytes(body: JsonDict) -> bytes:
    """Stripe's JSON layout: indented, with a final newline."""
    return (json.dumps(body, indent=2) + "\n").encode()


# --------------------------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ApiResponse:
    """One answer of the API, plus the two facts the idempotency layer and the counters need.

    ``stored``: Stripe keeps the answer under the idempotency key (the endpoint began executing).
    ``executed``: the operation really changed PSP state (an intent charged, a refund or transfer made).
    """

    status: int
    body: JsonDict
    stored: bool = True
    executed: bool = False


class StripeApiError(Exception):
    """An error answer in Stripe's shape; raised by the rules, rendered by the HTTP layer.

    ``stored`` defaults to False because Stripe does not save validation failures under an
    idempotency key: a corrected retry with the same key must still execute.
    """

    def __init__(self, status: int, error: JsonDict, *, stored: bool = False) -> None:
        super().__init__(str(error.get("message")))
        self.status = status
        self.error = error
        self.stored = stored

    def response(self) -> ApiResponse:
        """The answer to send; an error never means the operation executed."""
        return ApiResponse(self.status, {"error": self.error}, stored=self.stored, executed=False)


def error_body(
    error_type: str,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    extra: JsonDict | None = None,
) -> JsonDict:
    """Build Stripe's ``error`` object; ``doc_url`` follows Stripe's error-code pages."""
    body: JsonDict = {}
    if code is not None:
        body["code"] = code
        body["doc_url"] = DOC_URL_BASE + code.replace("_", "-")
    body["message"] = message
    if param is not None:
        body["param"] = param
    body["type"] = error_type
    if extra:
        body.update(extra)
    return body


def invalid_request(
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    status: int = 400,
    stored: bool = False,
) -> StripeApiError:
    """Stripe's ``invalid_request_error`` (the type Stripe uses for 400, 401, 404 and 429 alike)."""
    body = error_body("invalid_request_error", message, code=code, param=param)
    return StripeApiError(status, body, stored=stored)


def resource_missing(object_name: str, object_id: str, *, param: str, status: int = 404) -> StripeApiError:
    """Stripe's ``No such <object>: '<id>'`` answer."""
    return invalid_request(f"No such {object_name}: '{object_id}'", param=param, code="resource_missing", status=status)


def missing_param(name: str) -> StripeApiError:
    """Stripe's answer when a required parameter is absent."""
    return invalid_request(f"Missing required param: {name}.", param=name, code="parameter_missing")


# ------------------------------------------------------------------------------------- form decoding

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


def parse_form(text: str) -> Params:
    """Decode Stripe's bracketed form encoding (``metadata[k]=v``, ``expand[0]=x``, ``expand[]=x``).

    Hashes become dicts; hashes whose keys are all indices become lists, as Stripe's API reads them.
    """
    root: dict[str, ParamValue] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        match = _KEY_RE.match(key)
        if match is None:
            raise invalid_request(f"Invalid parameter name: {key}", param=key)
        _insert(root, [match.group(1), *_SEGMENT_RE.findall(match.group(2))], value, key)
    return {name: _listify(value) for name, value in root.items()}


def _insert(node: dict[str, ParamValue], path: list[str], value: str, key: str) -> None:
    *parents, leaf = path
    for name in parents:
        child = node.setdefault(name or str(len(node)), {})
        if not isinstance(child, dict):
            raise invalid_request(f"Invalid hash: {key} conflicts with a non-hash value", param=path[0])
        node = child
    slot = leaf or str(len(node))
    if isinstance(node.get(slot), dict):
        raise invalid_request(f"Invalid value for {key}: expected a hash", param=path[0])
    node[slot] = value


def _listify(value: ParamValue) -> ParamValue:
    if not isinstance(value, dict):
        return value
    converted = {key: _listify(child) for key, child in value.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


# --------------------------------------------------------------------------------- parameter readers


def reject_unknown(params: Mapping[str, ParamValue], allowed: frozenset[str]) -> None:
    """Stripe refuses parameters it does not know; silently ignoring them would hide adapter bugs."""
    for name in params:
        if name not in allowed:
            raise invalid_request(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def string_param(params: Mapping[str, ParamValue], name: str, *, required: bool = False) -> str | None:
    """A scalar parameter; an empty string means "unset", which a required parameter cannot be."""
    value = params.get(name)
    if value is None:
        if required:
            raise missing_param(name)
        return None
    if not isinstance(value, str):
        raise invalid_request(f"Invalid string: {name} must be a string", param=name)
    if value == "":
        if required:
            raise invalid_request(
                f"You passed an empty string for '{name}'. We assume empty values are an attempt to "
                f"unset a parameter; however '{name}' cannot be unset. You should remove '{name}' from "
                "your request or supply a non-empty value.",
                param=name,
                code="parameter_invalid_empty",
            )
        return None
    return value


def required_string(params: Mapping[str, ParamValue], name: str) -> str:
    """A scalar parameter the request cannot do without."""
    value = string_param(params, name, required=True)
    if value is None:  # string_param already raised; this keeps the type exact
        raise missing_param(name)
    return value


def integer_param(
    params: Mapping[str, ParamValue], name: str, *, required: bool = False, minimum: int | None = None
) -> int | None:
    """An integer parameter: digits only, never a decimal or float-looking string."""
    text = string_param(params, name, required=required)
    if text is None:
        return None
    if re.fullmatch(r"-?[0-9]+", text) is None:
        raise invalid_request(f"Invalid integer: {text}", param=name, code="parameter_invalid_integer")
    number = int(text)
    if minimum is not None and number < minimum:
        raise invalid_request(
            f"This value must be greater than or equal to {minimum}.",
            param=name,
            code="parameter_invalid_integer",
        )
    return number


def required_integer(params: Mapping[str, ParamValue], name: str, *, minimum: int | None = None) -> int:
    """An integer parameter the request cannot do without."""
    value = integer_param(params, name, required=True, minimum=minimum)
    if value is None:  # integer_param already raised; this keeps the type exact
        raise missing_param(name)
    return value


def boolean_param(params: Mapping[str, ParamValue], name: str) -> bool | None:
    """Stripe's booleans travel as ``true`` / ``false``."""
    text = string_param(params, name)
    if text is None:
        return None
    if text not in ("true", "false"):
        raise invalid_request(f"Invalid boolean: {text}", param=name)
    return text == "true"


def enum_param(params: Mapping[str, ParamValue], name: str, choices: tuple[str, ...]) -> str | None:
    """A parameter restricted to a fixed set of values, with Stripe's "must be one of" message."""
    text = string_param(params, name)
    if text is not None and text not in choices:
        listed = ", ".join(choices[:-1]) + f", or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise invalid_request(f"Invalid {name}: must be one of {listed}", param=name)
    return text


def hash_param(params: Mapping[str, ParamValue], name: str) -> dict[str, ParamValue] | None:
    """A nested hash; posting an empty string unsets it, which reads as an empty hash."""
    value = params.get(name)
    if value is None:
        return None
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid_request(f"Invalid hash: {name} must be a hash", param=name)
    return value


def string_list_param(params: Mapping[str, ParamValue], name: str) -> list[str] | None:
    """An array of strings (``name[0]=a&name[1]=b``)."""
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, list):
        raise invalid_request(f"Invalid array: {name} must be an array", param=name)
    items: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise invalid_request(f"Invalid array: {name} must contain strings", param=name)
        items.append(item)
    return items


MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500


def metadata_param(params: Mapping[str, ParamValue]) -> dict[str, str]:
    """Stripe metadata: string values, bounded keys; an empty value unsets (here: omits) a key."""
    raw = hash_param(params, "metadata") or {}
    if len(raw) > MAX_METADATA_KEYS:
        raise invalid_request(
            f"Invalid metadata: metadata can have at most {MAX_METADATA_KEYS} keys.", param="metadata"
        )
    metadata: dict[str, str] = {}
    for key, value in raw.items():
        param = f"metadata[{key}]"
        if not isinstance(value, str):
            raise invalid_request(f"Invalid string: {param} must be a string", param=param)
        if len(key) > MAX_METADATA_KEY_LENGTH:
            raise invalid_request(
                f"Metadata keys can have up to {MAX_METADATA_KEY_LENGTH} characters, but you passed in "
                f"a key that is {len(key)} characters. Invalid key: {key}",
                param=param,
            )
        if len(value) > MAX_METADATA_VALUE_LENGTH:
            raise invalid_request(
                f"Metadata values can have up to {MAX_METADATA_VALUE_LENGTH} characters, but you "
                f"passed in a value that is {len(value)} characters.",
                param=param,
            )
        if value:
            metadata[key] = value
    return metadata


# -------------------------------------------------------------------------------------- currencies

ZERO_DECIMAL_CURRENCIES = frozenset(
    ("bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf")
)
THREE_DECIMAL_CURRENCIES = frozenset(("bhd", "jod", "kwd", "omr", "tnd"))
# Two decimals in the API, but whole units only (Stripe's "Special cases": ISK since 2023-04-14).
WHOLE_UNITS_ONLY = frozenset(("isk",))
_OTHER_CURRENCIES = frozenset(
    (
        "aed",
        "all",
        "amd",
        "ang",
        "aud",
        "azn",
        "bam",
        "bbd",
        "bdt",
        "bgn",
        "bmd",
        "bnd",
        "bob",
        "brl",
        "bsd",
        "bwp",
        "bzd",
        "cad",
        "chf",
        "cny",
        "cop",
        "crc",
        "cve",
        "czk",
        "dkk",
        "dop",
        "dzd",
        "egp",
        "etb",
        "eur",
        "fjd",
        "gbp",
        "gel",
        "gip",
        "gmd",
        "gtq",
        "gyd",
        "hkd",
        "hnl",
        "htg",
        "huf",
        "idr",
        "ils",
        "inr",
        "isk",
        "jmd",
        "kes",
        "kgs",
        "khr",
        "kyd",
        "kzt",
        "lak",
        "lbp",
        "lkr",
        "lrd",
        "lsl",
        "mad",
        "mdl",
        "mkd",
        "mmk",
        "mnt",
        "mop",
        "mur",
        "mvr",
        "mwk",
        "mxn",
        "myr",
        "mzn",
        "nad",
        "ngn",
        "nio",
        "nok",
        "npr",
        "nzd",
        "pab",
        "pen",
        "pgk",
        "php",
        "pkr",
        "pln",
        "qar",
        "ron",
        "rsd",
        "rub",
        "sar",
        "sbd",
        "scr",
        "sek",
        "sgd",
        "sle",
        "sos",
        "srd",
        "szl",
        "thb",
        "tjs",
        "top",
        "try",
        "ttd",
        "twd",
        "tzs",
        "uah",
        "usd",
        "uyu",
        "uzs",
        "wst",
        "xcd",
        "yer",
        "zar",
        "zmw",
    )
)
CURRENCIES = ZERO_DECIMAL_CURRENCIES | THREE_DECIMAL_CURRENCIES | _OTHER_CURRENCIES
# Stripe's minimum charge amounts (minor units) for the currencies a European fintech meets most.
MINIMUM_CHARGE_AMOUNTS: Mapping[str, int] = {
    "usd": 50, "eur": 50, "gbp": 30, "chf": 50, "cad": 50, "aud": 50, "nzd": 50, "sgd": 50,
    "jpy": 50, "dkk": 250, "nok": 300, "sek": 300, "pln": 200, "czk": 1500, "huf": 17500,
    "ron": 200, "bgn": 100, "hkd": 400, "mxn": 1000, "brl": 50, "inr": 50,
}  # fmt: skip
MAXIMUM_AMOUNT = 99_999_999


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's major unit (EUR 2, JPY 0, KWD 3)."""
    if currency in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if currency in THREE_DECIMAL_CURRENCIES else 2


def format_minor(amount: int, currency: str) -> str:
    """Render minor units as a major-unit string with integer arithmetic only (no float rounding)."""
    exponent = currency_exponent(currency)
    if exponent == 0:
        return f"{amount} {currency}"
    unit = 10**exponent
    return f"{amount // unit}.{amount % unit:0{exponent}d} {currency}"


def check_units(amount: int, currency: str) -> None:
    """Stripe's special cases: ISK amounts are whole kronur written with two decimals (multiples of 100),
    and three-decimal currencies need a last digit of 0 (docs.stripe.com/currencies)."""
    if currency in WHOLE_UNITS_ONLY and amount % 100:
        raise invalid_request(
            f"Invalid amount. Currency {currency.upper()} has become effectively zero-decimal and charged "
            "amounts must be evenly divisible by 100. See https://stripe.com/docs/currencies#special-cases "
            "for more information.",
            param="amount",
            code="invalid_charge_amount_no_decimal_compatible",
        )
    if currency in THREE_DECIMAL_CURRENCIES and amount % 10:
        raise invalid_request(
            f"Invalid amount: {currency.upper()} amounts must end in 0 (rounded to the nearest ten).",
            param="amount",
            code="invalid_amount",
        )


def check_within(amount: int, remaining: int, currency: str, *, taken: str, left: str) -> None:
    """Stripe's ``amount_too_large`` for taking back more than is left (a refund, a transfer reversal).

    Stored under the idempotency key: the request did begin executing against the object.
    """
    if amount > remaining:
        raise invalid_request(
            f"{taken} amount ({format_minor(amount, currency)}) is greater than {left} "
            f"({format_minor(remaining, currency)})",
            param="amount",
            code="amount_too_large",
            stored=True,
        )


def amount_param(params: Mapping[str, ParamValue]) -> tuple[int, str]:
    """``amount`` (minor units, at least 1) and ``currency``, checked together as Stripe does."""
    amount = required_integer(params, "amount", minimum=1)
    currency = currency_param(params)
    check_units(amount, currency)
    return amount, currency


def currency_param(params: Mapping[str, ParamValue]) -> str:
    """A supported ISO 4217 code in any case; Stripe answers with it in lowercase."""
    text = required_string(params, "currency")
    currency = text.lower()
    if currency not in CURRENCIES:
        raise invalid_request(
            f"Invalid currency: {text}. Stripe currently supports these currencies: " + ", ".join(sorted(CURRENCIES)),
            param="currency",
        )
    return currency


# ------------------------------------------------------------------------------- test payment methods


class CardOutcome(StrEnum):
    """What confirming a PaymentIntent with a test card leads to."""

    SUCCEED = "succeed"
    DECLINE = "decline"
    REQUIRE_ACTION = "require_action"
    PROCESSING = "processing"


@dataclass(frozen=True)
class Decline:
    """A card error as Stripe reports it (``code``, ``decline_code``, customer-facing ``message``)."""

    code: str
    decline_code: str
    message: str
    param: str | None = None


@dataclass(frozen=True)
class TestCard:
    """A Stripe test PaymentMethod token and the behaviour Stripe documents for it."""

    brand: str
    last4: str
    outcome: CardOutcome = CardOutcome.SUCCEED
    decline: Decline | None = None
    refund_status: str = "succeeded"
    refund_settles_to: str | None = None


_GENERIC = Decline("card_declined", "generic_decline", "Your card was declined.")
_FUNDS = Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
_LOST = Decline("card_declined", "lost_card", "Your card was declined.")
_STOLEN = Decline("card_declined", "stolen_card", "Your card was declined.")
_FRAUD = Decline("card_declined", "fraudulent", "Your card was declined.")
_EXPIRED = Decline("expired_card", "expired_card", "Your card has expired.", "exp_month")
_CVC = Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "cvc")
_PROCESSING = Decline(
    "processing_error",
    "processing_error",
    "An error occurred while processing your card. Try again in a little bit.",
)
AUTHENTICATION_REQUIRED = Decline(
    "authentication_required",
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
)

TEST_CARDS: Mapping[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_visa_debit": TestCard("visa", "5556"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_mastercard_debit": TestCard("mastercard", "8210"),
    "pm_card_amex": TestCard("amex", "8431"),
    "pm_card_bypassPending": TestCard("visa", "0077"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", CardOutcome.DECLINE, _GENERIC),
    "pm_card_visa_chargeDeclined": TestCard("visa", "0002", CardOutcome.DECLINE, _GENERIC),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", CardOutcome.DECLINE, _FUNDS),
    "pm_card_visa_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", CardOutcome.DECLINE, _FUNDS),
    "pm_card_chargeDeclinedLostCard": TestCard("visa", "9987", CardOutcome.DECLINE, _LOST),
    "pm_card_visa_chargeDeclinedLostCard": TestCard("visa", "9987", CardOutcome.DECLINE, _LOST),
    "pm_card_chargeDeclinedStolenCard": TestCard("visa", "9979", CardOutcome.DECLINE, _STOLEN),
    "pm_card_visa_chargeDeclinedStolenCard": TestCard("visa", "9979", CardOutcome.DECLINE, _STOLEN),
    "pm_card_chargeDeclinedFraudulent": TestCard("visa", "0019", CardOutcome.DECLINE, _FRAUD),
    "pm_card_chargeDeclinedExpiredCard": TestCard("visa", "0069", CardOutcome.DECLINE, _EXPIRED),
    "pm_card_chargeDeclinedIncorrectCvc": TestCard("visa", "0127", CardOutcome.DECLINE, _CVC),
    "pm_card_chargeDeclinedProcessingError": TestCard("visa", "0119", CardOutcome.DECLINE, _PROCESSING),
    "pm_card_authenticationRequired": TestCard("visa", "3184", CardOutcome.REQUIRE_ACTION),
    "pm_card_threeDSecure2Required": TestCard("visa", "3220", CardOutcome.REQUIRE_ACTION),
    "pm_card_threeDSecureRequired": TestCard("visa", "3063", CardOutcome.REQUIRE_ACTION),
    "pm_card_refundFail": TestCard("visa", "5126", refund_settles_to="failed"),
    "pm_card_pendingRefund": TestCard("visa", "7726", refund_status="pending", refund_settles_to="succeeded"),
    # Sandbox-only (no Stripe equivalent for cards): the intent stays "processing" until it settles.
    "pm_card_processing": TestCard("visa", "0000", CardOutcome.PROCESSING),
}
