"""The Stripe adapter with the real SDK over real HTTP: against the sandbox by default, against
Stripe's test mode with `make test-stripe-live`. No mocks of the SDK or of httpx."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import stripe

from adapters.retry import RetryingProvider, RetryPolicy
from adapters.sandboxes.stripe_objects import (
    CANCEL_PAYMENT_INTENT,
    CAPTURE_PAYMENT_INTENT,
    CREATE_PAYMENT_INTENT,
    CREATE_REFUND,
    CREATE_TRANSFER,
)
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from adapters.stripe_psp import StripeAdapter, close_http_client, pooled_http_client, stripe_client
from server.app.deadline import Deadline
from server.app.psp import (
    CancelOrder,
    CaptureOrder,
    ChargeOrder,
    OutcomeKind,
    PayoutOrder,
    PspRejectedError,
    PspUnavailableError,
    RefundOrder,
)
from server.domain.finality import Rejection
from server.domain.model import RedirectToUrl, StripeAccountDestination, UseStripeSdk
from server.domain.money import Money
from tests.support.stripe_backend import LIVE, StripeBackend, live_credentials

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

POLICY = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05, attempt_timeout=5.0)


@pytest.fixture
def backend() -> Iterator[StripeBackend]:
    if LIVE:
        key, base = live_credentials()
        yield StripeBackend(key, base, None)
        return
    with StripeSandbox() as sandbox:
        yield StripeBackend("sk_test_sandbox", sandbox.url, sandbox)


@pytest.fixture
async def psp(backend: StripeBackend) -> AsyncIterator[RetryingProvider]:
    http_client = stripe.HTTPXClient(timeout=10)
    yield RetryingProvider(StripeAdapter(stripe_client(backend.api_key, backend.api_base, http_client)), POLICY)
    await close_http_client(http_client)


def charge_order(
    method: str = "pm_card_visa", amount: int = 2000, *, capture_manually: bool = False, return_url: str = ""
) -> ChargeOrder:
    payment_id = f"pay_{uuid.uuid4().hex}"
    return ChargeOrder(payment_id, "test-client", f"key-{payment_id}", f"charge-{uuid.uuid4().hex}",
                       Money(amount, "EUR"), method, "cus-1", "adapter test", {"order": "42"},
                       capture_manually=capture_manually, return_url=return_url)  # fmt: skip


def capture_order(reference: str, amount: int, *, final: bool = True) -> CaptureOrder:
    key = f"capture-key-{uuid.uuid4().hex}"
    return CaptureOrder("pay_x", "test-client", key, f"capture-{uuid.uuid4().hex}", reference,
                        Money(amount, "EUR"), final)  # fmt: skip


def cancel_order(reference: str, reason: str = "requested_by_customer") -> CancelOrder:
    key = f"cancel-key-{uuid.uuid4().hex}"
    return CancelOrder("pay_x", "test-client", key, f"cancel-{uuid.uuid4().hex}", reference, reason)


def refund_order(reference: str, amount: int, payment_id: str = "pay_x") -> RefundOrder:
    refund_id = f"re_{uuid.uuid4().hex}"
    return RefundOrder(refund_id, payment_id, "test-client", f"key-{refund_id}", f"refund-{uuid.uuid4().hex}",
                       Money(amount, "EUR"), reference, "requested by customer")  # fmt: skip


async def test_charge_succeeds_and_is_found_again(psp: RetryingProvider) -> None:
    order = charge_order()
    outcome = await psp.charge(order, Deadline.after(20))
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.psp_reference
    assert outcome.psp_reference.startswith("pi_")
    assert outcome.data.get("psp_request_id", "").startswith("req_")
    by_id = await psp.lookup(order, outcome.psp_reference, Deadline.after(20))
    assert (by_id.kind, by_id.psp_reference) == (OutcomeKind.SUCCEEDED, outcome.psp_reference)


async def test_lookup_by_metadata_finds_the_intent(backend: StripeBackend, psp: RetryingProvider) -> None:
    backend.require_sandbox()  # Stripe's search index lags up to a minute in test mode
    order = charge_order()
    outcome = await psp.charge(order, Deadline.after(20))
    found = await psp.lookup(order, None, Deadline.after(20))
    assert found.psp_reference == outcome.psp_reference
    unknown = await psp.lookup(charge_order(), None, Deadline.after(20))
    assert unknown.kind is OutcomeKind.UNKNOWN


@pytest.mark.parametrize(
    ("method", "kind", "code", "decline"),
    [
        ("pm_card_visa_chargeDeclined", OutcomeKind.FAILED, "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", OutcomeKind.FAILED, "card_declined", "insufficient_funds"),
        ("pm_card_authenticationRequired", OutcomeKind.REQUIRES_ACTION, None, None),
    ],
)
async def test_declines_and_authentication_map(
    psp: RetryingProvider, method: str, kind: OutcomeKind, code: str | None, decline: str | None
) -> None:
    outcome = await psp.charge(charge_order(method), Deadline.after(20))
    assert outcome.kind is kind
    assert outcome.psp_reference
    assert outcome.psp_reference.startswith("pi_")
    if code:
        assert outcome.failure is not None
        assert (outcome.failure.code, outcome.failure.decline_code) == (code, decline)


async def test_partial_refunds(psp: RetryingProvider) -> None:
    charged = await psp.charge(charge_order(amount=3000), Deadline.after(20))
    assert charged.psp_reference
    first = await psp.refund(refund_order(charged.psp_reference, 1000), Deadline.after(20))
    second = await psp.refund(refund_order(charged.psp_reference, 2000), Deadline.after(20))
    assert first.kind is second.kind is OutcomeKind.SUCCEEDED
    assert first.psp_reference
    assert first.psp_reference.startswith("re_")


async def test_manual_capture_authorizes_then_captures_part(psp: RetryingProvider) -> None:
    """Authorized: the whole amount is capturable for Stripe's 7-day hold. A final capture of part takes
    that part and releases the rest; what was captured can be refunded; a look-up of the capture reads
    the intent as it now stands."""
    authorized = await psp.charge(charge_order(amount=3000, capture_manually=True), Deadline.after(20))
    assert authorized.kind is OutcomeKind.AUTHORIZED
    assert authorized.psp_reference
    assert authorized.psp_reference.startswith("pi_")
    assert (authorized.amount_capturable, authorized.amount_received) == (3000, 0)
    assert authorized.capturable_until is not None
    assert abs(authorized.capturable_until - datetime.now(UTC) - timedelta(days=7)) < timedelta(hours=1)

    order = capture_order(authorized.psp_reference, 2000, final=True)
    captured = await psp.capture(order, Deadline.after(20))
    assert (captured.kind, captured.psp_reference) == (OutcomeKind.SUCCEEDED, authorized.psp_reference)
    assert (captured.amount_received, captured.amount_capturable) == (2000, 0)
    assert captured.data.get("psp_request_id", "").startswith("req_")

    refunded = await psp.refund(refund_order(authorized.psp_reference, 2000), Deadline.after(20))
    assert refunded.kind is OutcomeKind.SUCCEEDED

    found = await psp.lookup(order, None, Deadline.after(20))
    assert (found.kind, found.psp_reference) == (OutcomeKind.SUCCEEDED, authorized.psp_reference)
    assert (found.amount_received, found.amount_capturable) == (2000, 0)


async def test_cancel_voids_an_authorization_and_a_second_cancel_is_refused(
    backend: StripeBackend, psp: RetryingProvider
) -> None:
    authorized = await psp.charge(charge_order(capture_manually=True), Deadline.after(20))
    assert authorized.kind is OutcomeKind.AUTHORIZED
    assert authorized.psp_reference
    order = cancel_order(authorized.psp_reference, "requested_by_customer")
    canceled = await psp.cancel(order, Deadline.after(20))
    assert (canceled.kind, canceled.psp_reference) == (OutcomeKind.CANCELED, authorized.psp_reference)
    assert (canceled.amount_capturable, canceled.amount_received) == (0, 0)
    resent = await psp.cancel(order, Deadline.after(20))  # the same key: Stripe replays its answer
    assert resent.kind is OutcomeKind.CANCELED
    with pytest.raises(PspRejectedError) as caught:  # a new key: a new cancel of a canceled intent
        await psp.cancel(cancel_order(authorized.psp_reference), Deadline.after(20))
    assert caught.value.code == "payment_intent_unexpected_state"
    assert caught.value.rejection is Rejection.REQUEST
    assert not caught.value.possibly_executed
    if backend.sandbox is not None:
        assert backend.sandbox.executions(CANCEL_PAYMENT_INTENT) == 1


async def test_a_capture_retried_under_its_key_executes_once(backend: StripeBackend, psp: RetryingProvider) -> None:
    """Against the sandbox the first answer is lost after the capture ran, so the retry resends it; the
    caller's own resend then carries the same key. Stripe captures once and replays the answer."""
    authorized = await psp.charge(charge_order(amount=3000, capture_manually=True), Deadline.after(20))
    assert authorized.psp_reference
    order = capture_order(authorized.psp_reference, 1000, final=True)
    path = f"/v1/payment_intents/{authorized.psp_reference}/capture"
    if backend.sandbox is not None:
        backend.sandbox.inject("drop_after_work", count=1, method="POST", path_prefix=path)
    first = await psp.capture(order, Deadline.after(20))
    again = await psp.capture(order, Deadline.after(20))
    for outcome in (first, again):
        assert (outcome.kind, outcome.psp_reference) == (OutcomeKind.SUCCEEDED, authorized.psp_reference)
        assert outcome.amount_received == 1000
    if backend.sandbox is not None:
        assert backend.sandbox.executions_for_key(order.psp_key) == 1
        assert backend.sandbox.executions(CAPTURE_PAYMENT_INTENT) == 1
        posts = [r for r in backend.sandbox.requests() if r.method == "POST" and r.path == path]
        assert [r.idempotency_key for r in posts] == [order.psp_key] * 3
        assert [r.replayed for r in posts] == [False, True, True]


