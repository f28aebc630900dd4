"""What a PaymentIntent request may say, by Stripe's API reference, for the offline sandbox.

Kept apart from the lifecycle rules (``stripe_intents``) so those read as the life of a payment and
this module as the reference's parameter tables: which parameters each endpoint takes, the enums,
the charge limits, the payment-method settings and when a ``return_url`` is allowed. Pure: no state.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from adapters.sandboxes.json_types import JsonDict
from adapters.sandboxes.stripe_search import SearchQuery, parse_search_query
from adapters.sandboxes.stripe_wire import (
    MAXIMUM_AMOUNT,
    MINIMUM_CHARGE_AMOUNTS,
    Params,
    boolean_param,
    enum_param,
    format_minor,
    hash_param,
    integer_param,
    invalid_request,
    required_string,
    resource_missing,
    string_list_param,
    string_param,
)

CONFIRM_PARAMS = frozenset(
    (
        "allowed_payment_method_types",
        "amount_details",
        "capture_method",
        "confirmation_token",
        "error_on_requires_action",
        "excluded_payment_method_types",
        "expand",
        "hooks",
        "mandate",
        "mandate_data",
        "off_session",
        "payment_details",
        "payment_method",
        "payment_method_data",
        "payment_method_options",
        "radar_options",
        "receipt_email",
        "return_url",
        "setup_future_usage",
        "shipping",
        "use_stripe_sdk",
    )
)
CREATE_PARAMS = CONFIRM_PARAMS | frozenset(
    (
        "amount",
        "application_fee_amount",
        "automatic_payment_methods",
        "confirm",
        "confirmation_method",
        "currency",
        "customer",
        "customer_account",
        "description",
        "metadata",
        "on_behalf_of",
        "payment_method_configuration",
        "payment_method_types",
        "statement_descriptor",
        "statement_descriptor_suffix",
        "transfer_data",
        "transfer_group",
    )
)
CAPTURE_PARAMS = frozenset(
    (
        "amount_details",
        "amount_to_capture",
        "application_fee_amount",
        "expand",
        "final_capture",
        "hooks",
        "metadata",
        "payment_details",
        "statement_descriptor",
        "statement_descriptor_suffix",
        "transfer_data",
    )
)
CANCEL_PARAMS = frozenset(("cancellation_reason", "expand"))

CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
SEARCH_PARAMS = frozenset({"query", "limit", "page", "expand"})
_SEARCH_FIELDS = frozenset({"amount", "created", "currency", "customer", "metadata", "status"})

_REDIRECT_REQUIRED = (
    "This PaymentIntent is configured to accept payment methods enabled in your Dashboard. Because some "
    "of these payment methods might redirect your customer off of your page, you must provide a "
    "`return_url`. If you don't want to accept redirect-based payment methods, set "
    "`automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to "
    "`never` when creating Setup Intents and Payment Intents."
)
_REDIRECTS_NEVER = (
    "You cannot provide a `return_url` because this PaymentIntent has "
    "`automatic_payment_methods[allow_redirects]` set to `never`: it accepts no payment method that "
    "redirects. Remove `return_url`, or allow redirects."
)
_URL_CHARACTERS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: safe in a Location header


def payment_method_settings(params: Params) -> tuple[JsonDict | None, list[str]]:
    """Stripe's default (automatic payment methods, redirects allowed) unless the caller narrows it."""
    automatic = hash_param(params, "automatic_payment_methods")
    types = string_list_param(params, "payment_method_types") or string_list_param(
        params, "allowed_payment_method_types"
    )
    if automatic is not None and types:
        raise invalid_request(
            "You may only specify one of these parameters: automatic_payment_methods, payment_method_types.",
            param="automatic_payment_methods",
        )
    if types:
        return None, types
    automatic = automatic or {}
    enabled = boolean_param(automatic, "enabled")
    if "automatic_payment_methods" in params and enabled is None:
        raise invalid_request(
            "Missing required param: automatic_payment_methods[enabled].",
            param="automatic_payment_methods[enabled]",
            code="parameter_missing",
        )
    if enabled is False:
        return None, ["card"]
    redirects = enum_param(automatic, "allow_redirects", ("always", "never")) or "always"
    return {"allow_redirects": redirects, "enabled": True}, ["card"]


def return_url(params: Params, automatic: JsonDict | None, *, confirming: bool) -> str | None:
    """The ``return_url`` a confirmation sends the customer back to after a redirect (3-D Secure).

    As the reference has it: only when confirming, only where redirects are allowed, and a URL.
    """
    url = string_param(params, "return_url")
    if url is None:
        return None
    if not confirming:
        raise invalid_request(
            "The parameter `return_url` can only be passed when confirming the PaymentIntent (`confirm=true`).",
            param="return_url",
        )
    if automatic is not None and automatic.get("allow_redirects") == "never":
        raise invalid_request(_REDIRECTS_NEVER, param="return_url")
    parts = urlsplit(url)
    if _URL_CHARACTERS.fullmatch(url) is None or not parts.scheme or not (parts.netloc or parts.path):
        raise invalid_request(f"Not a valid URL: {url!r}", param="return_url", code="url_invalid")
    return url


def check_return_url_given(automatic: JsonDict | None, url: str | None) -> None:
    """A confirmation that allows redirects needs somewhere to send the customer back to."""
    if automatic is not None and automatic.get("allow_redirects") == "always" and not url:
        raise invalid_request(_REDIRECT_REQUIRED)


def capture_amount(params: Params) -> tuple[int | None, bool]:
    """``amount_to_capture`` (None: all that is capturable) and ``final_capture`` (default true)."""
    amount = integer_param(params, "amount_to_capture", minimum=1)
    return amount, boolean_param(params, "final_capture") is not False


def check_charge_limits(amount: int, currency: str) -> None:
    minimum = MINIMUM_CHARGE_AMOUNTS.get(currency, 1)
    if amount < minimum:
        raise invalid_request(
            f"Amount must be at least {format_minor(minimum, currency)}",
            param="amount",
            code="amount_too_small",
        )
    if amount > MAXIMUM_AMOUNT:
        raise invalid_request(
            f"Amount must be no more than {format_minor(MAXIMUM_AMOUNT, currency)}",
            param="amount",
            code="amount_too_large",
        )


def customer(params: Params) -> str | None:
    value = string_param(params, "customer")
    if value is not None and not value.startswith("cus_"):
        raise resource_missing("customer", value, param="customer", status=400)
    return value


def search_query(params: Params) -> SearchQuery:
    """``query`` of ``GET /v1/payment_intents/search``, over the fields Stripe lets one search."""
    return parse_search_query(
        required_string(params, "query"), fields=_SEARCH_FIELDS, numeric=frozenset({"amount", "created"})
    )


def expansions(params: Params, allowed: set[str]) -> set[str]:
    requested = set(string_list_param(params, "expand") or [])
    unsupported = sorted(requested - allowed)
    if unsupported:
        raise invalid_request(f"This property cannot be expanded ({unsupported[0]}).", param="expand")
    return requested
