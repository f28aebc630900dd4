"""Stripe behind the PSP port, with the official SDK (StripeClient, async over aiohttp; see PooledAIOHTTPClient).

Only translation lives here: charge = PaymentIntent created and confirmed; refund = Refund on the
PaymentIntent; payout to a seller = Transfer to the connected account. Every POST carries the order's
derived idempotency key; our ids go into metadata (and the payout id into transfer_group) so an
operation can always be found again. The SDK's own retries are off: adapters.retry owns retrying.

Requests go through the SDK's raw-request entry point (`StripeClient.raw_request_async`): the SDK still
authenticates, sets Stripe's headers and the idempotency key, and raises its typed errors, but the
answer is read as the JSON it is. Building the SDK's StripeObject tree for each answer cost ~10 % of a
served charge's CPU (docs/performance.md), for the four fields read here.
"""

from __future__ import annotations

import logging
import re
import ssl
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import stripe

from server.app.deadline import Deadline
from server.app.psp import (
    CancelOrder,
    CaptureOrder,
    ChargeOrder,
    Order,
    OutcomeKind,
    PayeeAnswer,
    PayeeCheckOrder,
    PayoutOrder,
    PspOutcome,
    PspRejectedError,
    PspUnavailableError,
    RefundOrder,
)
from server.domain.finality import Rejection
from server.domain.idempotency import Operation
from server.domain.metadata import service_key
from server.domain.model import (
    Failure,
    NextAction,
    PayoutDestination,
    RedirectToUrl,
    StripeAccountDestination,
    UseStripeSdk,
)
from server.domain.money import Currency, Money
from server.domain.refunds import REFUND_REASONS

log = logging.getLogger(__name__)

STRIPE_API_BASE = "https://api.stripe.com"
# Stripe honours an idempotency key for 24 hours ("Idempotent requests", Stripe API reference); resends
# stop an hour earlier so a slow attempt cannot cross the edge. PAYMENTS_STRIPE_KEY_TTL_SECONDS overrides.
STRIPE_KEY_TTL_SECONDS = 23 * 3600.0
# Stripe keeps PaymentIntents, Refunds and Transfers retrievable, and findable by our metadata, long
# after they end; recovery asks at least this long before it hands an operation to reconciliation.
STRIPE_LOOKUP_WINDOW_SECONDS = 30 * 86400.0
# -- Stripe's representation of amounts (https://docs.stripe.com/currencies) ----------------------------
# The service counts in ISO 4217 minor units; Stripe counts in its own, which differ where Stripe says so:
# - "Zero-decimal currencies": the amount is whole units. MGA is one although ISO 4217 gives it two
#   decimals, so an MGA amount must be whole ariary and is sent divided by 100.
# - "Three-decimal currencies" (BHD, JOD, KWD, OMR, TND): three decimals, "the least-significant (last)
#   digit to be 0" for compatibility with Stripe's partners.
# - "Special cases": ISK has no minor unit in ISO 4217 (and no fractional kronur since 2023), but Stripe
#   keeps it a two-decimal currency "to maintain backwards compatibility": 5 ISK is sent as 500. HUF and
#   TWD are charged with two decimals like ISO says; their rule (amounts divisible by 100) applies to
#   Stripe *payouts* to bank accounts, which this service never creates: sellers are paid by Transfer.
#   UGX is zero-decimal in ISO and at Stripe alike.
# - "Minimum and maximum charge amounts": at most eight digits in Stripe's units (99999999); at least
#   the minimums of Stripe's table (the equivalent of USD 0.50 for the rest, which Stripe enforces itself).
STRIPE_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
STRIPE_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
STRIPE_TWO_DECIMAL_SPECIAL = frozenset({"ISK"})
STRIPE_MAX_AMOUNT = 99_999_999
STRIPE_MIN_CHARGE: dict[str, int] = {  # in Stripe's units
    "USD": 50, "AED": 200, "AUD": 50, "BRL": 50, "CAD": 50, "CHF": 50, "CZK": 1500, "DKK": 250, "EUR": 50,
    "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50, "JPY": 50, "MXN": 1000, "MYR": 200, "NOK": 300, "NZD": 50,
    "PLN": 200, "RON": 200, "SEK": 300, "SGD": 50, "THB": 1000,
}  # fmt: skip