async def test_3ds_with_a_return_url_is_a_redirect_back_to_it(psp: RetryingProvider) -> None:
    order = charge_order("pm_card_authenticationRequired", return_url="https://example.com/return")
    outcome = await psp.charge(order, Deadline.after(20))
    assert outcome.kind is OutcomeKind.REQUIRES_ACTION
    assert isinstance(outcome.next_action, RedirectToUrl)
    assert outcome.next_action.return_url == "https://example.com/return"
    assert outcome.next_action.url.startswith(("https://", "http://"))


async def test_3ds_without_a_return_url_hands_the_client_secret_to_the_caller(psp: RetryingProvider) -> None:
    """Stripe.js finishes it with the intent's client secret. It is in the outcome for the caller, but not
    in its repr; a look-up gives it again, which is how a replay answers without ever storing it."""
    order = charge_order("pm_card_authenticationRequired")
    outcome = await psp.charge(order, Deadline.after(20))
    assert outcome.kind is OutcomeKind.REQUIRES_ACTION
    assert outcome.psp_reference
    assert isinstance(outcome.next_action, UseStripeSdk)
    secret = outcome.next_action.client_secret
    assert secret.startswith(f"{outcome.psp_reference}_secret_")
    assert len(secret) > len(f"{outcome.psp_reference}_secret_")
    assert secret not in repr(outcome)
    found = await psp.lookup(order, outcome.psp_reference, Deadline.after(20))
    assert found.kind is OutcomeKind.REQUIRES_ACTION
    assert found.next_action == outcome.next_action


