"""The Stripe sandbox's card payment lifecycle, driven as a real integration drives Stripe.

Manual capture (partial, multicapture, refunds limited to what was captured), cancellation, 3-D Secure
through the sandbox's challenge page (followed link by link over plain HTTP, as a browser would), and
webhooks to a tiny loopback receiver, each verified with the official SDK's
``stripe.Webhook.construct_event``: retries after a 500, a duplicate and an out-of-order pair.
Everything listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import stripe
from stripe.params import PaymentIntentCreateParams

from adapters.sandboxes.stripe_objects import CAPTURE_PAYMENT_INTENT, REVERSE_TRANSFER
from adapters.sandboxes.stripe_sandbox import DEFAULT_STRIPE_VERSION, StripeSandbox
from adapters.sandboxes.stripe_webhooks import WebhookDelivery

API_KEY = "sk_test_lifecycle"
FORM = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-www-form-urlencoded"}
RETURN_URL = "https://shop.example/return?order=42"
SECRET = StripeSandbox.generate_webhook_secret()
SEVEN_DAYS = 7 * 24 * 3600

# stripe 16.1's HTTPXClient passes the form body as ``data=<str>``, which httpx 0.28 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


# ------------------------------------------------------------------------------- a webhook receiver


@dataclass(frozen=True)
class Received:
    payload: bytes
    signature: str


class WebhookReceiver:
    """A loopback endpoint that records every POST; answers ``statuses`` first (then 200), after ``pause``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.pause = 0.0
        self._lock = threading.Lock()
        receiver = self

        class _Endpoint(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append(Received(body, self.headers.get("Stripe-Signature", "")))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                time.sleep(receiver.pause)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/webhooks/stripe"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def events(self, secret: str = SECRET) -> list[stripe.Event]:
        """Every POST so far, verified as a Stripe integration verifies it."""
        with self._lock:
            received = list(self.received)
        return [stripe.Webhook.construct_event(r.payload, r.signature, secret, tolerance=300) for r in received]


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def _events(receiver: WebhookReceiver, count: int) -> list[stripe.Event]:
    await _until(lambda: len(receiver.received) >= count)
    await asyncio.sleep(0.05)  # nothing more is on its way
    return receiver.events()


def _types(events: list[stripe.Event]) -> list[str]:
    return [event.type for event in events]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def sandbox(receiver: WebhookReceiver) -> Iterator[StripeSandbox]:
    with StripeSandbox(webhook_url=receiver.url, webhook_secret=SECRET) as running:
        yield running


@pytest.fixture
async def client(sandbox: StripeSandbox) -> AsyncIterator[stripe.StripeClient]:
    http_client = stripe.HTTPXClient(timeout=5)
    yield stripe.StripeClient(
        api_key=API_KEY, base_addresses={"api": sandbox.url}, max_network_retries=0, http_client=http_client
    )
    await http_client.close_async()  # type: ignore[no-untyped-call]


@pytest.fixture
async def browser(sandbox: StripeSandbox) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP, redirects not followed: what the customer's browser would be sent to is asserted."""
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=5, follow_redirects=False) as plain:
        yield plain


def _params(
    payment_method: str = "pm_card_visa", *, manual: bool = False, return_url: str | None = None
) -> PaymentIntentCreateParams:
    params: PaymentIntentCreateParams = {
        "amount": 1000,
        "currency": "eur",
        "payment_method": payment_method,
        "confirm": True,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
    }
    if manual:
        params["capture_method"] = "manual"
    if return_url is not None:
        params["automatic_payment_methods"] = {"enabled": True}
        params["return_url"] = return_url
    return params


async def _authorize(client: stripe.StripeClient, amount: int = 1000) -> stripe.PaymentIntent:
    params = _params(manual=True)
    params["amount"] = amount
    return await client.v1.payment_intents.create_async(params=params)


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


# ----------------------------------------------------------------------------------- manual capture