def stripe_exponent(currency: str) -> int:
    """Decimal digits of the currency in Stripe's API (not always ISO 4217's)."""
    if currency in STRIPE_ZERO_DECIMAL:
        return 0
    return 3 if currency in STRIPE_THREE_DECIMAL else 2


def to_stripe_amount(amount: Money) -> int:
    """ISO minor units to Stripe's units (exact: amount_problem refuses what does not convert)."""
    shift = stripe_exponent(amount.currency) - Currency.of(amount.currency).exponent
    return amount.amount_minor * int(10**shift) if shift >= 0 else amount.amount_minor // int(10**-shift)


def stripe_amount_problem(amount: Money, *, charge: bool) -> str | None:
    """Why Stripe would refuse this amount, or None; `charge` adds Stripe's minimum charge amounts."""
    shift = stripe_exponent(amount.currency) - Currency.of(amount.currency).exponent
    if shift < 0 and amount.amount_minor % 10**-shift:
        return f"Stripe accepts whole units of {amount.currency} only"
    stripe_amount = to_stripe_amount(amount)
    if amount.currency in STRIPE_THREE_DECIMAL and stripe_amount % 10:
        return f"Stripe requires {amount.currency} amounts whose last (thousandth) digit is 0"
    if stripe_amount > STRIPE_MAX_AMOUNT:
        units = Money(_from_stripe_amount(STRIPE_MAX_AMOUNT, amount.currency), amount.currency)
        return f"Stripe accepts at most {units.format()}"
    minimum = STRIPE_MIN_CHARGE.get(amount.currency, 1) if charge else 1
    if stripe_amount < minimum:
        return f"Stripe's minimum is {Money(_from_stripe_amount(minimum, amount.currency), amount.currency).format()}"
    return None


def _from_stripe_amount(stripe_amount: int, currency: str) -> int:
    shift = stripe_exponent(currency) - Currency.of(currency).exponent
    return stripe_amount // int(10**shift) if shift >= 0 else stripe_amount * int(10**-shift)


_ACCOUNT_ID = re.compile(r"acct_[A-Za-z0-9]{1,64}")
_API_KEY_PREFIXES = ("sk_", "rk_")  # a secret or a restricted key; a publishable key (pk_) cannot charge


def api_key_problem(api_key: str) -> str | None:
    """Why this cannot be a Stripe API key for a server, or None (checked at start-up)."""
    if not api_key.startswith(_API_KEY_PREFIXES):
        return "PAYMENTS_STRIPE_API_KEY must be a Stripe secret or restricted key (sk_… / rk_…)"
    return None


_SECRET_KEY = re.compile(r"\b([sr]k_(?:test|live)_)[A-Za-z0-9*]+")
# Transport errors that prove the request never left (httpx or aiohttp): anything else may have executed.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, aiohttp.ClientConnectorError,
             aiohttp.ConnectionTimeoutError)  # fmt: skip

_INTENT_OUTCOMES = {
    "succeeded": OutcomeKind.SUCCEEDED,
    "processing": OutcomeKind.PENDING,
    "requires_action": OutcomeKind.REQUIRES_ACTION,
    "requires_confirmation": OutcomeKind.REQUIRES_ACTION,
    "requires_capture": OutcomeKind.AUTHORIZED,
    "requires_payment_method": OutcomeKind.FAILED,
    "canceled": OutcomeKind.CANCELED,
}
# Stripe holds an uncaptured card authorization for 7 days for most cards ("Place a hold on a payment
# method"); the charge's payment_method_details.card.capture_before says exactly when, where given.
STRIPE_AUTHORIZATION_SECONDS = 7 * 86400
_REFUND_OUTCOMES = {
    "succeeded": OutcomeKind.SUCCEEDED,
    "pending": OutcomeKind.PENDING,
    "requires_action": OutcomeKind.PENDING,
    "failed": OutcomeKind.FAILED,
    "canceled": OutcomeKind.FAILED,
}