async def test_three_500s_then_success_make_one_intent(backend: StripeBackend, psp: RetryingProvider) -> None:
    sandbox = backend.require_sandbox()
    sandbox.inject("http_500", count=3, method="POST", path_prefix="/v1/payment_intents")
    order = charge_order()
    outcome = await psp.charge(order, Deadline.after(20))
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert sandbox.executions(CREATE_PAYMENT_INTENT) == 1
    keys = [r.idempotency_key for r in sandbox.requests() if r.method == "POST"]
    assert keys == [order.psp_key] * 4


async def test_work_done_then_response_dropped(backend: StripeBackend, psp: RetryingProvider) -> None:
    sandbox = backend.require_sandbox()
    sandbox.inject("drop_after_work", count=1, method="POST")
    order = charge_order()
    outcome = await psp.charge(order, Deadline.after(20))
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert sandbox.executions(CREATE_PAYMENT_INTENT) == 1
    posts = [r for r in sandbox.requests() if r.method == "POST"]
    assert len(posts) == 2
    assert {r.idempotency_key for r in posts} == {order.psp_key}
    assert posts[1].replayed


async def test_rate_limit_and_lock_timeout_are_retried(backend: StripeBackend, psp: RetryingProvider) -> None:
    sandbox = backend.require_sandbox()
    sandbox.inject("lock_timeout", count=1, method="POST")
    sandbox.inject("http_409", count=1, method="POST")
    outcome = await psp.charge(charge_order(), Deadline.after(20))
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert sandbox.executions(CREATE_PAYMENT_INTENT) == 1