async def test_manual_authorization_shows_what_is_capturable_until_when(client: stripe.StripeClient) -> None:
    held = await client.v1.payment_intents.create_async(params={**_params(manual=True), "expand": ["latest_charge"]})

    assert (held.status, held.amount_capturable, held.amount_received) == ("requires_capture", 1000, 0)
    assert held.client_secret is not None
    assert held.client_secret.startswith(f"{held.id}_secret_")
    charge = held.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert charge.payment_method_details is not None
    card = charge.payment_method_details.card
    assert card is not None
    assert card.capture_before == charge.created + SEVEN_DAYS
    assert (charge.captured, charge.amount_captured) == (False, 0)
    fetched = await client.v1.charges.retrieve_async(charge.id)
    assert (fetched.id, fetched.payment_intent) == (charge.id, held.id)


async def test_partial_capture_then_refunds_limited_to_what_was_captured(client: stripe.StripeClient) -> None:
    held = await _authorize(client)
    captured = await client.v1.payment_intents.capture_async(
        held.id, params={"amount_to_capture": 600, "expand": ["latest_charge"]}
    )
    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 600, 0)
    assert isinstance(captured.latest_charge, stripe.Charge)
    assert (captured.latest_charge.amount_captured, captured.latest_charge.captured) == (600, True)

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        await client.v1.refunds.create_async(params={"payment_intent": held.id, "amount": 601})
    assert (too_much.value.code, too_much.value.param) == ("amount_too_large", "amount")
    assert (await client.v1.refunds.create_async(params={"payment_intent": held.id})).amount == 600
    with pytest.raises(stripe.InvalidRequestError) as again:
        await client.v1.payment_intents.capture_async(held.id)
    assert again.value.code == "payment_intent_unexpected_state"


async def test_multicapture_keeps_the_rest_capturable_until_the_final_capture(client: stripe.StripeClient) -> None:
    held = await _authorize(client)
    first = await client.v1.payment_intents.capture_async(
        held.id, params={"amount_to_capture": 300, "final_capture": False}
    )
    assert (first.status, first.amount_received, first.amount_capturable) == ("requires_capture", 300, 700)
    refund = await client.v1.refunds.create_async(params={"payment_intent": held.id})
    assert refund.amount == 300, "only captured money can be refunded"

    last = await client.v1.payment_intents.capture_async(held.id, params={"amount_to_capture": 200})
    assert (last.status, last.amount_received, last.amount_capturable) == ("succeeded", 500, 0)


async def test_capture_honours_the_idempotency_key(sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    held = await _authorize(client)
    capture = client.v1.payment_intents.capture_async
    first = await capture(held.id, params={"amount_to_capture": 400}, options={"idempotency_key": "cap-1"})
    again = await capture(held.id, params={"amount_to_capture": 400}, options={"idempotency_key": "cap-1"})

    assert again.last_response is not None
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert (again.id, again.amount_received) == (first.id, 400)
    assert sandbox.executions(CAPTURE_PAYMENT_INTENT) == 1
    with pytest.raises(stripe.IdempotencyError):
        await capture(held.id, params={"amount_to_capture": 300}, options={"idempotency_key": "cap-1"})


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ("amount_to_capture=1001", "amount_too_large", "amount_to_capture"),
        ("amount_to_capture=0", "parameter_invalid_integer", "amount_to_capture"),
        ("amount_to_capture=5.5", "parameter_invalid_integer", "amount_to_capture"),
        ("final_capture=maybe", None, "final_capture"),
        ("amount_to_capture=1&tip=1", "parameter_unknown", "tip"),
    ],
)
async def test_invalid_captures_are_refused_in_stripes_shape(
    client: stripe.StripeClient, browser: httpx.AsyncClient, body: str, code: str | None, param: str
) -> None:
    held = await _authorize(client)
    error = _error(await browser.post(f"/v1/payment_intents/{held.id}/capture", content=body, headers=FORM))
    assert (error.get("code"), error.get("param")) == (code, param)
    assert error["message"]
    if code is not None:
        assert error["doc_url"] == "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
    fetched = await client.v1.payment_intents.retrieve_async(held.id)
    assert (fetched.status, fetched.amount_capturable) == ("requires_capture", 1000)