class PooledAIOHTTPClient(stripe.AIOHTTPClient):
    """The SDK's aiohttp transport, with a connection pool sized for the calls in flight.

    Why aiohttp: the SDK supports httpx and aiohttp; measured on the same charge against the sandbox,
    the httpx path cost 3,700 µs of CPU per call (httpcore's pool walks every connection on each request,
    encode/httpx#3215) and the aiohttp path 660 µs. Why a subclass: the SDK builds its connector with
    aiohttp's default limit of 100 connections, a hidden cap on concurrent Stripe calls per process; the
    session is built here, lazily inside the running loop as the SDK does, with PAYMENTS_PSP_MAX_CONNECTIONS.
    """

    def __init__(self, timeout_seconds: float, max_connections: int) -> None:
        super().__init__(timeout=aiohttp.ClientTimeout(total=timeout_seconds))
        self._max_connections = max_connections

    @property
    def _session(self) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession | None = self._cached_session
        if session is None:
            ssl_context = ssl.create_default_context(cafile=stripe.ca_bundle_path)
            connector = aiohttp.TCPConnector(ssl=ssl_context, limit=self._max_connections, limit_per_host=0)
            session = aiohttp.ClientSession(connector=connector)
            self._cached_session = session  # type: ignore[assignment] # the SDK annotates it as always None
        return session


def pooled_http_client(timeout_seconds: float, max_connections: int) -> PooledAIOHTTPClient:
    return PooledAIOHTTPClient(timeout_seconds, max_connections)


def stripe_client(
    api_key: str, api_base: str | None, http_client: stripe.HTTPXClient | stripe.AIOHTTPClient
) -> stripe.StripeClient:
    """A StripeClient with the SDK's retries off, over the given async httpx transport."""
    return stripe.StripeClient(
        api_key=api_key,
        base_addresses={"api": api_base or STRIPE_API_BASE},
        max_network_retries=0,
        http_client=http_client,
    )


async def close_http_client(http_client: stripe.HTTPXClient | stripe.AIOHTTPClient) -> None:
    # The SDK leaves close_async unannotated; it closes the pooled client (httpx or aiohttp).
    await http_client.close_async()  # type: ignore[no-untyped-call]


def _metadata(**ids: str) -> dict[str, str]:
    """The service's own metadata keys, under the prefix callers may not use (server/domain/metadata.py)."""
    return {service_key(k): v for k, v in ids.items() if v}


