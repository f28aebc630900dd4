"""The Stripe sandbox driven by the real ``stripe`` SDK over real (loopback) HTTP.

If the official SDK, unmodified, sees the same answers, errors and headers from the sandbox as from
api.stripe.com, then the Stripe adapter's integration tests exercise the real wire protocol offline.
Plain httpx covers the control API and the raw wire details the SDK hides.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import stripe
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from stripe.params import PaymentIntentCreateParams

from adapters.sandboxes.stripe_objects import CREATE_PAYMENT_INTENT, CREATE_REFUND, CREATE_TRANSFER
from adapters.sandboxes.stripe_sandbox import StripeSandbox

API_KEY = "sk_test_sandbox"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# stripe 16.1's HTTPXClient passes the form body as ``data=<str>``, which httpx 0.28 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def sandbox() -> Iterator[StripeSandbox]:
    with StripeSandbox() as running:
        yield running


async def _close(http_client: stripe.HTTPXClient) -> None:
    # The SDK leaves close_async unannotated; it is a plain coroutine returning None.
    await http_client.close_async()  # type: ignore[no-untyped-call]


@pytest.fixture
async def http_client() -> AsyncIterator[stripe.HTTPXClient]:
    client = stripe.HTTPXClient(timeout=5)
    yield client
    await _close(client)


@pytest.fixture
def client(sandbox: StripeSandbox, http_client: stripe.HTTPXClient) -> stripe.StripeClient:
    return _stripe_client(sandbox, http_client)


@pytest.fixture
async def raw(sandbox: StripeSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=5) as plain:
        yield plain


def _stripe_client(
    sandbox: StripeSandbox, http_client: stripe.HTTPXClient, api_key: str = API_KEY
) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key=api_key,
        base_addresses={"api": sandbox.url},
        max_network_retries=0,
        http_client=http_client,
    )


def _charge(
    payment_method: str = "pm_card_visa", amount: int = 1000, payment_id: str = "pay_1"
) -> PaymentIntentCreateParams:
    return {
        "amount": amount,
        "currency": "eur",
        "payment_method": payment_method,
        "confirm": True,
        "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        "metadata": {"payment_id": payment_id},
    }


async def _pay(
    client: stripe.StripeClient, key: str, payment_method: str = "pm_card_visa", amount: int = 1000
) -> stripe.PaymentIntent:
    return await client.v1.payment_intents.create_async(
        params=_charge(payment_method, amount, payment_id=key), options={"idempotency_key": key}
    )


def _header(obj: stripe.StripeObject, name: str) -> str | None:
    response = obj.last_response
    assert response is not None
    return response.headers.get(name)


async def _until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# ------------------------------------------------------------------------------- payments and declines


@pytest.mark.parametrize("payment_method", ["pm_card_visa", "pm_card_mastercard"])
async def test_confirmed_intent_succeeds(client: stripe.StripeClient, payment_method: str) -> None:
    params = _charge(payment_method)
    params["currency"] = "EUR"
    intent = await client.v1.payment_intents.create_async(params=params, options={"idempotency_key": "k-ok"})

    assert intent.id.startswith("pi_")
    assert (intent.status, intent.amount, intent.amount_received, intent.currency) == ("succeeded", 1000, 1000, "eur")
    assert intent.metadata["payment_id"] == "pay_1"
    assert isinstance(intent.latest_charge, str)
    assert intent.latest_charge.startswith("ch_")
    assert isinstance(intent.payment_method, str)
    assert intent.payment_method.startswith("pm_")
    assert intent.payment_method != payment_method, "Stripe clones test tokens into new PaymentMethods"
    fetched = await client.v1.payment_intents.retrieve_async(intent.id)
    assert (fetched.id, fetched.status) == (intent.id, "succeeded")


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ],
)
async def test_declines_are_card_errors(
    sandbox: StripeSandbox, client: stripe.StripeClient, payment_method: str, code: str, decline_code: str
) -> None:
    with pytest.raises(stripe.CardError) as raised:
        await _pay(client, "k-decline", payment_method)

    error = raised.value
    assert (error.http_status, error.code) == (402, code)
    assert error.error is not None
    assert error.error.decline_code == decline_code
    intent = error.error.payment_intent
    assert intent is not None
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error is not None
    assert intent.last_payment_error.decline_code == decline_code
    fetched = await client.v1.payment_intents.retrieve_async(intent.id)
    assert fetched.status == "requires_payment_method"
    assert fetched.amount_received == 0
    assert sandbox.executions(CREATE_PAYMENT_INTENT) == 1, "a declined attempt did execute"


@pytest.mark.parametrize("payment_method", ["pm_card_authenticationRequired", "pm_card_threeDSecure2Required"])
async def test_authentication_required_needs_action(client: stripe.StripeClient, payment_method: str) -> None:
    intent = await _pay(client, "k-3ds", payment_method)
    assert intent.status == "requires_action"
    assert intent.next_action is not None
    assert intent.next_action.type == "use_stripe_sdk"

    params = _charge(payment_method)
    params["automatic_payment_methods"] = {"enabled": True}
    params["return_url"] = "https://shop.example/return"
    redirected = await client.v1.payment_intents.create_async(params=params)
    assert redirected.next_action is not None
    assert redirected.next_action.type == "redirect_to_url"


async def test_off_session_authentication_required_is_a_decline(client: stripe.StripeClient) -> None:
    params = _charge("pm_card_authenticationRequired")
    params["off_session"] = True
    with pytest.raises(stripe.CardError) as raised:
        await client.v1.payment_intents.create_async(params=params)
    assert raised.value.code == "authentication_required"


async def test_requires_action_can_be_completed_by_the_test(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    intent = await _pay(client, "k-action", "pm_card_authenticationRequired")
    sandbox.set_status(intent.id, "succeeded")
    fetched = await client.v1.payment_intents.retrieve_async(intent.id)
    assert (fetched.status, fetched.amount_received, fetched.next_action) == ("succeeded", 1000, None)


async def test_manual_capture_and_cancel(client: stripe.StripeClient) -> None:
    params = _charge()
    params["capture_method"] = "manual"
    held = await client.v1.payment_intents.create_async(params=params)
    assert (held.status, held.amount_capturable) == ("requires_capture", 1000)
    captured = await client.v1.payment_intents.capture_async(held.id, params={"amount_to_capture": 600})
    assert (captured.status, captured.amount_received) == ("succeeded", 600)

    other = await client.v1.payment_intents.create_async(params=params)
    canceled = await client.v1.payment_intents.cancel_async(other.id)
    assert canceled.status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.payment_intents.cancel_async(captured.id)
    assert raised.value.code == "payment_intent_unexpected_state"


# ---------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ("currency=eur&payment_method=pm_card_visa", "parameter_missing", "amount"),
        ("amount=0&currency=eur", "parameter_invalid_integer", "amount"),
        ("amount=12.50&currency=eur", "parameter_invalid_integer", "amount"),
        ("amount=1000&currency=xyz", None, "currency"),
        ("amount=100000000&currency=eur", "amount_too_large", "amount"),
        ("amount=10&currency=eur", "amount_too_small", "amount"),
        ("amount=1000&currency=eur&colour=red", "parameter_unknown", "colour"),
        (
            "amount=1000&currency=eur&confirm=true&payment_method=pm_card_bogus&payment_method_types[0]=card",
            "resource_missing",
            "payment_method",
        ),
    ],
)
async def test_invalid_requests_are_400_and_not_executed(
    sandbox: StripeSandbox, raw: httpx.AsyncClient, body: str, code: str | None, param: str
) -> None:
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    response = await raw.post("/v1/payment_intents", content=body, headers=headers)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error.get("code"), error["param"]) == ("invalid_request_error", code, param)
    assert sandbox.executions() == 0


async def test_redirect_capable_confirm_needs_return_url(client: stripe.StripeClient) -> None:
    params = _charge()
    params["automatic_payment_methods"] = {"enabled": True}
    with pytest.raises(stripe.InvalidRequestError, match="return_url"):
        await client.v1.payment_intents.create_async(params=params)


async def test_unknown_id_is_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.payment_intents.retrieve_async("pi_doesnotexist")
    assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")


async def test_nested_form_fields_and_integer_money_on_the_wire(raw: httpx.AsyncClient) -> None:
    body = (
        "amount=1999&currency=JPY&metadata[order]=1&metadata[note]=two%20words&confirm=true"
        "&payment_method=pm_card_visa&payment_method_types[0]=card&expand[0]=latest_charge"
    )
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    response = await raw.post("/v1/payment_intents", content=body, headers=headers)

    intent = response.json()
    assert response.status_code == 200
    assert intent["metadata"] == {"order": "1", "note": "two words"}
    assert intent["currency"] == "jpy"
    assert type(intent["amount"]) is int
    assert type(intent["amount_received"]) is int
    assert intent["latest_charge"]["object"] == "charge"


# -------------------------------------------------------------------------------------- authentication


async def test_live_or_missing_keys_are_401(
    sandbox: StripeSandbox, http_client: stripe.HTTPXClient, raw: httpx.AsyncClient
) -> None:
    live = _stripe_client(sandbox, http_client, api_key="sk_live_nope")
    with pytest.raises(stripe.AuthenticationError) as raised:
        await live.v1.payment_intents.retrieve_async("pi_x")
    assert raised.value.http_status == 401

    anonymous = await raw.get("/v1/refunds")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["message"].startswith("You did not provide an API key")
    basic = await raw.get("/v1/refunds", auth=(API_KEY, ""))
    assert basic.status_code == 200


# ------------------------------------------------------------------------------------------ idempotency


async def test_same_key_same_params_replays(sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    first = await _pay(client, "k-replay")
    second = await _pay(client, "k-replay")

    assert second.id == first.id
    assert _header(first, "Idempotent-Replayed") is None
    assert _header(second, "Idempotent-Replayed") == "true"
    assert sandbox.executions_for_key("k-replay") == 1


async def test_replay_is_byte_identical_with_stripe_headers(raw: httpx.AsyncClient) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-bytes", "Content-Type": "application/x-www-form-urlencoded"}
    body = "amount=500&currency=eur&description=once"
    first = await raw.post("/v1/transfers", content=body + "&destination=acct_1", headers=headers)
    second = await raw.post("/v1/transfers", content="destination=acct_1&" + body, headers=headers)

    assert second.content == first.content, "parameter order does not change the fingerprint"
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == "k-bytes"
    assert first.headers["Request-Id"].startswith("req_")
    assert second.headers["Request-Id"] != first.headers["Request-Id"]
    assert second.headers["Original-Request"] == first.headers["Request-Id"]
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_declines_are_replayed_too(sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    for _ in range(2):
        with pytest.raises(stripe.CardError) as raised:
            await _pay(client, "k-decline-twice", "pm_card_visa_chargeDeclined")
    assert raised.value.headers is not None
    assert raised.value.headers.get("idempotent-replayed") == "true"
    assert sandbox.executions_for_key("k-decline-twice") == 1


async def test_key_reused_for_another_request_is_idempotency_error(client: stripe.StripeClient) -> None:
    intent = await _pay(client, "k-reuse", amount=1000)
    with pytest.raises(stripe.IdempotencyError) as raised:
        await _pay(client, "k-reuse", amount=2000)
    assert raised.value.http_status == 400
    assert raised.value.error is not None
    assert raised.value.error.type == "idempotency_error"
    with pytest.raises(stripe.IdempotencyError, match="same endpoint"):
        await client.v1.refunds.create_async(
            params={"payment_intent": intent.id}, options={"idempotency_key": "k-reuse"}
        )


async def test_validation_failures_are_not_stored_under_the_key(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    bad = _charge()
    bad["currency"] = "xyz"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.payment_intents.create_async(params=bad, options={"idempotency_key": "k-fix"})
    assert raised.value.param == "currency"
    intent = await _pay(client, "k-fix")
    assert intent.status == "succeeded"
    assert sandbox.executions_for_key("k-fix") == 1


async def test_same_key_while_in_flight_is_409(sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    sandbox.inject("delay", stall_seconds=0.5, path_prefix="/v1/payment_intents")
    first = asyncio.create_task(_pay(client, "k-busy"))
    await _until(lambda: sandbox.is_in_flight("k-busy"))

    with pytest.raises(stripe.APIError) as raised:
        await _pay(client, "k-busy")
    assert raised.value.http_status == 409
    assert raised.value.error is not None
    assert raised.value.error.code == "idempotency_key_in_use"
    assert (await first).status == "succeeded"
    assert (await _pay(client, "k-busy")).id == (await first).id
    assert sandbox.executions_for_key("k-busy") == 1


async def test_duplicate_storm_executes_once(sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    sandbox.inject("delay", stall_seconds=0.2, path_prefix="/v1/payment_intents")
    outcomes = await asyncio.gather(*(_pay(client, "k-storm") for _ in range(12)), return_exceptions=True)

    intents = [o for o in outcomes if isinstance(o, stripe.PaymentIntent)]
    conflicts = [o for o in outcomes if isinstance(o, stripe.APIError) and o.http_status == 409]
    assert len(intents) + len(conflicts) == 12
    assert intents
    assert len({intent.id for intent in intents}) == 1
    assert sandbox.executions_for_key("k-storm") == 1


# ------------------------------------------------------------------------------------------ faults


async def test_http_500_does_no_work_and_the_retry_executes(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    sandbox.inject("http_500")
    with pytest.raises(stripe.APIError) as raised:
        await _pay(client, "k-500")
    assert raised.value.http_status == 500
    assert raised.value.error is not None
    assert raised.value.error.type == "api_error"
    assert sandbox.executions() == 0
    assert (await _pay(client, "k-500")).status == "succeeded"
    assert sandbox.executions_for_key("k-500") == 1


async def test_http_429_is_rate_limit_with_retry_after(client: stripe.StripeClient, sandbox: StripeSandbox) -> None:
    sandbox.inject("http_429", retry_after=3)
    with pytest.raises(stripe.RateLimitError) as raised:
        await _pay(client, "k-429")
    assert (raised.value.http_status, raised.value.code) == (429, None)
    assert raised.value.error is not None
    assert raised.value.error.code == "rate_limit"
    assert raised.value.headers is not None
    assert raised.value.headers.get("retry-after") == "3"
    assert sandbox.executions() == 0


async def test_lock_timeout_and_409_ask_for_a_retry(sandbox: StripeSandbox, raw: httpx.AsyncClient) -> None:
    sandbox.inject("lock_timeout")
    sandbox.inject("http_409")
    locked = await raw.get("/v1/refunds", headers=AUTH)
    conflict = await raw.get("/v1/refunds", headers=AUTH)

    assert (locked.status_code, locked.json()["error"]["code"]) == (429, "lock_timeout")
    assert locked.headers["Stripe-Should-Retry"] == "true"
    assert conflict.status_code == 409
    assert conflict.headers["Stripe-Should-Retry"] == "true"
    assert (await raw.get("/v1/refunds", headers=AUTH)).status_code == 200


async def test_reset_is_a_connection_error_without_work(sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    sandbox.inject("reset", method="POST")
    with pytest.raises(stripe.APIConnectionError):
        await _pay(client, "k-reset")
    assert sandbox.executions() == 0
    assert (await _pay(client, "k-reset")).status == "succeeded"
    assert sandbox.executions_for_key("k-reset") == 1


async def test_stall_outlasts_the_client_timeout_without_work(sandbox: StripeSandbox) -> None:
    impatient = stripe.HTTPXClient(timeout=1.0)
    client = _stripe_client(sandbox, impatient)
    sandbox.inject("stall", stall_seconds=10.0)
    try:
        started = time.monotonic()
        with pytest.raises(stripe.APIConnectionError):
            await _pay(client, "k-stall")
        assert time.monotonic() - started < 5.0  # the client's timeout, not the 10 s stall
        assert sandbox.executions() == 0
        assert (await _pay(client, "k-stall")).status == "succeeded"
        assert sandbox.executions_for_key("k-stall") == 1
    finally:
        await _close(impatient)


async def test_drop_after_work_then_retry_executes_exactly_once(
    sandbox: StripeSandbox, client: stripe.StripeClient
) -> None:
    sandbox.inject("drop_after_work", path_prefix="/v1/payment_intents")
    with pytest.raises(stripe.APIConnectionError):
        await _pay(client, "k-drop")
    assert sandbox.executions_for_key("k-drop") == 1, "the work happened although no answer came"

    intent = await _pay(client, "k-drop")
    assert intent.status == "succeeded"
    assert _header(intent, "Idempotent-Replayed") == "true"
    assert sandbox.executions(CREATE_PAYMENT_INTENT) == 1
    dropped, replayed = sandbox.requests()[-2:]
    assert (dropped.status, dropped.fault, dropped.executed) == (None, "drop_after_work", True)
    assert (replayed.status, replayed.replayed) == (200, True)


async def test_faults_match_method_path_and_count(sandbox: StripeSandbox, raw: httpx.AsyncClient) -> None:
    sandbox.inject("http_500", 2, method="GET", path_prefix="/v1/transfers")
    assert (await raw.get("/v1/refunds", headers=AUTH)).status_code == 200
    statuses = [(await raw.get("/v1/transfers", headers=AUTH)).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]


async def test_fault_rate_is_seeded_and_reproducible(sandbox: StripeSandbox, raw: httpx.AsyncClient) -> None:
    async def run() -> list[int]:
        sandbox.reset()
        sandbox.set_fault_rate(0.5, ["http_500", "http_429"], seed=7)
        return [(await raw.get("/v1/refunds", headers=AUTH)).status_code for _ in range(30)]

    first = await run()
    assert first == await run()
    assert {200, 429, 500} <= set(first)
    sandbox.set_fault_rate(0.0, [])
    assert (await raw.get("/v1/refunds", headers=AUTH)).status_code == 200


def test_stop_wakes_a_stalled_request_promptly() -> None:
    sandbox = StripeSandbox().start()
    sandbox.inject("stall", stall_seconds=30)
    with httpx.Client(base_url=sandbox.url, timeout=1.0) as plain, pytest.raises(httpx.ReadTimeout):
        plain.get("/v1/refunds", headers=AUTH)
    started = time.monotonic()
    sandbox.stop()
    while not sandbox.requests():
        assert time.monotonic() - started < 10.0, "the stalled handler did not wake up"
        time.sleep(0.01)
    assert sandbox.requests()[0].fault == "stall"


# ------------------------------------------------------------------------------- refunds and transfers


async def test_partial_refunds_then_over_refund(sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    intent = await _pay(client, "k-refunds")
    refunds = client.v1.refunds
    first = await refunds.create_async(params={"payment_intent": intent.id, "amount": 300, "metadata": {"n": "1"}})
    assert (first.id[:3], first.status, first.amount) == ("re_", "succeeded", 300)
    assert first.metadata is not None
    assert first.metadata["n"] == "1"
    await refunds.create_async(params={"payment_intent": intent.id, "amount": 500, "reason": "duplicate"})

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        await refunds.create_async(params={"payment_intent": intent.id, "amount": 300})
    assert (too_much.value.code, too_much.value.param) == ("amount_too_large", "amount")
    rest = await refunds.create_async(params={"payment_intent": intent.id})
    assert rest.amount == 200, "no amount refunds what remains"
    with pytest.raises(stripe.InvalidRequestError) as nothing_left:
        await refunds.create_async(params={"payment_intent": intent.id})
    assert nothing_left.value.code == "charge_already_refunded"

    listed = await refunds.list_async(params={"payment_intent": intent.id})
    assert sorted(r.amount for r in listed.data) == [200, 300, 500]
    assert (await refunds.retrieve_async(first.id)).amount == 300
    assert sandbox.executions(CREATE_REFUND) == 3


async def test_refund_outcomes_settle_asynchronously(client: stripe.StripeClient) -> None:
    pending = await client.v1.refunds.create_async(
        params={"payment_intent": (await _pay(client, "k-pend", "pm_card_pendingRefund")).id}
    )
    failing = await client.v1.refunds.create_async(
        params={"payment_intent": (await _pay(client, "k-fail", "pm_card_refundFail")).id}
    )
    assert (pending.status, failing.status) == ("pending", "succeeded")
    assert (await client.v1.refunds.retrieve_async(pending.id)).status == "succeeded"
    failed = await client.v1.refunds.retrieve_async(failing.id)
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")


async def test_refund_of_an_unpaid_intent_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.CardError) as declined:
        await _pay(client, "k-unpaid", "pm_card_visa_chargeDeclined")
    assert declined.value.error is not None
    assert declined.value.error.payment_intent is not None
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await client.v1.refunds.create_async(params={"payment_intent": declined.value.error.payment_intent.id})
    assert raised.value.code == "payment_intent_unexpected_state"


async def test_transfer_to_a_connected_account(sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    transfer = await client.v1.transfers.create_async(
        params={
            "amount": 2500,
            "currency": "eur",
            "destination": "acct_1Seller",
            "description": "payout 42",
            "metadata": {"payout_id": "po_42"},
        },
        options={"idempotency_key": "k-transfer"},
    )
    assert (transfer.id[:3], transfer.amount, transfer.destination) == ("tr_", 2500, "acct_1Seller")
    assert transfer.metadata["payout_id"] == "po_42"
    assert (await client.v1.transfers.retrieve_async(transfer.id)).amount == 2500
    listed = await client.v1.transfers.list_async(params={"destination": "acct_1Seller"})
    assert [t.id for t in listed.data] == [transfer.id]

    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await client.v1.transfers.create_async(params={"amount": 1, "currency": "eur", "destination": "bob"})
    assert (unknown.value.code, unknown.value.param) == ("resource_missing", "destination")
    sandbox.set_available_balance("eur", 100)
    with pytest.raises(stripe.InvalidRequestError) as broke:
        await client.v1.transfers.create_async(params={"amount": 101, "currency": "eur", "destination": "acct_2"})
    assert broke.value.code == "balance_insufficient"
    assert sandbox.executions(CREATE_TRANSFER) == 1


# ------------------------------------------------------------------------------------------- search


async def test_search_by_metadata(client: stripe.StripeClient) -> None:
    wanted = await _pay(client, "pay_A")
    await _pay(client, "pay_B")
    declined = "pm_card_visa_chargeDeclined"
    with pytest.raises(stripe.CardError):
        await client.v1.payment_intents.create_async(params=_charge(declined, payment_id="pay_A"))
    search = client.v1.payment_intents.search_async

    found = await search(params={"query": "metadata['payment_id']:'pay_A'"})
    assert found["object"] == "search_result"
    assert not found.has_more
    assert len(found.data) == 2
    narrowed = await search(params={"query": 'metadata["payment_id"]:"pay_A" AND status:\'succeeded\''})
    assert [i.id for i in narrowed.data] == [wanted.id]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        await search(params={"query": "metadata['payment_id'] = 'pay_A'"})
    assert raised.value.param == "query"


# ------------------------------------------------------------------------------ observability, control


async def test_request_log_and_counters_show_keys_and_traceparent(
    sandbox: StripeSandbox, client: stripe.StripeClient, raw: httpx.AsyncClient
) -> None:
    with suppress_http_instrumentation():  # when tracing is on, httpx would replace our traceparent
        await client.v1.payment_intents.create_async(
            params=_charge(), options={"idempotency_key": "k-trace", "headers": {"traceparent": TRACEPARENT}}
        )
    record = sandbox.requests()[-1]
    assert (record.method, record.path, record.status, record.executed) == ("POST", "/v1/payment_intents", 200, True)
    assert record.idempotency_key == "k-trace"
    assert record.operation == CREATE_PAYMENT_INTENT
    assert record.headers["traceparent"] == TRACEPARENT
    assert API_KEY not in record.headers["authorization"], "API keys are redacted from the log"

    counters = (await raw.get("/_sandbox/counters")).json()
    assert counters["by_operation"] == {CREATE_PAYMENT_INTENT: 1}
    assert counters["by_idempotency_key"] == {"k-trace": 1}
    assert counters["total"] == 1
    logged = (await raw.get("/_sandbox/requests")).json()["requests"]
    assert logged[-1]["headers"]["traceparent"] == TRACEPARENT


async def test_control_api_over_http(sandbox: StripeSandbox, raw: httpx.AsyncClient) -> None:
    fault = {"kind": "http_500", "count": 1, "method": "POST", "path_prefix": "/v1/transfers"}
    assert (await raw.post("/_sandbox/faults", json=fault)).status_code == 200
    assert (await raw.get("/_sandbox/faults")).json()["scripted"][0]["kind"] == "http_500"
    form = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    body = "amount=100&currency=eur&destination=acct_1"
    assert (await raw.post("/v1/transfers", content=body, headers=form)).status_code == 500
    created = await raw.post("/v1/transfers", content=body, headers=form)
    assert created.status_code == 200

    bad = await raw.post("/_sandbox/faults", json={"kind": "meteor_strike"})
    assert bad.status_code == 400
    rate = {"rate": 1.0, "kinds": ["http_429"], "seed": 1, "retry_after": 2}
    assert (await raw.post("/_sandbox/faults", json=rate)).status_code == 200
    limited = await raw.get("/v1/refunds", headers=AUTH)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    assert (await raw.delete("/_sandbox/faults")).status_code == 200

    assert (await raw.post("/_sandbox/reset")).status_code == 200
    assert (await raw.get("/_sandbox/counters")).json()["total"] == 0
    gone = await raw.get(f"/v1/transfers/{created.json()['id']}", headers=AUTH)
    assert gone.status_code == 404
    assert (await raw.get("/_sandbox/nothing")).status_code == 404


async def test_control_api_finishes_async_outcomes(sandbox: StripeSandbox, client: stripe.StripeClient) -> None:
    processing = await _pay(client, "k-processing", "pm_card_processing")
    assert processing.status == "processing"
    assert (await client.v1.payment_intents.retrieve_async(processing.id)).status == "succeeded"
    action = await _pay(client, "k-auth-fails", "pm_card_authenticationRequired")
    async with httpx.AsyncClient(base_url=sandbox.url) as plain:
        response = await plain.post(
            f"/_sandbox/objects/{action.id}/status", content=json.dumps({"status": "requires_payment_method"})
        )
        refused = await plain.post(f"/_sandbox/objects/{action.id}/status", json={"status": "succeeded"})
    assert response.status_code == 200
    assert refused.status_code == 400
    fetched = await client.v1.payment_intents.retrieve_async(action.id)
    assert fetched.status == "requires_payment_method"
    assert fetched.last_payment_error is not None
    assert fetched.last_payment_error.code == "payment_intent_authentication_failure"


async def test_http11_keep_alive_and_stripe_headers(raw: httpx.AsyncClient) -> None:
    responses = [await raw.get("/v1/refunds", headers=AUTH) for _ in range(3)]
    for response in responses:
        assert response.http_version == "HTTP/1.1"
        assert response.headers.get("connection", "").lower() != "close"
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"}


# ------------------------------------------------------------------------------------------- latency


async def test_latency_holds_every_api_request_without_serialising_them() -> None:
    latency = 0.3
    with StripeSandbox(latency_seconds=latency) as slow:
        async with httpx.AsyncClient(base_url=slow.url, timeout=5) as plain:
            started = time.monotonic()
            assert (await plain.get("/_sandbox/counters")).status_code == 200  # control requests are not held
            assert time.monotonic() - started < latency
            started = time.monotonic()
            answers = await asyncio.gather(*(plain.get("/v1/refunds", headers=AUTH) for _ in range(8)))
            elapsed = time.monotonic() - started
            assert [answer.status_code for answer in answers] == [200] * 8
            assert latency <= elapsed < 4 * latency  # all eight held at once, not one after the other

            assert (await plain.post("/_sandbox/latency", json={"seconds": 0})).status_code == 200
            started = time.monotonic()
            assert (await plain.get("/v1/refunds", headers=AUTH)).status_code == 200
            assert time.monotonic() - started < latency
            assert (await plain.post("/_sandbox/latency", json={"seconds": -1})).status_code == 400
            assert (await plain.post("/_sandbox/reset")).status_code == 200  # back to the starting latency
            started = time.monotonic()
            assert (await plain.get("/v1/refunds", headers=AUTH)).status_code == 200
            assert time.monotonic() - started >= latency