async def test_only_an_authorized_intent_can_be_captured(client: stripe.StripeClient) -> None:
    paid = await client.v1.payment_intents.create_async(params=_params())
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.payment_intents.capture_async(paid.id)
    assert (raised.value.http_status, raised.value.code) == (400, "payment_intent_unexpected_state")
    assert "status of succeeded" in str(raised.value.user_message)


# ------------------------------------------------------------------------------------------- cancel


async def test_cancel_releases_an_authorization(client: stripe.StripeClient) -> None:
    held = await _authorize(client)
    canceled = await client.v1.payment_intents.cancel_async(held.id, params={"cancellation_reason": "abandoned"})

    assert (canceled.status, canceled.cancellation_reason, canceled.amount_capturable) == ("canceled", "abandoned", 0)
    assert canceled.canceled_at is not None
    assert abs(canceled.canceled_at - time.time()) < 60
    with pytest.raises(stripe.InvalidRequestError) as refund:
        await client.v1.refunds.create_async(params={"payment_intent": held.id})
    assert refund.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as twice:
        await client.v1.payment_intents.cancel_async(held.id)
    assert twice.value.code == "payment_intent_unexpected_state"


async def test_cancel_refuses_a_succeeded_intent_and_unknown_reasons(
    client: stripe.StripeClient, browser: httpx.AsyncClient
) -> None:
    paid = await client.v1.payment_intents.create_async(params=_params())
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.payment_intents.cancel_async(paid.id)
    assert raised.value.code == "payment_intent_unexpected_state"

    held = await _authorize(client)
    body = "cancellation_reason=changed_my_mind"
    error = _error(await browser.post(f"/v1/payment_intents/{held.id}/cancel", content=body, headers=FORM))
    assert error["param"] == "cancellation_reason"
    assert "requested_by_customer" in error["message"]
    assert (await client.v1.payment_intents.retrieve_async(held.id)).status == "requires_capture"


async def test_refunds_need_a_known_reason_and_captured_money(
    client: stripe.StripeClient, browser: httpx.AsyncClient
) -> None:
    paid = await client.v1.payment_intents.create_async(params=_params())
    error = _error(await browser.post("/v1/refunds", content=f"payment_intent={paid.id}&reason=bored", headers=FORM))
    assert error["param"] == "reason"

    held = await _authorize(client)
    assert isinstance(held.latest_charge, str)
    error = _error(await browser.post("/v1/refunds", content=f"charge={held.latest_charge}", headers=FORM))
    assert (error["code"], error["param"]) == ("charge_not_refundable", "charge")


# -------------------------------------------------------------------------------------- 3-D Secure


async def _challenge(
    client: stripe.StripeClient, browser: httpx.AsyncClient, *, manual: bool = False
) -> tuple[stripe.PaymentIntent, str]:
    """A 3-D Secure payment with a return_url, and the challenge page's URL from its next_action."""
    params = _params("pm_card_threeDSecure2Required", manual=manual, return_url=RETURN_URL)
    intent = await client.v1.payment_intents.create_async(params=params)
    assert intent.status == "requires_action"
    assert intent.next_action is not None
    assert intent.next_action.type == "redirect_to_url"
    redirect = intent.next_action.redirect_to_url
    assert redirect is not None
    assert redirect.return_url == RETURN_URL
    assert redirect.url is not None
    assert redirect.url.startswith(f"{browser.base_url}/_sandbox/3ds/")
    return intent, redirect.url