class StripeAdapter:
    """Single attempts against Stripe (wrap with adapters.retry.RetryingProvider)."""

    def __init__(
        self,
        client: stripe.StripeClient,
        *,
        name: str = "stripe",
        key_ttl_seconds: float = STRIPE_KEY_TTL_SECONDS,
        lookup_window_seconds: float = STRIPE_LOOKUP_WINDOW_SECONDS,
    ) -> None:
        self._client = client
        self._name = name
        self._key_ttl_seconds = key_ttl_seconds
        self._lookup_window_seconds = lookup_window_seconds

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_ttl_seconds(self) -> float:
        return self._key_ttl_seconds

    @property
    def lookup_window_seconds(self) -> float:
        return self._lookup_window_seconds

    @property
    def payouts_can_return(self) -> bool:
        # The platform can reverse a Transfer to a connected account (transfer.reversed): a paid payout is
        # watched for it like a SEPA return.
        return True

    def prepare_payout(self, order: PayoutOrder) -> dict[str, str]:
        return {}

    def amount_problem(self, amount: Money, operation: Operation) -> str | None:
        return stripe_amount_problem(amount, charge=operation is Operation.CHARGE)

    def destination_problem(self, destination: PayoutDestination) -> str | None:
        if not isinstance(destination, StripeAccountDestination):
            return "Stripe pays out to connected accounts only"
        if _ACCOUNT_ID.fullmatch(destination.account_id) is None:
            return "must be a Stripe connected account id (acct_…)"
        return None

    # -- operations ---------------------------------------------------------------------------

    async def charge(self, order: ChargeOrder, deadline: Deadline) -> PspOutcome:
        params: dict[str, Any] = {
            "amount": to_stripe_amount(order.amount),
            "currency": order.amount.currency.lower(),
            "payment_method": order.payment_method,
            "confirm": True,
            # Cards only, no redirect flow: a confirm needs no return_url, 3-D Secure shows as requires_action.
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            "metadata": {
                **order.metadata,
                **_metadata(
                    payment_id=order.payment_id, idempotency_key=order.idempotency_key, customer_id=order.customer_id
                ),
            },
        }
        if order.description:
            params["description"] = order.description
        if order.capture_manually:
            params["capture_method"] = "manual"
        if order.return_url:
            # The customer may be redirected (3-D Secure): Stripe then needs the way back.
            params["automatic_payment_methods"] = {"enabled": True}
            params["return_url"] = order.return_url
        return await self._post("charge", "/v1/payment_intents", params, order.psp_key, _intent_outcome)

    async def capture(self, order: CaptureOrder, deadline: Deadline) -> PspOutcome:
        if not order.payment_psp_reference:
            raise PspRejectedError("the payment has no Stripe PaymentIntent", code="missing_psp_reference")
        params: dict[str, Any] = {"amount_to_capture": to_stripe_amount(order.amount)}
        if not order.final:
            params["final_capture"] = False  # Stripe's multicapture: keep the rest capturable
        path = f"/v1/payment_intents/{_path_id(order.payment_psp_reference)}/capture"
        return await self._post("capture", path, params, order.psp_key, _intent_outcome)

    async def cancel(self, order: CancelOrder, deadline: Deadline) -> PspOutcome:
        if not order.payment_psp_reference:
            raise PspRejectedError("the payment has no Stripe PaymentIntent", code="missing_psp_reference")
        params: dict[str, Any] = {"cancellation_reason": order.reason} if order.reason else {}
        path = f"/v1/payment_intents/{_path_id(order.payment_psp_reference)}/cancel"
        return await self._post("cancel", path, params, order.psp_key, _intent_outcome)

    async def refund(self, order: RefundOrder, deadline: Deadline) -> PspOutcome:
        if not order.payment_psp_reference:
            raise PspRejectedError("the payment has no Stripe PaymentIntent", code="missing_psp_reference")
        params: dict[str, Any] = {
            "payment_intent": order.payment_psp_reference,
            "amount": to_stripe_amount(order.amount),
            "metadata": _metadata(refund_id=order.refund_id, payment_id=order.payment_id,
                                  idempotency_key=order.idempotency_key, reason=order.reason[:500]),
        }  # fmt: skip
        if order.reason in REFUND_REASONS:  # refunds stored before the edge checked reasons keep them as metadata
            params["reason"] = order.reason
        return await self._post("refund", "/v1/refunds", params, order.psp_key, _refund_outcome)

    async def verify_payee(self, order: PayeeCheckOrder, deadline: Deadline) -> PayeeAnswer:
        """Verification of Payee is for SEPA credit transfers; Stripe pays connected accounts, so it is
        never asked (server/domain/payee_verification.py)."""
        raise PspRejectedError("Stripe has no Verification of Payee", code="unsupported_operation")

    async def payout(self, order: PayoutOrder, deadline: Deadline) -> PspOutcome:
        destination = order.destination
        if not isinstance(destination, StripeAccountDestination):
            raise PspRejectedError("Stripe pays out to connected accounts only", code="unsupported_destination")
        params: dict[str, Any] = {
            "amount": to_stripe_amount(order.amount),
            "currency": order.amount.currency.lower(),
            "destination": destination.account_id,
            "transfer_group": order.payout_id,
            "metadata": _metadata(payout_id=order.payout_id, idempotency_key=order.idempotency_key,
                                  reference=order.reference),
        }  # fmt: skip
        if order.reference:
            params["description"] = order.reference
        return await self._post("payout", "/v1/transfers", params, order.psp_key, _transfer_outcome)

    async def lookup(self, order: Order, psp_reference: str | None, deadline: Deadline) -> PspOutcome:
        """Finds the operation by its Stripe id, else by our metadata; UNKNOWN if Stripe never saw it."""
        async with self._errors("lookup") as guard:
            if isinstance(order, (CaptureOrder, CancelOrder)):  # what the PaymentIntent now holds
                return _intent_outcome(await self._get(f"/v1/payment_intents/{_path_id(order.payment_psp_reference)}"))
            if isinstance(order, ChargeOrder):
                if psp_reference:
                    return _intent_outcome(await self._get(f"/v1/payment_intents/{_path_id(psp_reference)}"))
                query = f"metadata['{service_key('payment_id')}']:'{order.payment_id}'"
                found = await self._get("/v1/payment_intents/search", query=query)
                if not found.body["data"]:
                    return PspOutcome(OutcomeKind.UNKNOWN)
                return _intent_outcome(_Answer(found.body["data"][0], found.request_id))
            if isinstance(order, RefundOrder):
                if psp_reference:
                    return _refund_outcome(await self._get(f"/v1/refunds/{_path_id(psp_reference)}"))
                listed = await self._get("/v1/refunds", payment_intent=order.payment_psp_reference, limit=100)
                for refund in listed.body["data"]:
                    if (refund.get("metadata") or {}).get(service_key("refund_id")) == order.refund_id:
                        return _refund_outcome(_Answer(refund, listed.request_id))
                return PspOutcome(OutcomeKind.UNKNOWN)
            if psp_reference:
                return _transfer_outcome(await self._get(f"/v1/transfers/{_path_id(psp_reference)}"))
            transfers = await self._get("/v1/transfers", transfer_group=order.payout_id)
            if transfers.body["data"]:
                return _transfer_outcome(_Answer(transfers.body["data"][0], transfers.request_id))
            return PspOutcome(OutcomeKind.UNKNOWN)
        return guard.outcome

    async def _post(
        self, operation: str, path: str, params: dict[str, Any], psp_key: str, outcome: Callable[[_Answer], PspOutcome]
    ) -> PspOutcome:
        """One POST with the order's PSP idempotency key; declines become outcomes, other errors translate."""
        async with self._errors(operation) as guard:
            response = await self._client.raw_request_async("post", path, idempotency_key=psp_key, **params)
            return outcome(_Answer(response.data, response.request_id))
        return guard.outcome

    async def _get(self, path: str, **params: Any) -> _Answer:
        response = await self._client.raw_request_async("get", path, **params)
        return _Answer(response.data, response.request_id)

    def _errors(self, operation: str) -> _StripeErrors:
        return _StripeErrors(self._name, operation)


