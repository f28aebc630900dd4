"""The offline sandbox's Stripe account: which endpoint runs which rule, under one lock.

``StripeLedger`` is the sandbox's single test-mode Stripe account. It knows nothing about HTTP,
idempotency or faults (see ``stripe_sandbox``); it routes decoded parameters to the rules of each
resource (``stripe_intents``, ``stripe_refunds``, ``stripe_transfers``, ``stripe_reversals``), which
turn them into Stripe-shaped answers and say whether each answer really executed an operation, so
tests can prove exactly-once. It also settles asynchronous outcomes when their time comes, and stamps every change
the rules announce as an Event (``stripe_events``) for the webhook sender. All money is ``int``
minor units. Thread-safe: every handler runs under one lock.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from adapters.sandboxes.stripe_events import AUTOMATIC, EventSink, RequestOrigin, new_event
from adapters.sandboxes.stripe_intents import Authentication, PaymentIntents
from adapters.sandboxes.stripe_refunds import Refunds
from adapters.sandboxes.stripe_resources import Handler, Render, StripeAccount
from adapters.sandboxes.stripe_reversals import TransferReversals
from adapters.sandboxes.stripe_transfers import Transfers
from adapters.sandboxes.stripe_wire import ApiResponse, Params, StripeApiError

# Operation names, as counted by the sandbox's execution counters.
CREATE_PAYMENT_INTENT = "payment_intents.create"
CONFIRM_PAYMENT_INTENT = "payment_intents.confirm"
CAPTURE_PAYMENT_INTENT = "payment_intents.capture"
CANCEL_PAYMENT_INTENT = "payment_intents.cancel"
CREATE_REFUND = "refunds.create"
CREATE_TRANSFER = "transfers.create"
REVERSE_TRANSFER = "transfer_reversals.create"


@dataclass(frozen=True)
class Route:
    """A matched endpoint: ``operation`` names mutating endpoints for the counters (None for reads)."""

    operation: str | None
    call: Callable[[Params, RequestOrigin], ApiResponse]


@dataclass(frozen=True)
class _RouteSpec:
    method: str
    pattern: re.Pattern[str]
    operation: str | None
    handler: Handler


class StripeLedger:
    """The state of one test-mode Stripe account and the rules Stripe applies to it.

    ``settle_after_seconds``: how long asynchronous outcomes (``pm_card_pendingRefund``,
    ``pm_card_refundFail``, ``pm_card_processing``) take before a read shows their final state.
    ``events``: where the account's Events go (rendered only while it listens), in ``api_version``.
    """

    def __init__(
        self, *, settle_after_seconds: float = 0.0, events: EventSink | None = None, api_version: str = ""
    ) -> None:
        self._settle_after = settle_after_seconds
        self._events = events
        self._api_version = api_version
        self._origin = AUTOMATIC  # the API request being executed, for the events it causes
        self._lock = threading.RLock()
        self._account = StripeAccount()
        self._settlements: list[tuple[float, str, str]] = []
        self._intents = PaymentIntents(self._account, self._schedule, self._publish)
        self._refunds = Refunds(self._account, self._schedule, self._publish)
        self._transfers = Transfers(self._account, self._schedule, self._publish)
        self._reversals = TransferReversals(self._account, self._schedule, self._publish)
        self._routes = self._route_specs()

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
            if object_id in self._account.intents:
                self._intents.transition(self._account.intents[object_id], status)
            elif object_id in self._account.refunds:
                self._refunds.transition(self._account.refunds[object_id], status)
            else:
                raise ValueError(f"no payment intent or refund {object_id!r}")

    def settle_due(self) -> None:
        """Apply every asynchronous outcome whose time has come (every request does so first, too)."""
        with self._lock:
            self._settle_due()

    def set_public_url(self, url: str) -> None:
        """Where the sandbox is reached, for the 3-D Secure page URLs that ``next_action`` shows."""
        with self._lock:
            self._intents.challenge_base_url = url

    def knows_challenge(self, source: str) -> bool:
        """Whether ``source`` is a 3-D Secure page this account ever asked for."""
        with self._lock:
            return source in self._account.challenges

    def authenticate(self, source: str, passed: bool) -> Authentication:
        """The customer's answer on the 3-D Secure page ``source``; KeyError if there is no such page."""
        with self._lock:
            self._settle_due()
            return self._intents.authenticate(source, passed)

    def set_available_balance(self, currency: str, amount: int | None) -> None:
        """Limit the platform balance that transfers draw from (None: unlimited, the default)."""
        with self._lock:
            if amount is None:
                self._account.available.pop(currency.lower(), None)
            else:
                self._account.available[currency.lower()] = amount

    def reset(self) -> None:
        """Forget every object, as a fresh test-mode account."""
        with self._lock:
            self._account.clear()
            self._settlements.clear()

    def _bind(self, handler: Handler, path_id: str) -> Callable[[Params, RequestOrigin], ApiResponse]:
        def call(params: Params, origin: RequestOrigin) -> ApiResponse:
            with self._lock:
                self._settle_due()
                self._origin = origin
                try:
                    return handler(params, path_id)
                except StripeApiError as error:
                    return error.response()
                finally:
                    self._origin = AUTOMATIC

        return call

    def _publish(self, event_type: str, render: Render) -> None:
        """Stamp a change the rules announce as an Event; called under the lock, so events keep its order."""
        events = self._events
        if events is not None and events.listening():
            event = new_event(event_type, render(), api_version=self._api_version, origin=self._origin)
            events.publish(event)

    def _route_specs(self) -> list[_RouteSpec]:
        pi, intents, refunds, transfers = r"/v1/payment_intents", self._intents, self._refunds, self._transfers
        tr = r"/v1/transfers"
        specs: list[tuple[str, str, str | None, Handler]] = [
            ("POST", pi, CREATE_PAYMENT_INTENT, intents.create),
            ("GET", pi, None, intents.list_all),
            ("GET", pi + "/search", None, intents.search),
            ("GET", pi + r"/([^/]+)", None, intents.retrieve),
            ("POST", pi + r"/([^/]+)/confirm", CONFIRM_PAYMENT_INTENT, intents.confirm),
            ("POST", pi + r"/([^/]+)/capture", CAPTURE_PAYMENT_INTENT, intents.capture),
            ("POST", pi + r"/([^/]+)/cancel", CANCEL_PAYMENT_INTENT, intents.cancel),
            ("GET", r"/v1/charges/([^/]+)", None, intents.retrieve_charge),
            ("POST", r"/v1/refunds", CREATE_REFUND, refunds.create),
            ("GET", r"/v1/refunds", None, refunds.list_all),
            ("GET", r"/v1/refunds/([^/]+)", None, refunds.retrieve),
            ("POST", tr, CREATE_TRANSFER, transfers.create),
            ("GET", tr, None, transfers.list_all),
            ("GET", tr + r"/([^/]+)", None, transfers.retrieve),
            ("POST", tr + r"/([^/]+)/reversals", REVERSE_TRANSFER, self._reversals.create),
            ("GET", tr + r"/([^/]+)/reversals", None, self._reversals.list_all),
        ]
        return [_RouteSpec(m, re.compile(p), op, h) for m, p, op, h in specs]

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