async def _click(browser: httpx.AsyncClient, page_url: str, link: str) -> httpx.Response:
    page = await browser.get(page_url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    anchor = f'id="{link}" href="'
    href = page.text.split(anchor, 1)[1].split('"', 1)[0]
    return await browser.get(httpx.URL(page_url).join(href))


def _redirected(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://shop.example/return"
    return parse_qs(location.query)


async def test_completed_authentication_succeeds_and_redirects_back(
    client: stripe.StripeClient, browser: httpx.AsyncClient
) -> None:
    intent, page_url = await _challenge(client, browser)
    page = await browser.get(page_url)
    assert "Complete authentication" in page.text
    assert "Fail authentication" in page.text

    query = _redirected(await _click(browser, page_url, "complete"))
    assert query == {
        "order": ["42"],
        "payment_intent": [intent.id],
        "payment_intent_client_secret": [intent.client_secret or ""],
        "redirect_status": ["succeeded"],
    }
    paid = await client.v1.payment_intents.retrieve_async(intent.id)
    assert (paid.status, paid.amount_received, paid.next_action) == ("succeeded", 1000, None)

    late = _redirected(await _click(browser, page_url, "fail"))
    assert late["redirect_status"] == ["succeeded"], "a finished challenge does not change again"
    assert (await client.v1.payment_intents.retrieve_async(intent.id)).status == "succeeded"


async def test_failed_authentication_asks_for_another_payment_method(
    client: stripe.StripeClient, browser: httpx.AsyncClient
) -> None:
    intent, page_url = await _challenge(client, browser)
    assert _redirected(await _click(browser, page_url, "fail"))["redirect_status"] == ["failed"]

    failed = await client.v1.payment_intents.retrieve_async(intent.id)
    assert (failed.status, failed.payment_method, failed.next_action) == ("requires_payment_method", None, None)
    error = failed.last_payment_error
    assert error is not None
    assert error.code == "payment_intent_authentication_failure"
    assert error.message
    assert _redirected(await _click(browser, page_url, "complete"))["redirect_status"] == ["failed"]
    assert (await client.v1.payment_intents.retrieve_async(intent.id)).status == "requires_payment_method"


async def test_authenticated_manual_payment_awaits_capture(
    client: stripe.StripeClient, browser: httpx.AsyncClient
) -> None:
    intent, page_url = await _challenge(client, browser, manual=True)
    assert _redirected(await _click(browser, page_url, "complete"))["redirect_status"] == ["succeeded"]
    held = await client.v1.payment_intents.retrieve_async(intent.id)
    assert (held.status, held.amount_capturable, held.amount_received) == ("requires_capture", 1000, 0)


async def test_without_return_url_the_sdk_flow_uses_the_same_page(
    client: stripe.StripeClient, browser: httpx.AsyncClient
) -> None:
    intent = await client.v1.payment_intents.create_async(params=_params("pm_card_authenticationRequired"))
    assert intent.next_action is not None
    assert intent.next_action.type == "use_stripe_sdk"
    page_url = intent.next_action["use_stripe_sdk"]["stripe_js"]

    done = await _click(browser, page_url, "complete")
    assert (done.status_code, "succeeded" in done.text) == (200, True)
    assert (await client.v1.payment_intents.retrieve_async(intent.id)).status == "succeeded"
    assert (await browser.get("/_sandbox/3ds/src_unknown/complete")).status_code == 404


async def test_a_requires_action_intent_can_be_canceled(
    client: stripe.StripeClient, browser: httpx.AsyncClient
) -> None:
    intent, page_url = await _challenge(client, browser)
    canceled = await client.v1.payment_intents.cancel_async(
        intent.id, params={"cancellation_reason": "requested_by_customer"}
    )
    assert (canceled.status, canceled.next_action) == ("canceled", None)
    assert _redirected(await _click(browser, page_url, "complete"))["redirect_status"] == ["failed"]
    assert (await client.v1.payment_intents.retrieve_async(intent.id)).status == "canceled"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        # Redirects ruled out: nothing would ever send the customer back.
        (
            "confirm=true&automatic_payment_methods[enabled]=true&automatic_payment_methods[allow_redirects]=never",
            "return_url",
        ),
        ("confirm=false&automatic_payment_methods[enabled]=true", "return_url"),  # only when confirming
        # A URL, and nothing that could smuggle a header into the redirect (the later value wins).
        ("confirm=true&automatic_payment_methods[enabled]=true&return_url=%0d%0aSet-Cookie:%20x=1", "return_url"),
    ],
)
async def test_return_url_only_where_stripe_takes_it(
    sandbox: StripeSandbox, browser: httpx.AsyncClient, body: str, param: str
) -> None:
    create = f"amount=1000&currency=eur&payment_method=pm_card_visa&return_url=https://shop.example/r&{body}"
    error = _error(await browser.post("/v1/payment_intents", content=create, headers=FORM))
    assert error["param"] == param
    assert sandbox.executions() == 0