class _Answer:
    """A Stripe object as its JSON (a dict) and the request id of the answer that carried it."""

    __slots__ = ("body", "request_id")

    def __init__(self, body: dict[str, Any], request_id: str | None) -> None:
        self.body = body
        self.request_id = request_id

    @property
    def data(self) -> dict[str, str]:
        return {"psp_request_id": self.request_id} if self.request_id else {}


def _path_id(stripe_id: str) -> str:
    return urllib.parse.quote(stripe_id, safe="")


def _intent_outcome(answer: _Answer) -> PspOutcome:
    intent = answer.body
    status = intent.get("status")
    kind = _INTENT_OUTCOMES.get(status or "", OutcomeKind.PENDING)
    failure = None
    if kind is OutcomeKind.FAILED:
        error = intent.get("last_payment_error")
        failure = (
            Failure(error.get("code") or "card_declined", error.get("message") or "", error.get("decline_code") or "")
            if error
            else Failure("payment_failed")
        )
    currency = str(intent.get("currency") or "").upper()
    capturable = _amount_of(intent.get("amount_capturable"), currency)
    received = _amount_of(intent.get("amount_received"), currency)
    until = _capture_before(intent) if kind is OutcomeKind.AUTHORIZED else None
    next_action = _next_action(intent) if kind is OutcomeKind.REQUIRES_ACTION else None
    return PspOutcome(kind, intent["id"], failure, answer.data, amount_capturable=capturable, amount_received=received,
                      capturable_until=until, next_action=next_action)  # fmt: skip


def _next_action(intent: dict[str, Any]) -> NextAction | None:
    """What the customer must do: a redirect (3-D Secure with a return_url), else Stripe.js with the
    intent's client secret, which goes to the caller and nowhere else."""
    action = intent.get("next_action") or {}
    redirect = action.get("redirect_to_url") if action.get("type") == "redirect_to_url" else None
    if isinstance(redirect, dict) and redirect.get("url"):
        return RedirectToUrl(url=str(redirect["url"]), return_url=str(redirect.get("return_url") or ""))
    secret = intent.get("client_secret")
    return UseStripeSdk(client_secret=secret) if isinstance(secret, str) and secret else None


def _amount_of(stripe_amount: Any, currency: str) -> int | None:
    if not isinstance(stripe_amount, int) or not currency:
        return None
    try:
        return _from_stripe_amount(stripe_amount, currency)
    except ValueError:  # a currency ISO 4217 does not know: nothing to record
        return None


def _capture_before(intent: dict[str, Any]) -> datetime | None:
    """When Stripe releases the authorization: the charge's capture_before where the answer carries the
    charge, else Stripe's default hold from the intent's creation."""
    charge = intent.get("latest_charge")
    if isinstance(charge, dict):
        card = ((charge.get("payment_method_details") or {}).get("card")) or {}
        if isinstance(card.get("capture_before"), int):
            return datetime.fromtimestamp(card["capture_before"], UTC)
    created = intent.get("created")
    return datetime.fromtimestamp(created + STRIPE_AUTHORIZATION_SECONDS, UTC) if isinstance(created, int) else None


