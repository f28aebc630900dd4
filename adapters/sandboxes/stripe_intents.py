"""PaymentIntents and the charges they make, by Stripe's rules, for the offline sandbox.

The life of a payment: create (optionally confirming at once), confirm with a test card (succeed,
decline, require 3-D Secure, or stay processing), the customer's answer on the 3-D Secure page
(``authenticate``), capture (in full, in part, or several times) or cancel, and the asynchronous
endings tests drive with ``set_status``. Every change is announced as Stripe's Event (``publish``);
every answer says whether it executed an operation, so the sandbox can count executions. What a
request may say is ``stripe_intent_params``; the ledger (``stripe_objects``) routes here under its lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from adapters.sandboxes import stripe_intent_params as rules
from adapters.sandboxes.json_types import JsonDict, JsonValue
from adapters.sandboxes.stripe_resources import (
    AUTHORIZATION_VALID_SECONDS,
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
    retrieve,
    search_page,
)
from adapters.sandboxes.stripe_wire import (
    AUTHENTICATION_REQUIRED,
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
    invalid_request,
    metadata_param,
    reject_unknown,
    resource_missing,
    string_param,
)

CHALLENGE_PATH = "/_sandbox/3ds/"
"""Where the sandbox serves its 3-D Secure pages: ``<sandbox url>/_sandbox/3ds/<source id>``."""

_CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action", "processing")
_AUTHENTICATION_FAILED = (
    "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new "
    "PaymentMethod to attempt to fulfill this PaymentIntent again."
)
_GENERIC_DECLINE = Decline("card_declined", "generic_decline", "Your card was declined.")
_REDIRECT_STATUSES = {"succeeded": "succeeded", "requires_capture": "succeeded", "processing": "processing"}


@dataclass(frozen=True)
class Authentication:
    """Where the 3-D Secure page sends the customer's browser once they answered."""

    intent_id: str
    client_secret: str
    return_url: str | None
    redirect_status: str  # succeeded, processing or failed: how the payment stands now

    @property
    def redirect_url(self) -> str | None:
        """``return_url`` with the query Stripe adds (None without a return_url: nowhere to go)."""
        if self.return_url is None:
            return None
        query = urlencode(
            {
                "payment_intent": self.intent_id,
                "payment_intent_client_secret": self.client_secret,
                "redirect_status": self.redirect_status,
            }
        )
        return self.return_url + ("&" if "?" in self.return_url else "?") + query


