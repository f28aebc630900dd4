"""PaymentIntents and the charges they make, by Stripe's rules, for the offline sandbox.

The life of a payment: create (optionally confirming at once), confirm with a test card (succeed,
decline, require 3-D Secure, or stay processing), capture or cancel, and the asynchronous endings
tests drive with ``set_status``. Every answer says whether it executed an operation, so the sandbox
can count executions; the ledger (``stripe_objects``) routes to these rules under its lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from adapters.sandboxes.json_types import JsonDict, JsonValue
from adapters.sandboxes.stripe_resources import (
    AccountRules,
    Charge,
    PaymentIntent,
    json_map,
    new_id,
    render_charge,
    render_payment_method,
)
from adapters.sandboxes.stripe_search import (
    SearchClause,
    filtered,
    list_page,
    newest_first,
    parse_search_query,
    retrieve,
    search_page,
)
from adapters.sandboxes.stripe_wire import (
    AUTHENTICATION_REQUIRED,
    MAXIMUM_AMOUNT,
    MINIMUM_CHARGE_AMOUNTS,
    TEST_CARDS,
    ApiResponse,
    CardOutcome,
    Decline,
    Params,
    StripeApiError,
    TestCard,
    amount_param,
    boolean_param,
    enum_param,
    error_body,
    format_minor,
    hash_param,
    integer_param,
    invalid_request,
    metadata_param,
    reject_unknown,
    required_string,
    resource_missing,
    string_list_param,
    string_param,
)

_CONFIRM_PARAMS = frozenset(
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
_CREATE_INTENT_PARAMS = _CONFIRM_PARAMS | frozenset(
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

_CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
_CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
_CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")
_SEARCH_FIELDS = frozenset({"amount", "created", "currency", "customer", "metadata", "status"})
_REDIRECT_REQUIRED = (
    "This PaymentIntent is configured to accept payment methods enabled in your Dashboard. Because some "
    "of these payment methods might redirect your customer off of your page, you must provide a "
    "`return_url`. If you don't want to accept redirect-based payment methods, set "
    "`automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to "
    "`never` when creating Setup Intents and Payment Intents."
)
_AUTHENTICATION_FAILED = (
    "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new "
    "PaymentMethod to attempt to fulfill this PaymentIntent again."
)

_GENERIC_DECLINE = Decline("card_declined", "generic_decline", "Your card was declined.")


class PaymentIntents(AccountRules):
    """The PaymentIntent and Charge endpoints of one account; ``schedule`` settles processing payments."""

    def create(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, _CREATE_INTENT_PARAMS)
        amount, currency = amount_param(params)
        _check_charge_limits(amount, currency)
        automatic, types = _payment_method_settings(params)
        intent = PaymentIntent(
            id=new_id("pi"),
            created=int(time.time()),
            amount=amount,
            currency=currency,
            capture_method=enum_param(params, "capture_method", _CAPTURE_METHODS) or "automatic_async",
            customer=_customer(params),
            description=string_param(params, "description"),
            metadata=metadata_param(params),
            automatic_payment_methods=automatic,
            payment_method_types=types,
        )
        token = string_param(params, "payment_method")
        confirm = boolean_param(params, "confirm") or False
        if token is not None:
            intent.payment_method, intent.card = self._attach(token)
            intent.status = "requires_confirmation"
        if confirm:
            self._check_confirmable(intent, params)
        expand = _expansions(params, {"latest_charge"})
        self._account.intents[intent.id] = intent
        if not confirm:
            return ApiResponse(200, self._render_intent(intent, expand), executed=True)
        return self._confirm(intent, boolean_param(params, "off_session") or False, expand)

    def confirm(self, params: Params, intent_id: str) -> ApiResponse:
        intent = self._intent(intent_id)
        reject_unknown(params, _CONFIRM_PARAMS)
        expand = _expansions(params, {"latest_charge"})
        if intent.status not in _CONFIRMABLE:
            raise _unexpected_state(intent, "confirm", _CONFIRMABLE)
        token = string_param(params, "payment_method")
        if token is not None:
            intent.payment_method, intent.card = self._attach(token)
        self._check_confirmable(intent, params)
        return self._confirm(intent, boolean_param(params, "off_session") or False, expand)

    def capture(self, params: Params, intent_id: str) -> ApiResponse:
        intent = self._intent(intent_id)
        reject_unknown(params, frozenset({"amount_to_capture", "expand", "metadata"}))
        expand = _expansions(params, {"latest_charge"})
        if intent.status != "requires_capture" or intent.latest_charge is None:
            raise _unexpected_state(intent, "captur", ("requires_capture",))
        amount = integer_param(params, "amount_to_capture", minimum=1) or intent.amount_capturable
        metadata = metadata_param(params)
        if amount > intent.amount_capturable:
            raise invalid_request(
                "The amount to capture must be less than or equal to the amount capturable.",
                param="amount_to_capture",
                code="amount_too_large",
                stored=True,
            )
        charge = self._account.charges[intent.latest_charge]
        charge.captured, charge.amount_captured = True, amount
        intent.amount_received, intent.amount_capturable, intent.status = amount, 0, "succeeded"
        intent.metadata.update(metadata)
        return ApiResponse(200, self._render_intent(intent, expand), executed=True)

    def cancel(self, params: Params, intent_id: str) -> ApiResponse:
        intent = self._intent(intent_id)
        reject_unknown(params, frozenset({"cancellation_reason", "expand"}))
        reason = enum_param(params, "cancellation_reason", _CANCELLATION_REASONS)
        if intent.status not in _CANCELABLE:
            raise _unexpected_state(intent, "cancel", _CANCELABLE)
        self._cancel(intent, reason)
        return ApiResponse(200, self._render_intent(intent, set()), executed=True)

    def retrieve(self, params: Params, intent_id: str) -> ApiResponse:
        reject_unknown(params, frozenset({"expand", "client_secret"}))
        expand = _expansions(params, {"latest_charge"})
        return ApiResponse(200, self._render_intent(self._intent(intent_id), expand), stored=False)

    def list_all(self, params: Params, _: str) -> ApiResponse:
        intents = filtered(self._account.intents.values(), params, {"customer": lambda i: i.customer})
        expand = {e.removeprefix("data.") for e in _expansions(params, {"data.latest_charge"})}
        return list_page("/v1/payment_intents", intents, params, lambda i: self._render_intent(i, expand))

    def search(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, frozenset({"query", "limit", "page", "expand"}))
        query = parse_search_query(
            required_string(params, "query"), fields=_SEARCH_FIELDS, numeric=frozenset({"amount", "created"})
        )
        expand = {e.removeprefix("data.") for e in _expansions(params, {"data.latest_charge"})}
        found = [i for i in newest_first(self._account.intents.values()) if query.matches(_field_reader(i))]
        return search_page("/v1/payment_intents/search", found, params, lambda i: self._render_intent(i, expand))

    def _attach(self, token: str) -> tuple[str, TestCard]:
        card = TEST_CARDS.get(token) or self._account.cards.get(token)
        if card is None:
            raise resource_missing("PaymentMethod", token, param="payment_method", status=400)
        if token in self._account.cards:
            return token, card
        cloned = new_id("pm")  # Stripe clones a test token into a fresh PaymentMethod per use
        self._account.cards[cloned] = card
        return cloned, card

    def _check_confirmable(self, intent: PaymentIntent, params: Params) -> None:
        intent.return_url = string_param(params, "return_url") or intent.return_url
        if intent.card is None:
            raise invalid_request(
                "You cannot confirm this PaymentIntent because it's missing a payment method. You can "
                "either update the PaymentIntent with a payment method and then confirm it again, or "
                "confirm it again directly with a payment method.",
                code="payment_intent_unexpected_state",
            )
        automatic = intent.automatic_payment_methods
        if automatic is not None and automatic.get("allow_redirects") == "always" and not intent.return_url:
            raise invalid_request(_REDIRECT_REQUIRED)
        if "card" not in intent.payment_method_types:
            raise invalid_request(
                "The PaymentMethod provided (card) is not allowed for this PaymentIntent. Please attach a "
                "PaymentMethod of one of the following types: " + ", ".join(intent.payment_method_types),
                param="payment_method",
            )

    def _confirm(self, intent: PaymentIntent, off_session: bool, expand: set[str]) -> ApiResponse:
        card = intent.card
        if card is None:  # _check_confirmable refused this already
            raise invalid_request("Missing payment method.", param="payment_method")
        intent.next_action = intent.last_payment_error = None
        if card.outcome is CardOutcome.REQUIRE_ACTION and not off_session:
            intent.status = "requires_action"
            intent.next_action = _next_action(intent)
            return ApiResponse(200, self._render_intent(intent, expand), executed=True)
        decline = AUTHENTICATION_REQUIRED if card.outcome is CardOutcome.REQUIRE_ACTION else card.decline
        if decline is not None:
            return self._decline(intent, card, decline, expand)
        if card.outcome is CardOutcome.PROCESSING:
            self._new_charge(intent, card, "pending")
            intent.status = "processing"
            self._schedule(intent.id, "succeeded")
        else:
            self._succeed(intent, card)
        return ApiResponse(200, self._render_intent(intent, expand), executed=True)

    def _succeed(self, intent: PaymentIntent, card: TestCard) -> None:
        charge = self._new_charge(intent, card, "succeeded")
        if intent.capture_method == "manual":
            intent.status, intent.amount_capturable = "requires_capture", intent.amount
        else:
            intent.status, intent.amount_received = "succeeded", intent.amount
            charge.captured, charge.amount_captured = True, intent.amount

    def _decline(self, intent: PaymentIntent, card: TestCard, decline: Decline, expand: set[str]) -> ApiResponse:
        charge = self._new_charge(intent, card, "failed")
        charge.failure = decline
        payment_method = render_payment_method(intent.payment_method or "", card)
        intent.last_payment_error = _card_error(decline, charge.id, payment_method)
        intent.status, intent.payment_method = "requires_payment_method", None
        error = _card_error(decline, charge.id, payment_method)
        error["payment_intent"] = self._render_intent(intent, expand)
        return ApiResponse(402, {"error": error}, executed=True)

    def _new_charge(self, intent: PaymentIntent, card: TestCard, status: str) -> Charge:
        charge = Charge(
            id=new_id("ch"),
            created=int(time.time()),
            amount=intent.amount,
            currency=intent.currency,
            payment_intent=intent.id,
            payment_method=intent.payment_method or "",
            card=card,
            status=status,
        )
        self._account.charges[charge.id] = charge
        intent.latest_charge = charge.id
        return charge

    def _cancel(self, intent: PaymentIntent, reason: str | None) -> None:
        if intent.latest_charge is not None and intent.status == "requires_capture":
            charge = self._account.charges[intent.latest_charge]
            charge.amount_refunded = charge.amount  # releasing an authorization refunds it in full
        intent.status, intent.amount_capturable, intent.next_action = "canceled", 0, None
        intent.canceled_at, intent.cancellation_reason = int(time.time()), reason

    def transition(self, intent: PaymentIntent, status: str) -> None:
        card = intent.card
        if status == "canceled" and intent.status in (*_CANCELABLE, "processing"):
            self._cancel(intent, None)
        elif status == "succeeded" and intent.status == "requires_action" and card is not None:
            intent.next_action = None
            self._succeed(intent, card)
        elif status == "succeeded" and intent.status == "processing" and intent.latest_charge:
            charge = self._account.charges[intent.latest_charge]
            charge.status, charge.captured, charge.amount_captured = "succeeded", True, intent.amount
            intent.status, intent.amount_received = "succeeded", intent.amount
        elif status == "requires_payment_method" and intent.status in ("requires_action", "processing"):
            intent.last_payment_error = self._async_failure(intent)
            intent.status, intent.next_action, intent.payment_method = status, None, None
        else:
            raise ValueError(f"payment intent {intent.id} cannot go from {intent.status} to {status}")

    def _async_failure(self, intent: PaymentIntent) -> JsonDict:
        """The error an intent carries when authentication or a processing payment fails later."""
        if intent.status == "requires_action":
            return error_body(
                "invalid_request_error", _AUTHENTICATION_FAILED, code="payment_intent_authentication_failure"
            )
        charge = self._account.charges[intent.latest_charge or ""]
        charge.status, charge.failure = "failed", _GENERIC_DECLINE
        payment_method = render_payment_method(intent.payment_method or "", charge.card)
        return _card_error(_GENERIC_DECLINE, charge.id, payment_method)

    def _intent(self, intent_id: str) -> PaymentIntent:
        intent = self._account.intents.get(intent_id)
        if intent is None:
            raise resource_missing("payment_intent", intent_id, param="intent")
        return intent

    def _render_intent(self, intent: PaymentIntent, expand: set[str]) -> JsonDict:
        charge: JsonValue = intent.latest_charge
        if intent.latest_charge is not None and "latest_charge" in expand:
            charge = render_charge(self._account.charges[intent.latest_charge])
        return {
            "id": intent.id,
            "object": "payment_intent",
            "amount": intent.amount,
            "amount_capturable": intent.amount_capturable,
            "amount_received": intent.amount_received,
            "automatic_payment_methods": intent.automatic_payment_methods,
            "canceled_at": intent.canceled_at,
            "cancellation_reason": intent.cancellation_reason,
            "capture_method": intent.capture_method,
            "client_secret": f"{intent.id}_secret_{intent.client_secret}",
            "confirmation_method": "automatic",
            "created": intent.created,
            "currency": intent.currency,
            "customer": intent.customer,
            "description": intent.description,
            "last_payment_error": intent.last_payment_error,
            "latest_charge": charge,
            "livemode": False,
            "metadata": json_map(intent.metadata),
            "next_action": intent.next_action,
            "payment_method": intent.payment_method,
            "payment_method_types": list[JsonValue](intent.payment_method_types),
            "processing": None,
            "status": intent.status,
        }

    # -------------------------------------------------------------------------------------- charges

    def retrieve_charge(self, params: Params, charge_id: str) -> ApiResponse:
        return retrieve(params, self._account.charges, charge_id, render_charge, name="charge", param="charge")


# ------------------------------------------------------------------------------------------ helpers


def _payment_method_settings(params: Params) -> tuple[JsonDict | None, list[str]]:
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


def _check_charge_limits(amount: int, currency: str) -> None:
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


def _customer(params: Params) -> str | None:
    customer = string_param(params, "customer")
    if customer is not None and not customer.startswith("cus_"):
        raise resource_missing("customer", customer, param="customer", status=400)
    return customer


def _expansions(params: Params, allowed: set[str]) -> set[str]:
    requested = set(string_list_param(params, "expand") or [])
    unsupported = sorted(requested - allowed)
    if unsupported:
        raise invalid_request(f"This property cannot be expanded ({unsupported[0]}).", param="expand")
    return requested


def _unexpected_state(intent: PaymentIntent, action: str, allowed: tuple[str, ...]) -> StripeApiError:
    return invalid_request(
        f"You cannot {action} this PaymentIntent because it has a status of {intent.status}. Only a "
        f"PaymentIntent with one of the following statuses may be {action}ed: {', '.join(allowed)}.",
        code="payment_intent_unexpected_state",
        stored=True,
    )


def _next_action(intent: PaymentIntent) -> JsonDict:
    source = new_id("src")
    if intent.return_url:
        url = (
            "https://hooks.stripe.com/3d_secure_2/hosted?merchant=acct_sandbox"
            f"&payment_intent={intent.id}&source={source}"
        )
        return {"type": "redirect_to_url", "redirect_to_url": {"return_url": intent.return_url, "url": url}}
    stripe_js = f"https://hooks.stripe.com/redirect/authenticate/{source}"
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "three_d_secure_redirect", "source": source, "stripe_js": stripe_js},
    }


def _card_error(decline: Decline, charge_id: str, payment_method: JsonDict) -> JsonDict:
    extra: JsonDict = {
        "charge": charge_id,
        "decline_code": decline.decline_code,
        "payment_method": payment_method,
    }
    return error_body("card_error", decline.message, code=decline.code, param=decline.param, extra=extra)


def _field_reader(intent: PaymentIntent) -> Callable[[SearchClause], int | str | None]:
    def value_of(clause: SearchClause) -> int | str | None:
        if clause.metadata_key is not None:
            return intent.metadata.get(clause.metadata_key)
        values: dict[str, int | str | None] = {
            "amount": intent.amount,
            "created": intent.created,
            "currency": intent.currency,
            "customer": intent.customer,
            "status": intent.status,
        }
        return values.get(clause.field)

    return value_of