def _refund_outcome(answer: _Answer) -> PspOutcome:
    refund = answer.body
    kind = _REFUND_OUTCOMES.get(refund.get("status") or "", OutcomeKind.PENDING)
    failure = None
    if kind is OutcomeKind.FAILED:
        reason = refund.get("failure_reason") or "refund_failed"
        failure = Failure(reason, "the refund failed at Stripe", reason)
    return PspOutcome(kind, refund["id"], failure, answer.data)


def _transfer_outcome(answer: _Answer) -> PspOutcome:
    """A Transfer is paid once Stripe made it; fully reversed, the money came back (RETURNED). A partial
    reversal leaves it paid: the payout's model has no partly returned state."""
    kind = OutcomeKind.RETURNED if answer.body.get("reversed") is True else OutcomeKind.SUCCEEDED
    return PspOutcome(kind, answer.body["id"], data=answer.data)


class _StripeErrors:
    """Maps the SDK's exceptions to outcomes (declines) or the port's errors, in one place."""

    def __init__(self, psp: str, operation: str) -> None:
        self._psp = psp
        self._operation = operation
        self.outcome = PspOutcome(OutcomeKind.UNKNOWN)

    async def __aenter__(self) -> _StripeErrors:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or not isinstance(exc, stripe.StripeError):
            return False
        if isinstance(exc, stripe.CardError):
            self.outcome = self._decline(exc)
            return True
        raise self._translate(exc) from exc

    def _decline(self, exc: stripe.CardError) -> PspOutcome:
        error = exc.error
        intent = getattr(error, "payment_intent", None) if error else None
        failure = Failure(
            exc.code or "card_declined",
            exc.user_message or "The card was declined.",
            (getattr(error, "decline_code", None) if error else None) or "",
        )
        data = {"psp_request_id": exc.request_id} if exc.request_id else {}
        return PspOutcome(OutcomeKind.FAILED, getattr(intent, "id", None), failure, data)

    def _translate(self, exc: stripe.StripeError) -> Exception:
        status = exc.http_status or 0
        headers = exc.headers or {}
        should_retry = str(headers.get("stripe-should-retry", "")).lower()
        where = f"stripe {self._operation}"
        if isinstance(exc, stripe.APIConnectionError):
            cause = exc.__cause__
            sent = not isinstance(cause, _NOT_SENT)
            return PspUnavailableError(f"{where}: connection failed ({type(cause).__name__})", possibly_executed=sent)
        if should_retry == "false":
            return self._rejected(exc, where)
        if isinstance(exc, stripe.RateLimitError) or status == 429:
            return PspUnavailableError(
                f"{where}: rate limited ({exc.code or 'rate_limit'})",
                possibly_executed=False,
                retry_after=_retry_after(headers),
                request_id=exc.request_id,
            )
        if status == 409 or status >= 500 or should_retry == "true":
            return PspUnavailableError(
                f"{where}: HTTP {status}", possibly_executed=True, retry_after=_retry_after(headers),
                request_id=exc.request_id,
            )  # fmt: skip
        return self._rejected(exc, where)

    def _rejected(self, exc: stripe.StripeError, where: str) -> PspRejectedError:
        code = exc.code or type(exc).__name__
        # Stripe's text can name our (masked) API key: it goes to our log with any key redacted, never
        # to a caller, who gets a message of our own.
        text = redact_keys(str(exc.user_message or exc))
        log.warning("%s refused (HTTP %s, %s): %s", where, exc.http_status, code, text)
        if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
            return PspRejectedError(
                f"{where}: Stripe refused this service's credentials ({code})", code=code,
                request_id=exc.request_id, rejection=Rejection.CREDENTIALS,
            )  # fmt: skip
        if isinstance(exc, stripe.IdempotencyError):
            # The key was used before (e.g. a deploy changed the request's parameters): the first
            # request reached Stripe, so this proves it may have executed. Look it up.
            return PspRejectedError(
                f"{where}: Stripe already holds a request under this idempotency key", code="idempotency_error",
                request_id=exc.request_id, rejection=Rejection.KEY_USED,
            )  # fmt: skip
        return PspRejectedError(f"{where}: Stripe refused the request ({code})", code=code, request_id=exc.request_id)


def redact_keys(text: str) -> str:
    """Stripe secret and restricted keys, even masked ones, reduced to their prefix."""
    return _SECRET_KEY.sub(r"\1[redacted]", text)


def _retry_after(headers: Any) -> float | None:
    raw = headers.get("retry-after") if headers else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