async def test_connection_reset_is_retried_and_stall_is_cut_at_the_deadline(
    backend: StripeBackend, psp: RetryingProvider
) -> None:
    sandbox = backend.require_sandbox()
    sandbox.inject("reset", count=1, method="POST")
    assert (await psp.charge(charge_order(), Deadline.after(20))).kind is OutcomeKind.SUCCEEDED
    sandbox.inject("stall", count=10, method="POST", stall_seconds=3)
    with pytest.raises(PspUnavailableError) as caught:
        await psp.charge(charge_order(), Deadline.after(0.3))
    assert caught.value.possibly_executed


async def test_bad_credentials_are_rejected_not_retried(backend: StripeBackend) -> None:
    sandbox = backend.require_sandbox()
    http_client = stripe.HTTPXClient(timeout=5)
    try:
        bad = RetryingProvider(StripeAdapter(stripe_client("sk_live_wrong", sandbox.url, http_client)), POLICY)
        with pytest.raises(PspRejectedError):
            await bad.charge(charge_order(), Deadline.after(5))
        assert len(sandbox.requests()) == 1
    finally:
        await close_http_client(http_client)


async def test_transfer_to_connected_account(backend: StripeBackend, psp: RetryingProvider) -> None:
    sandbox = backend.require_sandbox()
    payout_id = f"po_{uuid.uuid4().hex}"
    order = PayoutOrder(payout_id, "test-client", "k", f"payout-{uuid.uuid4().hex}", Money(5000, "EUR"),
                        StripeAccountDestination("acct_1Seller"), False, "March sales")  # fmt: skip
    outcome = await psp.payout(order, Deadline.after(20))
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert outcome.psp_reference
    assert outcome.psp_reference.startswith("tr_")
    assert sandbox.executions(CREATE_TRANSFER) == 1
    found = await psp.lookup(order, None, Deadline.after(20))
    assert found.psp_reference == outcome.psp_reference


async def test_a_fully_reversed_transfer_is_returned(backend: StripeBackend, psp: RetryingProvider) -> None:
    """The platform took the money back (POST /v1/transfers/{id}/reversals): the look-up says RETURNED,
    which is why a paid Stripe payout is watched (payouts_can_return)."""
    sandbox = backend.require_sandbox()
    assert psp.payouts_can_return
    order = PayoutOrder(f"po_{uuid.uuid4().hex}", "test-client", "k", f"payout-{uuid.uuid4().hex}",
                        Money(3000, "EUR"), StripeAccountDestination("acct_1Seller"), False, "April sales")  # fmt: skip
    paid = await psp.payout(order, Deadline.after(20))
    assert paid.kind is OutcomeKind.SUCCEEDED
    assert paid.psp_reference
    auth = {"Authorization": f"Bearer {backend.api_key}"}
    reversal = httpx.post(f"{sandbox.url}/v1/transfers/{paid.psp_reference}/reversals", headers=auth,
                          data={"amount": "1000"})  # fmt: skip
    assert reversal.status_code == 200, reversal.text
    partly = await psp.lookup(order, paid.psp_reference, Deadline.after(20))
    assert partly.kind is OutcomeKind.SUCCEEDED, "partly reversed: still paid"
    rest = httpx.post(f"{sandbox.url}/v1/transfers/{paid.psp_reference}/reversals", headers=auth)
    assert rest.status_code == 200, rest.text
    assert (await psp.lookup(order, paid.psp_reference, Deadline.after(20))).kind is OutcomeKind.RETURNED


