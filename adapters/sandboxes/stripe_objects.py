"""Stripe resources and their rules for the offline sandbox: PaymentIntents, Charges, Refunds, Transfers.

``StripeLedger`` is the sandbox's single test-mode Stripe account. It knows nothing about HTTP,
idempotency or faults (see ``stripe_sandbox``); it turns decoded parameters into Stripe-shaped
answers and says whether each answer really executed an operation, so tests can prove exactly-once.
All money is ``int`` minor units. Thread-safe: every handler runs under one lock.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from adapters.sandboxes.stripe_wire import (
    AUTHENTICATION_REQUIRED,
    MAXIMUM_AMOUNT,
    MINIMUM_CHARGE_AMOUNTS,
    TEST_CARDS,
    THREE_DECIMAL_CURRENCIES,
    WHOLE_UNITS_ONLY,
    ApiResponse,
    CardOutcome,
    Decline,
    JsonDict,
    JsonValue,
    Params,
    SearchClause,
    StripeApiError,
    TestCard,
    boolean_param,
    currency_param,
    enum_param,
    error_body,
    format_minor,
    hash_param,
    integer_param,
    invalid_request,
    metadata_param,
    parse_search_query,
    reject_unknown,
    required_integer,
    required_string,
    resource_missing,
    string_list_param,
    string_param,
)

# Operation names, as counted by the sandbox's execution counters.
CREATE_PAYMENT_INTENT = "payment_intents.create"
CONFIRM_PAYMENT_INTENT = "payment_intents.confirm"
CAPTURE_PAYMENT_INTENT = "payment_intents.capture"
CANCEL_PAYMENT_INTENT = "payment_intents.cancel"
CREATE_REFUND = "refunds.create"
CREATE_TRANSFER = "transfers.create"

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
_REFUND_PARAMS = frozenset(
    (
        "amount",
        "charge",
        "currency",
        "customer",
        "expand",
        "instructions_email",
        "metadata",
        "origin",
        "payment_intent",
        "reason",
        "refund_application_fee",
        "reverse_transfer",
    )
)
_TRANSFER_PARAMS = frozenset(
    (
        "amount",
        "currency",
        "description",
        "destination",
        "expand",
        "metadata",
        "source_transaction",
        "source_type",
        "transfer_group",
    )
)
_PAGE_PARAMS = frozenset({"limit", "starting_after", "ending_before", "expand"})
_CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
_CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
_CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")
_SEARCH_FIELDS = frozenset({"amount", "created", "currency", "customer", "metadata", "status"})
_ID_ALPHABET = string.ascii_letters + string.digits
_DESTINATION_RE = re.compile(r"acct_[A-Za-z0-9]+")
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

T = TypeVar("T", "_Intent", "_Refund", "_Transfer")


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking object id (``pi_…``, ``re_…``); unguessable so tests cannot depend on order."""
    return prefix + "_" + "".join(_ID_ALPHABET[byte % len(_ID_ALPHABET)] for byte in secrets.token_bytes(length))


@dataclass
class _Charge:
    id: str
    created: int
    amount: int
    currency: str
    payment_intent: str
    payment_method: str
    card: TestCard
    status: str
    captured: bool = False
    amount_captured: int = 0
    amount_refunded: int = 0
    failure: Decline | None = None


@dataclass
class _Intent:
    id: str
    created: int
    amount: int
    currency: str
    capture_method: str
    customer: str | None
    description: str | None
    metadata: dict[str, str]
    automatic_payment_methods: JsonDict | None
    payment_method_types: list[str]
    payment_method: str | None = None
    card: TestCard | None = None
    return_url: str | None = None
    status: str = "requires_payment_method"
    amount_capturable: int = 0
    amount_received: int = 0
    latest_charge: str | None = None
    last_payment_error: JsonDict | None = None
    next_action: JsonDict | None = None
    canceled_at: int | None = None
    cancellation_reason: str | None = None
    client_secret: str = field(default_factory=lambda: secrets.token_hex(12))