# ----------------------------------------------------------------------------------------- webhooks


async def test_events_are_signed_as_stripe_signs_them(
    sandbox: StripeSandbox, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    paid = await client.v1.payment_intents.create_async(params=_params(), options={"idempotency_key": "pay-ev"})
    created, succeeded = await _events(receiver, 2)

    assert (created.type, succeeded.type) == ("payment_intent.created", "payment_intent.succeeded")
    assert succeeded.id.startswith("evt_")
    assert (succeeded.object, succeeded.livemode, succeeded.pending_webhooks) == ("event", False, 1)
    assert succeeded.api_version == DEFAULT_STRIPE_VERSION
    intent = succeeded.data.object
    assert (intent["id"], intent["object"], intent["status"], intent["amount_received"]) == (
        paid.id,
        "payment_intent",
        "succeeded",
        1000,
    )
    assert succeeded.request is not None
    assert succeeded.request.idempotency_key == "pay-ev"
    assert succeeded.request.id is not None
    assert succeeded.request.id.startswith("req_")
    header = receiver.received[1].signature
    assert header.startswith("t=")
    assert ",v1=" in header
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(receiver.received[1].payload, header, "whsec_wrong", tolerance=300)
    await _until(lambda: len(sandbox.webhook_deliveries()) == 2)
    assert [(d.type, d.status, d.attempts, d.delivered) for d in sandbox.webhook_deliveries()] == [
        ("payment_intent.created", 200, 1, True),
        ("payment_intent.succeeded", 200, 1, True),
    ]


async def test_each_lifecycle_change_is_an_event(
    receiver: WebhookReceiver, client: stripe.StripeClient, browser: httpx.AsyncClient
) -> None:
    held = await _authorize(client)
    await client.v1.payment_intents.capture_async(held.id, params={"amount_to_capture": 400, "final_capture": False})
    await client.v1.payment_intents.capture_async(held.id, params={"amount_to_capture": 100})
    await client.v1.refunds.create_async(params={"payment_intent": held.id, "amount": 100})
    other = await _authorize(client)
    await client.v1.payment_intents.cancel_async(other.id)
    intent, page_url = await _challenge(client, browser)
    await _click(browser, page_url, "fail")
    with pytest.raises(stripe.CardError):
        await client.v1.payment_intents.create_async(params=_params("pm_card_visa_chargeDeclined"))

    events = await _events(receiver, 13)
    assert _types(events) == [
        "payment_intent.created",
        "payment_intent.amount_capturable_updated",
        "payment_intent.amount_capturable_updated",
        "payment_intent.succeeded",
        "refund.created",
        "payment_intent.created",
        "payment_intent.amount_capturable_updated",
        "payment_intent.canceled",
        "payment_intent.created",
        "payment_intent.requires_action",
        "payment_intent.payment_failed",
        "payment_intent.created",
        "payment_intent.payment_failed",
    ]
    captured = events[3].data.object
    assert (captured["amount_received"], captured["amount_capturable"]) == (500, 0)
    assert events[10].data.object["id"] == intent.id
    assert events[10].request is not None
    assert events[10].request.id is None, "the customer's answer on the 3-D Secure page is no API request"


async def test_refund_and_transfer_events(
    sandbox: StripeSandbox, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    paid = await client.v1.payment_intents.create_async(params=_params("pm_card_refundFail"))
    refund = await client.v1.refunds.create_async(params={"payment_intent": paid.id})
    assert (await client.v1.refunds.retrieve_async(refund.id)).status == "failed"  # settles on the next read
    transfer = await client.v1.transfers.create_async(
        params={"amount": 2500, "currency": "eur", "destination": "acct_1Seller"}
    )
    reversal = await client.v1.transfers.reversals.create_async(
        transfer.id, params={"amount": 1000}, options={"idempotency_key": "rev-1"}
    )
    assert (reversal.id[:4], reversal.amount, reversal.transfer) == ("trr_", 1000, transfer.id)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        await client.v1.transfers.reversals.create_async(transfer.id, params={"amount": 1501})
    assert too_much.value.code == "amount_too_large"
    reversed_transfer = await client.v1.transfers.retrieve_async(transfer.id)
    assert (reversed_transfer.amount_reversed, reversed_transfer.reversed) == (1000, False)
    assert sandbox.executions(REVERSE_TRANSFER) == 1

    events = await _events(receiver, 7)
    assert _types(events)[2:] == [
        "refund.created",
        "refund.updated",
        "refund.failed",
        "transfer.created",
        "transfer.reversed",
    ]
    assert events[4].data.object["status"] == "failed"
    assert events[6].data.object["amount_reversed"] == 1000


async def test_asynchronous_outcomes_are_announced_without_a_request(
    receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    processing = await client.v1.payment_intents.create_async(params=_params("pm_card_processing"))
    assert processing.status == "processing"

    events = await _events(receiver, 3)  # no request after the create: the sandbox settles on its own
    assert _types(events) == ["payment_intent.created", "payment_intent.processing", "payment_intent.succeeded"]
    assert events[2].data.object["amount_received"] == 1000


async def test_a_failing_endpoint_is_retried_until_it_answers(
    sandbox: StripeSandbox, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    receiver.statuses = [500, 503]
    await client.v1.transfers.create_async(params={"amount": 100, "currency": "eur", "destination": "acct_1"})

    events = await _events(receiver, 3)
    assert [event.id for event in events] == [events[0].id] * 3, "the same event, re-signed per attempt"
    await _until(lambda: len(sandbox.webhook_deliveries()) == 1)
    (delivery,) = sandbox.webhook_deliveries()
    assert (delivery.status, delivery.attempts, delivery.delivered, delivery.error) == (200, 3, True, None)


async def test_duplicate_and_out_of_order_deliveries_on_request(
    sandbox: StripeSandbox, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    sandbox.duplicate_next_webhook()
    await client.v1.transfers.create_async(params={"amount": 100, "currency": "eur", "destination": "acct_1"})
    first, second = await _events(receiver, 2)
    assert first.id == second.id
    assert first.type == "transfer.created"

    sandbox.hold_next_webhook()
    paid = await client.v1.payment_intents.create_async(params=_params())
    late = (await _events(receiver, 4))[2:]
    assert _types(late) == ["payment_intent.succeeded", "payment_intent.created"]
    assert {event.data.object["id"] for event in late} == {paid.id}
    await _until(lambda: len(sandbox.webhook_deliveries()) == 4)
    flags = [(d.type, d.duplicate, d.held) for d in sandbox.webhook_deliveries()]
    assert flags == [
        ("transfer.created", False, False),
        ("transfer.created", True, False),
        ("payment_intent.succeeded", False, False),
        ("payment_intent.created", False, True),
    ]


async def test_seeded_rates_duplicate_every_event(
    sandbox: StripeSandbox, receiver: WebhookReceiver, client: stripe.StripeClient
) -> None:
    sandbox.set_webhook_rates(duplicate_rate=1.0, reorder_rate=0.0, seed=3)
    await client.v1.transfers.create_async(params={"amount": 100, "currency": "eur", "destination": "acct_1"})
    assert len({event.id for event in await _events(receiver, 2)}) == 1
    with pytest.raises(ValueError, match="between 0 and 1"):
        sandbox.set_webhook_rates(duplicate_rate=1.5, reorder_rate=0.0)


async def test_webhook_control_api_for_an_out_of_process_sandbox(
    sandbox: StripeSandbox, receiver: WebhookReceiver, browser: httpx.AsyncClient
) -> None:
    answer = await browser.post("/_sandbox/webhook", json={"url": receiver.url})
    secret = answer.json()["secret"]
    assert secret.startswith("whsec_")
    assert (await browser.post("/_sandbox/webhooks/duplicate_next")).status_code == 200
    body = "amount=100&currency=eur&destination=acct_1"
    assert (await browser.post("/v1/transfers", content=body, headers=FORM)).status_code == 200

    await _until(lambda: len(receiver.received) == 2)
    assert len({event.id for event in receiver.events(secret)}) == 1
    await _until(lambda: len(sandbox.webhook_deliveries()) == 2)
    deliveries = (await browser.get("/_sandbox/webhooks")).json()["deliveries"]
    assert [(d["type"], d["status"], d["attempts"], d["duplicate"]) for d in deliveries] == [
        ("transfer.created", 200, 1, False),
        ("transfer.created", 200, 1, True),
    ]
    assert deliveries[0]["event_id"] == deliveries[1]["event_id"]

    assert (await browser.post("/_sandbox/webhook", json={"url": "ftp://nowhere"})).status_code == 400
    assert (await browser.post("/_sandbox/webhook", json={"url": None})).status_code == 200
    assert (await browser.post("/v1/transfers", content=body, headers=FORM)).status_code == 200
    await asyncio.sleep(0.1)
    assert len(receiver.received) == 2, "no endpoint, no deliveries"


async def test_stop_abandons_a_stalled_delivery_promptly(receiver: WebhookReceiver) -> None:
    receiver.pause = 10.0
    sandbox = StripeSandbox(webhook_url=receiver.url, webhook_secret=SECRET).start()
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=5) as plain:
        body = "amount=100&currency=eur&destination=acct_1"
        assert (await plain.post("/v1/transfers", content=body, headers=FORM)).status_code == 200
    await _until(lambda: len(receiver.received) == 1)
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 2.0
    (delivery,) = sandbox.webhook_deliveries()
    assert delivery == WebhookDelivery(delivery.event_id, "transfer.created", None, 1, False, delivery.error)


def test_the_sandbox_process_sends_webhooks(receiver: WebhookReceiver) -> None:
    with httpx.Client(timeout=5) as plain:
        port = _free_port()
        command = [sys.executable, "-m", "adapters.sandboxes.stripe_sandbox", "--port", str(port)]
        command += ["--latency-seconds", "0", "--webhook-url", receiver.url, "--webhook-secret", SECRET]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_http(plain, f"{base}/_sandbox/health")
            body = "amount=100&currency=eur&destination=acct_1"
            assert plain.post(f"{base}/v1/transfers", content=body, headers=FORM).status_code == 200
            deadline = time.monotonic() + 5
            while not receiver.received:
                assert time.monotonic() < deadline, "no webhook from the sandbox process"
                time.sleep(0.02)
            (event,) = receiver.events()
            assert event.type == "transfer.created"
        finally:
            child.terminate()
            child.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_http(plain: httpx.Client, url: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if plain.get(url).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.05)


def test_events_carry_the_json_the_api_returns(receiver: WebhookReceiver) -> None:
    with StripeSandbox(webhook_url=receiver.url, webhook_secret=SECRET) as sandbox, httpx.Client(timeout=5) as plain:
        body = "amount=100&currency=eur&destination=acct_1"
        created = plain.post(f"{sandbox.url}/v1/transfers", content=body, headers=FORM).json()
        deadline = time.monotonic() + 5
        while not receiver.received:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        event = json.loads(receiver.received[0].payload)
        assert event["data"]["object"] == created
        assert list(event) == [
            "id",
            "object",
            "api_version",
            "created",
            "data",
            "livemode",
            "pending_webhooks",
            "request",
            "type",
        ]