class PaymentIntents(AccountRules):
    """The PaymentIntent and Charge endpoints of one account; ``schedule`` settles processing payments.

    ``challenge_base_url``: the sandbox's own URL, where ``next_action`` sends the customer for 3-D Secure.
    """

    challenge_base_url = ""

    def create(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, rules.CREATE_PARAMS)
        amount, currency = amount_param(params)
        rules.check_charge_limits(amount, currency)
        automatic, types = rules.payment_method_settings(params)
        confirm = boolean_param(params, "confirm") or False
        return_url = rules.return_url(params, automatic, confirming=confirm)
        intent = PaymentIntent(
            id=new_id("pi"),
            created=int(time.time()),
            amount=amount,
            currency=currency,
            capture_method=enum_param(params, "capture_method", rules.CAPTURE_METHODS) or "automatic_async",
            customer=rules.customer(params),
            description=string_param(params, "description"),
            metadata=metadata_param(params),
            automatic_payment_methods=automatic,
            payment_method_types=types,
        )
        token = string_param(params, "payment_method")
        if token is not None:
            intent.payment_method, intent.card = self._attach(token)
            intent.status = "requires_confirmation"
        if confirm:
            self._check_confirmable(intent, return_url)
        expand = rules.expansions(params, {"latest_charge"})
        self._account.intents[intent.id] = intent
        self._announce(intent, "payment_intent.created")
        if not confirm:
            return ApiResponse(200, self._render_intent(intent, expand), executed=True)
        return self._confirm(intent, boolean_param(params, "off_session") or False, expand)

    def confirm(self, params: Params, intent_id: str) -> ApiResponse:
        intent = self._intent(intent_id)
        reject_unknown(params, rules.CONFIRM_PARAMS)
        expand = rules.expansions(params, {"latest_charge"})
        if intent.status not in _CONFIRMABLE:
            raise _unexpected_state(intent, "confirm", "confirmed", _CONFIRMABLE)
        capture_method = enum_param(params, "capture_method", rules.CAPTURE_METHODS)
        return_url = rules.return_url(params, intent.automatic_payment_methods, confirming=True)
        token = string_param(params, "payment_method")
        if token is not None:
            intent.payment_method, intent.card = self._attach(token)
        self._check_confirmable(intent, return_url)
        intent.capture_method = capture_method or intent.capture_method
        return self._confirm(intent, boolean_param(params, "off_session") or False, expand)

    def capture(self, params: Params, intent_id: str) -> ApiResponse:
        """Capture all or part of what is authorized; ``final_capture=false`` keeps the rest capturable."""
        intent = self._intent(intent_id)
        reject_unknown(params, rules.CAPTURE_PARAMS)
        expand = rules.expansions(params, {"latest_charge"})
        requested, final = rules.capture_amount(params)
        metadata = metadata_param(params)
        if intent.status != "requires_capture" or intent.latest_charge is None:
            raise _unexpected_state(intent, "capture", "captured", ("requires_capture",))
        amount = intent.amount_capturable if requested is None else requested
        if amount > intent.amount_capturable:
            raise invalid_request(
                "The amount to capture must be less than or equal to the amount capturable.",
                param="amount_to_capture",
                code="amount_too_large",
                stored=True,
            )
        charge = self._account.charges[intent.latest_charge]
        charge.captured, charge.amount_captured = True, charge.amount_captured + amount
        intent.amount_received += amount
        intent.amount_capturable -= amount
        intent.metadata.update(metadata)
        if final or intent.amount_capturable == 0:
            intent.status, intent.amount_capturable = "succeeded", 0  # the rest of the hold is released
            self._announce(intent, "payment_intent.succeeded")
        else:
            self._announce(intent, "payment_intent.amount_capturable_updated")
        return ApiResponse(200, self._render_intent(intent, expand), executed=True)

    def cancel(self, params: Params, intent_id: str) -> ApiResponse:
        intent = self._intent(intent_id)
        reject_unknown(params, rules.CANCEL_PARAMS)
        expand = rules.expansions(params, {"latest_charge"})
        reason = enum_param(params, "cancellation_reason", rules.CANCELLATION_REASONS)
        if intent.status not in _CANCELABLE:
            raise _unexpected_state(intent, "cancel", "canceled", _CANCELABLE)
        self._cancel(intent, reason)
        return ApiResponse(200, self._render_intent(intent, expand), executed=True)

    def retrieve(self, params: Params, intent_id: str) -> ApiResponse:
        reject_unknown(params, frozenset({"expand", "client_secret"}))
        expand = rules.expansions(params, {"latest_charge"})
        return ApiResponse(200, self._render_intent(self._intent(intent_id), expand), stored=False)

    def list_all(self, params: Params, _: str) -> ApiResponse:
        intents = filtered(self._account.intents.values(), params, {"customer": lambda i: i.customer})
        expand = {e.removeprefix("data.") for e in rules.expansions(params, {"data.latest_charge"})}
        return list_page("/v1/payment_intents", intents, params, lambda i: self._render_intent(i, expand))

    def search(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, rules.SEARCH_PARAMS)
        query = rules.search_query(params)
        expand = {e.removeprefix("data.") for e in rules.expansions(params, {"data.latest_charge"})}
        found = [i for i in newest_first(self._account.intents.values()) if query.matches(_field_reader(i))]
        return search_page("/v1/payment_intents/search", found, params, lambda i: self._render_intent(i, expand))

    def authenticate(self, source: str, passed: bool) -> Authentication:
        """The customer's answer on 3-D Secure page ``source``; KeyError for an unknown page.

        Only the intent's open challenge moves it; answering a finished (or superseded) page again
        changes nothing and tells the browser how the payment stands.
        """
        intent = self._account.intents[self._account.challenges[source]]
        if intent.status == "requires_action" and intent.challenge == source:
            self._finish_authentication(intent, passed)
        status = _REDIRECT_STATUSES.get(intent.status, "failed")
        return Authentication(intent.id, intent.full_client_secret, intent.return_url, status)

    def _attach(self, token: str) -> tuple[str, TestCard]:
        card = TEST_CARDS.get(token) or self._account.cards.get(token)
        if card is None:
            raise resource_missing("PaymentMethod", token, param="payment_method", status=400)
        if token in self._account.cards:
            return token, card
        cloned = new_id("pm")  # Stripe clones a test token into a fresh PaymentMethod per use
        self._account.cards[cloned] = card
        return cloned, card

    def _check_confirmable(self, intent: PaymentIntent, return_url: str | None) -> None:
        if intent.card is None:
            raise invalid_request(
                "You cannot confirm this PaymentIntent because it's missing a payment method. You can "
                "either update the PaymentIntent with a payment method and then confirm it again, or "
                "confirm it again directly with a payment method.",
                code="payment_intent_unexpected_state",
            )
        rules.check_return_url_given(intent.automatic_payment_methods, return_url or intent.return_url)
        if "card" not in intent.payment_method_types:
            raise invalid_request(
                "The PaymentMethod provided (card) is not allowed for this PaymentIntent. Please attach a "
                "PaymentMethod of one of the following types: " + ", ".join(intent.payment_method_types),
                param="payment_method",
            )
        intent.return_url = return_url or intent.return_url

    def _confirm(self, intent: PaymentIntent, off_session: bool, expand: set[str]) -> ApiResponse:
        card = intent.card
        if card is None:  # _check_confirmable refused this already
            raise invalid_request("Missing payment method.", param="payment_method")
        intent.next_action = intent.last_payment_error = intent.challenge = None
        if card.outcome is CardOutcome.REQUIRE_ACTION and not off_session:
            self._challenge(intent)
            return ApiResponse(200, self._render_intent(intent, expand), executed=True)
        decline = AUTHENTICATION_REQUIRED if card.outcome is CardOutcome.REQUIRE_ACTION else card.decline
        if decline is not None:
            return self._decline(intent, card, decline, expand)
        if card.outcome is CardOutcome.PROCESSING:
            self._new_charge(intent, card, "pending")
            intent.status = "processing"
            self._schedule(intent.id, "succeeded")
            self._announce(intent, "payment_intent.processing")
        else:
            self._succeed(intent, card)
        return ApiResponse(200, self._render_intent(intent, expand), executed=True)

    def _challenge(self, intent: PaymentIntent) -> None:
        """Ask for 3-D Secure: a page on the sandbox, reached by redirect (return_url) or by Stripe.js."""
        source = new_id("src")
        self._account.challenges[source] = intent.id
        url = f"{self.challenge_base_url}{CHALLENGE_PATH}{source}"
        if intent.return_url:
            next_action: JsonDict = {
                "type": "redirect_to_url",
                "redirect_to_url": {"return_url": intent.return_url, "url": url},
            }
        else:
            sdk: JsonDict = {"type": "three_d_secure_redirect", "source": source, "stripe_js": url}
            next_action = {"type": "use_stripe_sdk", "use_stripe_sdk": sdk}
        intent.status, intent.challenge, intent.next_action = "requires_action", source, next_action
        self._announce(intent, "payment_intent.requires_action")

    def _finish_authentication(self, intent: PaymentIntent, passed: bool) -> None:
        card = intent.card
        intent.next_action = intent.challenge = None
        if passed and card is not None:
            self._succeed(intent, card)
            return
        extra: JsonDict = {}
        if card is not None and intent.payment_method is not None:
            extra["payment_method"] = render_payment_method(intent.payment_method, card)
        # Stripe reports a failed authentication as an invalid_request_error, not a card_error.
        intent.last_payment_error = error_body(
            "invalid_request_error", _AUTHENTICATION_FAILED, code="payment_intent_authentication_failure", extra=extra
        )
        intent.status, intent.payment_method = "requires_payment_method", None
        self._announce(intent, "payment_intent.payment_failed")

    def _succeed(self, intent: PaymentIntent, card: TestCard) -> None:
        charge = self._new_charge(intent, card, "succeeded")
        if intent.capture_method == "manual":
            charge.capture_before = charge.created + AUTHORIZATION_VALID_SECONDS
            intent.status, intent.amount_capturable = "requires_capture", intent.amount
            self._announce(intent, "payment_intent.amount_capturable_updated")
        else:
            intent.status, intent.amount_received = "succeeded", intent.amount
            charge.captured, charge.amount_captured = True, intent.amount
            self._announce(intent, "payment_intent.succeeded")

    def _decline(self, intent: PaymentIntent, card: TestCard, decline: Decline, expand: set[str]) -> ApiResponse:
        charge = self._new_charge(intent, card, "failed")
        charge.failure = decline
        payment_method = render_payment_method(intent.payment_method or "", card)
        intent.last_payment_error = _card_error(decline, charge.id, payment_method)
        intent.status, intent.payment_method = "requires_payment_method", None
        self._announce(intent, "payment_intent.payment_failed")
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
        """Release what is still authorized; a payment already captured in part (multicapture) succeeds.

        Since API version 2025-03-31 no Refund records a release, so refunds still see only captured money.
        """
        charge = self._account.charges.get(intent.latest_charge or "")
        if charge is not None and charge.status == "pending":
            charge.status = "failed"
        intent.amount_capturable, intent.next_action, intent.challenge = 0, None, None
        if intent.amount_received > 0:
            intent.status = "succeeded"
            self._announce(intent, "payment_intent.succeeded")
            return
        intent.status, intent.canceled_at, intent.cancellation_reason = "canceled", int(time.time()), reason
        self._announce(intent, "payment_intent.canceled")

    def transition(self, intent: PaymentIntent, status: str) -> None:
        if status == "canceled" and intent.status in _CANCELABLE:
            self._cancel(intent, None)
        elif status in ("succeeded", "requires_payment_method") and intent.status == "requires_action":
            self._finish_authentication(intent, passed=status == "succeeded")
        elif status == "succeeded" and intent.status == "processing" and intent.latest_charge:
            charge = self._account.charges[intent.latest_charge]
            charge.status, charge.captured, charge.amount_captured = "succeeded", True, intent.amount
            intent.status, intent.amount_received = "succeeded", intent.amount
            self._announce(intent, "payment_intent.succeeded")
        elif status == "requires_payment_method" and intent.status == "processing":
            charge = self._account.charges[intent.latest_charge or ""]
            charge.status, charge.failure = "failed", _GENERIC_DECLINE
            payment_method = render_payment_method(intent.payment_method or "", charge.card)
            intent.last_payment_error = _card_error(_GENERIC_DECLINE, charge.id, payment_method)
            intent.status, intent.payment_method = status, None
            self._announce(intent, "payment_intent.payment_failed")
        else:
            raise ValueError(f"payment intent {intent.id} cannot go from {intent.status} to {status}")

    def _intent(self, intent_id: str) -> PaymentIntent:
        intent = self._account.intents.get(intent_id)
        if intent is None:
            raise resource_missing("payment_intent", intent_id, param="intent")
        return intent

    def _announce(self, intent: PaymentIntent, event_type: str) -> None:
        self._publish(event_type, lambda: self._render_intent(intent, set()))

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
            "client_secret": intent.full_client_secret,
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


def _unexpected_state(intent: PaymentIntent, verb: str, done: str, allowed: tuple[str, ...]) -> StripeApiError:
    return invalid_request(
        f"You cannot {verb} this PaymentIntent because it has a status of {intent.status}. Only a "
        f"PaymentIntent with one of the following statuses may be {done}: {', '.join(allowed)}.",
        code="payment_intent_unexpected_state",
        stored=True,
    )


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