async def test_over_refund_is_rejected_by_stripe(backend: StripeBackend, psp: RetryingProvider) -> None:
    sandbox = backend.require_sandbox()
    charged = await psp.charge(charge_order(amount=1000), Deadline.after(20))
    assert charged.psp_reference
    with pytest.raises(PspRejectedError):
        await psp.refund(refund_order(charged.psp_reference, 5000), Deadline.after(20))
    assert sandbox.executions(CREATE_REFUND) == 0


async def test_refused_credentials_are_named_without_stripes_text(
    backend: StripeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 is a credentials refusal (the finality rule never fails a payment for it), and Stripe's
    text, which names our masked key, reaches only our log, with the key redacted."""
    backend.require_sandbox()
    assert backend.sandbox is not None
    backend.sandbox.revoke_api_key("sk_test_rolledy123")
    http_client = stripe.HTTPXClient(timeout=10)
    try:
        psp = RetryingProvider(
            StripeAdapter(stripe_client("sk_test_rolledy123", backend.api_base, http_client)), POLICY
        )
        with pytest.raises(PspRejectedError) as caught:
            await psp.charge(charge_order(), Deadline.after(20))
    finally:
        await close_http_client(http_client)
    assert caught.value.rejection is Rejection.CREDENTIALS
    assert "sk_" not in str(caught.value)
    assert "y123" not in str(caught.value)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "Expired API Key" in logged
    assert "y123" not in logged


async def test_the_pool_carries_more_calls_in_flight_than_httpx_defaults(backend: StripeBackend) -> None:
    """httpx's default pool (100 connections) would hold the 101st Stripe call back; the pool is sized by
    PAYMENTS_PSP_MAX_CONNECTIONS instead, so 150 slow calls are all at Stripe at once."""
    sandbox = backend.require_sandbox()
    calls = 150
    sandbox.inject("delay", calls, method="POST", stall_seconds=5.0)
    http_client = pooled_http_client(timeout_seconds=30, max_connections=1000)
    adapter = StripeAdapter(stripe_client(backend.api_key, backend.api_base, http_client))
    orders = [charge_order() for _ in range(calls)]
    try:
        running = [asyncio.create_task(adapter.charge(order, Deadline.after(30))) for order in orders]

        async def at_stripe() -> int:
            return sum(sandbox.is_in_flight(order.psp_key) for order in orders)

        most = 0
        for _ in range(80):  # up to 4 s while every call is held 5 s
            most = max(most, await at_stripe())
            if most > 100:
                break
            await asyncio.sleep(0.05)
        assert most > 100, f"only {most} calls reached Stripe at once"
        outcomes = await asyncio.gather(*running)
        assert all(outcome.kind is OutcomeKind.SUCCEEDED for outcome in outcomes)
    finally:
        await close_http_client(http_client)


@pytest.mark.parametrize(
    ("fault", "possibly_executed"), [("refused", False), ("drop_after_work", True), ("reset", True)]
)
async def test_the_served_transport_says_whether_a_failed_call_may_have_executed(
    backend: StripeBackend, fault: str, possibly_executed: bool
) -> None:
    """The transport payments serve uses (aiohttp, pooled): a refused connection never reached Stripe; a
    reset or a dropped answer may have executed. The finality rule depends on telling them apart."""
    sandbox = backend.require_sandbox()
    if fault == "refused":
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            base = f"http://127.0.0.1:{probe.getsockname()[1]}"
    else:
        base = sandbox.url
        sandbox.inject(fault, 1, method="POST")
    http_client = pooled_http_client(timeout_seconds=10, max_connections=10)
    adapter = StripeAdapter(stripe_client(backend.api_key, base, http_client))
    try:
        with pytest.raises(PspUnavailableError) as caught:
            await adapter.charge(charge_order(), Deadline.after(10))
    finally:
        await close_http_client(http_client)
    assert caught.value.possibly_executed is possibly_executed