@dataclass
class _Refund:
    id: str
    created: int
    amount: int
    currency: str
    payment_intent: str
    charge: str
    reason: str | None
    metadata: dict[str, str]
    status: str
    failure_reason: str | None = None


@dataclass
class _Transfer:
    id: str
    created: int
    amount: int
    currency: str
    destination: str
    description: str | None
    metadata: dict[str, str]
    transfer_group: str | None
    source_transaction: str | None


@dataclass(frozen=True)
class Route:
    """A matched endpoint: ``operation`` names mutating endpoints for the counters (None for reads)."""

    operation: str | None
    call: Callable[[Params], ApiResponse]


@dataclass(frozen=True)
class _RouteSpec:
    method: str
    pattern: re.Pattern[str]
    operation: str | None
    handler: Callable[[Params, str], ApiResponse]


class StripeLedger:
    """The state of one test-mode Stripe account and the rules Stripe applies to it.

    ``settle_after_seconds``: how long asynchronous outcomes (``pm_card_pendingRefund``,
    ``pm_card_refundFail``, ``pm_card_processing``) take before a read shows their final state.
    """

    def __init__(self, *, settle_after_seconds: float = 0.0) -> None:
        self._settle_after = settle_after_seconds
        self._lock = threading.RLock()
        self._intents: dict[str, _Intent] = {}
        self._charges: dict[str, _Charge] = {}
        self._refunds: dict[str, _Refund] = {}
        self._transfers: dict[str, _Transfer] = {}
        self._cards: dict[str, TestCard] = {}
        self._available: dict[str, int] = {}
        self._settlements: list[tuple[float, str, str]] = []
        self._routes = self._route_specs()

    # ------------------------------------------------------------------------------- public surface

    def route(self, method: str, path: str) -> Route | None:
        """The endpoint for ``method`` + ``path``, bound to this ledger, or None (Stripe's 404)."""
        for spec in self._routes:
            match = spec.pattern.fullmatch(path) if spec.method == method else None
            if match is not None:
                path_id = match.group(1) if match.groups() else ""
                return Route(spec.operation, self._bind(spec.handler, path_id))
        return None

    def set_status(self, object_id: str, status: str) -> None:
        """Move an intent or refund to a later status, as Stripe would asynchronously (tests only).

        Raises ValueError for an unknown id or a transition Stripe would never make.
        """
        with self._lock:
            if object_id in self._intents:
                self._transition_intent(self._intents[object_id], status)
            elif object_id in self._refunds:
                self._transition_refund(self._refunds[object_id], status)
            else:
                raise ValueError(f"no payment intent or refund {object_id!r}")

    def set_available_balance(self, currency: str, amount: int | None) -> None:
        """Limit the platform balance that transfers draw from (None: unlimited, the default)."""
        with self._lock:
            if amount is None:
                self._available.pop(currency.lower(), None)
            else:
                self._available[currency.lower()] = amount

    def reset(self) -> None:
        """Forget every object, as a fresh test-mode account."""
        with self._lock:
            for store in (self._intents, self._charges, self._refunds, self._transfers, self._cards):
                store.clear()
            self._available.clear()
            self._settlements.clear()

    def _bind(self, handler: Callable[[Params, str], ApiResponse], path_id: str) -> Callable[[Params], ApiResponse]:
        def call(params: Params) -> ApiResponse:
            with self._lock:
                self._settle_due()
                try:
                    return handler(params, path_id)
                except StripeApiError as error:
                    return error.response()

        return call

    def _route_specs(self) -> list[_RouteSpec]:
        pi = r"/v1/payment_intents"
        specs: list[tuple[str, str, str | None, Callable[[Params, str], ApiResponse]]] = [
            ("POST", pi, CREATE_PAYMENT_INTENT, self._create_intent),
            ("GET", pi, None, self._list_intents),
            ("GET", pi + "/search", None, self._search_intents),
            ("GET", pi + r"/([^/]+)", None, self._retrieve_intent),
            ("POST", pi + r"/([^/]+)/confirm", CONFIRM_PAYMENT_INTENT, self._confirm_intent),
            ("POST", pi + r"/([^/]+)/capture", CAPTURE_PAYMENT_INTENT, self._capture_intent),
            ("POST", pi + r"/([^/]+)/cancel", CANCEL_PAYMENT_INTENT, self._cancel_intent),
            ("GET", r"/v1/charges/([^/]+)", None, self._retrieve_charge),
            ("POST", r"/v1/refunds", CREATE_REFUND, self._create_refund),
            ("GET", r"/v1/refunds", None, self._list_refunds),
            ("GET", r"/v1/refunds/([^/]+)", None, self._retrieve_refund),
            ("POST", r"/v1/transfers", CREATE_TRANSFER, self._create_transfer),
            ("GET", r"/v1/transfers", None, self._list_transfers),
            ("GET", r"/v1/transfers/([^/]+)", None, self._retrieve_transfer),
        ]
        return [_RouteSpec(m, re.compile(p), op, h) for m, p, op, h in specs]

    # ------------------------------------------------------------------------------ payment intents

    def _create_intent(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, _CREATE_INTENT_PARAMS)
        amount = required_integer(params, "amount", minimum=1)
        currency = currency_param(params)
        _check_charge_amount(amount, currency)
        automatic, types = _payment_method_settings(params)
        intent = _Intent(
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
        self._intents[intent.id] = intent
        if not confirm:
            return ApiResponse(200, self._render_intent(intent, expand), executed=True)
        return self._confirm(intent, boolean_param(params, "off_session") or False, expand)

    def _confirm_intent(self, params: Params, intent_id: str) -> ApiResponse:
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

    def _capture_intent(self, params: Params, intent_id: str) -> ApiResponse:
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
        charge = self._charges[intent.latest_charge]
        charge.captured, charge.amount_captured = True, amount
        intent.amount_received, intent.amount_capturable, intent.status = amount, 0, "succeeded"
        intent.metadata.update(metadata)
        return ApiResponse(200, self._render_intent(intent, expand), executed=True)

    def _cancel_intent(self, params: Params, intent_id: str) -> ApiResponse:
        intent = self._intent(intent_id)
        reject_unknown(params, frozenset({"cancellation_reason", "expand"}))
        reason = enum_param(params, "cancellation_reason", _CANCELLATION_REASONS)
        if intent.status not in _CANCELABLE:
            raise _unexpected_state(intent, "cancel", _CANCELABLE)
        self._cancel(intent, reason)
        return ApiResponse(200, self._render_intent(intent, set()), executed=True)

    def _retrieve_intent(self, params: Params, intent_id: str) -> ApiResponse:
        reject_unknown(params, frozenset({"expand", "client_secret"}))
        expand = _expansions(params, {"latest_charge"})
        return ApiResponse(200, self._render_intent(self._intent(intent_id), expand), stored=False)

    def _list_intents(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, _PAGE_PARAMS | {"customer"})
        customer = string_param(params, "customer")
        intents = [i for i in self._intents.values() if customer is None or i.customer == customer]
        expand = {e.removeprefix("data.") for e in _expansions(params, {"data.latest_charge"})}
        return _list_page("/v1/payment_intents", intents, params, lambda i: self._render_intent(i, expand))

    def _search_intents(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, frozenset({"query", "limit", "page", "expand"}))
        query = parse_search_query(
            required_string(params, "query"), fields=_SEARCH_FIELDS, numeric=frozenset({"amount", "created"})
        )
        expand = {e.removeprefix("data.") for e in _expansions(params, {"data.latest_charge"})}
        found = [i for i in _newest_first(self._intents.values()) if query.matches(_field_reader(i))]
        limit = _limit(params)
        start = _search_offset(string_param(params, "page"))
        page = found[start : start + limit]
        has_more = start + limit < len(found)
        body: JsonDict = {
            "object": "search_result",
            "data": [self._render_intent(i, expand) for i in page],
            "has_more": has_more,
            "next_page": f"page_{start + limit}" if has_more else None,
            "url": "/v1/payment_intents/search",
        }
        return ApiResponse(200, body, stored=False)

    def _attach(self, token: str) -> tuple[str, TestCard]:
        card = TEST_CARDS.get(token) or self._cards.get(token)
        if card is None:
            raise resource_missing("PaymentMethod", token, param="payment_method", status=400)
        if token in self._cards:
            return token, card
        cloned = new_id("pm")  # Stripe clones a test token into a fresh PaymentMethod per use
        self._cards[cloned] = card
        return cloned, card

    def _check_confirmable(self, intent: _Intent, params: Params) -> None:
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

    def _confirm(self, intent: _Intent, off_session: bool, expand: set[str]) -> ApiResponse:
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

    def _succeed(self, intent: _Intent, card: TestCard) -> None:
        charge = self._new_charge(intent, card, "succeeded")
        if intent.capture_method == "manual":
            intent.status, intent.amount_capturable = "requires_capture", intent.amount
        else:
            intent.status, intent.amount_received = "succeeded", intent.amount
            charge.captured, charge.amount_captured = True, intent.amount

    def _decline(self, intent: _Intent, card: TestCard, decline: Decline, expand: set[str]) -> ApiResponse:
        charge = self._new_charge(intent, card, "failed")
        charge.failure = decline
        payment_method = _render_payment_method(intent.payment_method or "", card)
        intent.last_payment_error = _card_error(decline, charge.id, payment_method)
        intent.status, intent.payment_method = "requires_payment_method", None
        error = _card_error(decline, charge.id, payment_method)
        error["payment_intent"] = self._render_intent(intent, expand)
        return ApiResponse(402, {"error": error}, executed=True)

    def _new_charge(self, intent: _Intent, card: TestCard, status: str) -> _Charge:
        charge = _Charge(
            id=new_id("ch"),
            created=int(time.time()),
            amount=intent.amount,
            currency=intent.currency,
            payment_intent=intent.id,
            payment_method=intent.payment_method or "",
            card=card,
            status=status,
        )
        self._charges[charge.id] = charge
        intent.latest_charge = charge.id
        return charge

    def _cancel(self, intent: _Intent, reason: str | None) -> None:
        if intent.latest_charge is not None and intent.status == "requires_capture":
            charge = self._charges[intent.latest_charge]
            charge.amount_refunded = charge.amount  # releasing an authorization refunds it in full
        intent.status, intent.amount_capturable, intent.next_action = "canceled", 0, None
        intent.canceled_at, intent.cancellation_reason = int(time.time()), reason

    def _transition_intent(self, intent: _Intent, status: str) -> None:
        card = intent.card
        if status == "canceled" and intent.status in (*_CANCELABLE, "processing"):
            self._cancel(intent, None)
        elif status == "succeeded" and intent.status == "requires_action" and card is not None:
            intent.next_action = None
            self._succeed(intent, card)
        elif status == "succeeded" and intent.status == "processing" and intent.latest_charge:
            charge = self._charges[intent.latest_charge]
            charge.status, charge.captured, charge.amount_captured = "succeeded", True, intent.amount
            intent.status, intent.amount_received = "succeeded", intent.amount
        elif status == "requires_payment_method" and intent.status in ("requires_action", "processing"):
            intent.last_payment_error = self._async_failure(intent)
            intent.status, intent.next_action, intent.payment_method = status, None, None
        else:
            raise ValueError(f"payment intent {intent.id} cannot go from {intent.status} to {status}")

    def _async_failure(self, intent: _Intent) -> JsonDict:
        """The error an intent carries when authentication or a processing payment fails later."""
        if intent.status == "requires_action":
            return error_body(
                "invalid_request_error", _AUTHENTICATION_FAILED, code="payment_intent_authentication_failure"
            )
        charge = self._charges[intent.latest_charge or ""]
        charge.status, charge.failure = "failed", _GENERIC_DECLINE
        payment_method = _render_payment_method(intent.payment_method or "", charge.card)
        return _card_error(_GENERIC_DECLINE, charge.id, payment_method)

    def _intent(self, intent_id: str) -> _Intent:
        intent = self._intents.get(intent_id)
        if intent is None:
            raise resource_missing("payment_intent", intent_id, param="intent")
        return intent

    def _render_intent(self, intent: _Intent, expand: set[str]) -> JsonDict:
        charge: JsonValue = intent.latest_charge
        if intent.latest_charge is not None and "latest_charge" in expand:
            charge = self._render_charge(self._charges[intent.latest_charge])
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
            "metadata": _json_map(intent.metadata),
            "next_action": intent.next_action,
            "payment_method": intent.payment_method,
            "payment_method_types": list[JsonValue](intent.payment_method_types),
            "processing": None,
            "status": intent.status,
        }

    # -------------------------------------------------------------------------------------- charges

    def _retrieve_charge(self, params: Params, charge_id: str) -> ApiResponse:
        reject_unknown(params, frozenset({"expand"}))
        charge = self._charges.get(charge_id)
        if charge is None:
            raise resource_missing("charge", charge_id, param="charge")
        return ApiResponse(200, self._render_charge(charge), stored=False)

    def _render_charge(self, charge: _Charge) -> JsonDict:
        failure = charge.failure
        return {
            "id": charge.id,
            "object": "charge",
            "amount": charge.amount,
            "amount_captured": charge.amount_captured,
            "amount_refunded": charge.amount_refunded,
            "captured": charge.captured,
            "created": charge.created,
            "currency": charge.currency,
            "failure_code": failure.code if failure else None,
            "failure_message": failure.message if failure else None,
            "livemode": False,
            "metadata": {},
            "paid": charge.status == "succeeded",
            "payment_intent": charge.payment_intent,
            "payment_method": charge.payment_method,
            "payment_method_details": {"type": "card", "card": _render_card(charge.card)},
            "refunded": charge.captured and charge.amount_refunded >= charge.amount_captured,
            "status": charge.status,
        }

    # -------------------------------------------------------------------------------------- refunds

    def _create_refund(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, _REFUND_PARAMS)
        charge = self._refundable_charge(params)
        requested = integer_param(params, "amount", minimum=1)
        reason = enum_param(params, "reason", _REFUND_REASONS)
        metadata = metadata_param(params)
        remaining = charge.amount_captured - charge.amount_refunded
        if remaining <= 0:
            raise invalid_request(
                f"Charge {charge.id} has already been refunded.", code="charge_already_refunded", stored=True
            )
        amount = remaining if requested is None else requested
        _check_units(amount, charge.currency)
        if amount > remaining:
            raise invalid_request(
                f"Refund amount ({format_minor(amount, charge.currency)}) is greater than unrefunded amount "
                f"on charge ({format_minor(remaining, charge.currency)})",
                param="amount",
                code="amount_too_large",
                stored=True,
            )
        refund = _Refund(
            id=new_id("re"),
            created=int(time.time()),
            amount=amount,
            currency=charge.currency,
            payment_intent=charge.payment_intent,
            charge=charge.id,
            reason=reason,
            metadata=metadata,
            status=charge.card.refund_status,
        )
        charge.amount_refunded += amount
        self._refunds[refund.id] = refund
        if charge.card.refund_settles_to is not None:
            self._schedule(refund.id, charge.card.refund_settles_to)
        return ApiResponse(200, _render_refund(refund), executed=True)

    def _refundable_charge(self, params: Params) -> _Charge:
        intent_id = string_param(params, "payment_intent")
        charge_id = string_param(params, "charge")
        if intent_id is None and charge_id is None:
            raise invalid_request(
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        if intent_id is not None:
            intent = self._intents.get(intent_id)
            if intent is None:
                raise resource_missing("payment_intent", intent_id, param="payment_intent", status=400)
            charge_id = intent.latest_charge if intent.status == "succeeded" else None
            if charge_id is None:
                raise invalid_request(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                    param="payment_intent",
                    code="payment_intent_unexpected_state",
                    stored=True,
                )
        charge = self._charges.get(charge_id or "")
        if charge is None:
            raise resource_missing("charge", charge_id or "", param="charge", status=400)
        return charge

    def _transition_refund(self, refund: _Refund, status: str) -> None:
        allowed = {"pending": ("succeeded", "failed", "canceled"), "succeeded": ("failed",)}
        if status not in allowed.get(refund.status, ()):
            raise ValueError(f"refund {refund.id} cannot go from {refund.status} to {status}")
        refund.status = status
        if status in ("failed", "canceled"):
            refund.failure_reason = "expired_or_canceled_card" if status == "failed" else None
            self._charges[refund.charge].amount_refunded -= refund.amount  # the money comes back

    def _retrieve_refund(self, params: Params, refund_id: str) -> ApiResponse:
        reject_unknown(params, frozenset({"expand"}))
        refund = self._refunds.get(refund_id)
        if refund is None:
            raise resource_missing("refund", refund_id, param="id")
        return ApiResponse(200, _render_refund(refund), stored=False)

    def _list_refunds(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, _PAGE_PARAMS | {"payment_intent", "charge"})
        intent_id = string_param(params, "payment_intent")
        charge_id = string_param(params, "charge")
        refunds = [
            r for r in self._refunds.values() if intent_id in (None, r.payment_intent) and charge_id in (None, r.charge)
        ]
        return _list_page("/v1/refunds", refunds, params, _render_refund)

    # ------------------------------------------------------------------------------------ transfers

    def _create_transfer(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, _TRANSFER_PARAMS)
        amount = required_integer(params, "amount", minimum=1)
        currency = currency_param(params)
        _check_units(amount, currency)
        destination = required_string(params, "destination")
        metadata = metadata_param(params)
        if _DESTINATION_RE.fullmatch(destination) is None:
            raise resource_missing("destination", destination, param="destination", status=400)
        available = self._available.get(currency)
        if available is not None and amount > available:
            raise invalid_request(
                "You have insufficient available funds in your Stripe account. Try adding funds directly "
                "to your available balance by creating Charges using the 4000000000000077 test card.",
                code="balance_insufficient",
                stored=True,
            )
        if available is not None:
            self._available[currency] = available - amount
        transfer = _Transfer(
            id=new_id("tr"),
            created=int(time.time()),
            amount=amount,
            currency=currency,
            destination=destination,
            description=string_param(params, "description"),
            metadata=metadata,
            transfer_group=string_param(params, "transfer_group"),
            source_transaction=string_param(params, "source_transaction"),
        )
        self._transfers[transfer.id] = transfer
        return ApiResponse(200, _render_transfer(transfer), executed=True)

    def _retrieve_transfer(self, params: Params, transfer_id: str) -> ApiResponse:
        reject_unknown(params, frozenset({"expand"}))
        transfer = self._transfers.get(transfer_id)
        if transfer is None:
            raise resource_missing("transfer", transfer_id, param="id")
        return ApiResponse(200, _render_transfer(transfer), stored=False)

    def _list_transfers(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, _PAGE_PARAMS | {"destination", "transfer_group"})
        destination = string_param(params, "destination")
        group = string_param(params, "transfer_group")
        transfers = [
            t
            for t in self._transfers.values()
            if destination in (None, t.destination) and group in (None, t.transfer_group)
        ]
        return _list_page("/v1/transfers", transfers, params, _render_transfer)

    # ---------------------------------------------------------------------------- async settlement

    def _schedule(self, object_id: str, status: str) -> None:
        self._settlements.append((time.monotonic() + self._settle_after, object_id, status))

    def _settle_due(self) -> None:
        now = time.monotonic()
        due = [entry for entry in self._settlements if entry[0] <= now]
        self._settlements = [entry for entry in self._settlements if entry[0] > now]
        for _, object_id, status in due:
            try:
                self.set_status(object_id, status)
            except ValueError:
                continue  # overtaken by an explicit set_status; the later state stands


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


def _check_units(amount: int, currency: str) -> None:
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


def _check_charge_amount(amount: int, currency: str) -> None:
    _check_units(amount, currency)
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


def _unexpected_state(intent: _Intent, action: str, allowed: tuple[str, ...]) -> StripeApiError:
    return invalid_request(
        f"You cannot {action} this PaymentIntent because it has a status of {intent.status}. Only a "
        f"PaymentIntent with one of the following statuses may be {action}ed: {', '.join(allowed)}.",
        code="payment_intent_unexpected_state",
        stored=True,
    )


def _next_action(intent: _Intent) -> JsonDict:
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


def _render_card(card: TestCard) -> JsonDict:
    return {"brand": card.brand, "last4": card.last4, "exp_month": 12, "exp_year": 2034, "funding": "credit"}


def _render_payment_method(payment_method_id: str, card: TestCard) -> JsonDict:
    return {"id": payment_method_id, "object": "payment_method", "type": "card", "card": _render_card(card)}


def _render_refund(refund: _Refund) -> JsonDict:
    return {
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "charge": refund.charge,
        "created": refund.created,
        "currency": refund.currency,
        "failure_reason": refund.failure_reason,
        "metadata": _json_map(refund.metadata),
        "payment_intent": refund.payment_intent,
        "reason": refund.reason,
        "status": refund.status,
    }


def _render_transfer(transfer: _Transfer) -> JsonDict:
    return {
        "id": transfer.id,
        "object": "transfer",
        "amount": transfer.amount,
        "amount_reversed": 0,
        "created": transfer.created,
        "currency": transfer.currency,
        "description": transfer.description,
        "destination": transfer.destination,
        "livemode": False,
        "metadata": _json_map(transfer.metadata),
        "reversed": False,
        "source_transaction": transfer.source_transaction,
        "transfer_group": transfer.transfer_group,
    }


def _json_map(values: dict[str, str]) -> JsonDict:
    return dict[str, JsonValue](values)


def _field_reader(intent: _Intent) -> Callable[[SearchClause], int | str | None]:
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


def _newest_first(items: Iterable[T]) -> list[T]:
    # Later insertion wins ties between objects created within the same second.
    indexed = list(enumerate(items))
    indexed.sort(key=lambda pair: (pair[1].created, pair[0]), reverse=True)
    return [item for _, item in indexed]


def _limit(params: Params) -> int:
    limit = integer_param(params, "limit", minimum=1)
    if limit is not None and limit > 100:
        raise invalid_request("This value must be less than or equal to 100.", param="limit")
    return limit or 10


def _search_offset(page: str | None) -> int:
    if page is None:
        return 0
    if re.fullmatch(r"page_[0-9]+", page) is None:
        raise invalid_request(f"Invalid page: {page}", param="page")
    return int(page.removeprefix("page_"))


def _list_page(url: str, items: Iterable[T], params: Params, render: Callable[[T], JsonDict]) -> ApiResponse:
    """Stripe's cursor pagination, newest first, over ``items``."""
    ordered = _newest_first(items)
    ids = [item.id for item in ordered]
    after = string_param(params, "starting_after")
    before = string_param(params, "ending_before")
    limit = _limit(params)
    for cursor, param in ((after, "starting_after"), (before, "ending_before")):
        if cursor is not None and cursor not in ids:
            raise resource_missing("object", cursor, param=param, status=400)
    if after is not None:
        window = ordered[ids.index(after) + 1 :]
        page, has_more = window[:limit], len(window) > limit
    elif before is not None:
        window = ordered[: ids.index(before)]
        page, has_more = window[-limit:], len(window) > limit
    else:
        page, has_more = ordered[:limit], len(ordered) > limit
    data: list[JsonValue] = [render(item) for item in page]
    body: JsonDict = {"object": "list", "data": data, "has_more": has_more, "url": url}
    return ApiResponse(200, body, stored=False)
