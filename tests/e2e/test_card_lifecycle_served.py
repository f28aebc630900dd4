"""The card payment lifecycle through `payments serve` and the Stripe adapter, against the Stripe
sandbox (or any Stripe-compatible server, as the sandbox speaks Stripe's API): authorize, capture part,
refund; authorize, cancel; 3-D Secure finished in a browser; a Capture/Cancel race."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub, payment_stub
from server.domain.idempotency import Operation, psp_idempotency_key
from tests.support.chaos import ServeProcess, client_channel, wait_for
from tests.support.postgres import PostgresForTests
from tests.support.processes import free_port
from tests.support.requests import cancel, capture, capture_or_cancel_race, charge, error_reason, refund
from tests.support.webhooks import event, sign

RETURN_URL = "https://shop.example/checkout/return"
KEY = "sk_test_lifecycle"


@contextlib.contextmanager
def serve_on_sandbox(database_url: str, log: Path, **env: str) -> Iterator[tuple[PaymentStub, StripeSandbox]]:
    """`payments serve` with the Stripe adapter pointed at a Stripe sandbox, and more settings."""
    with StripeSandbox() as sandbox:
        server = ServeProcess(database_url, log, env={"PAYMENTS_STRIPE_API_KEY": KEY,
                                                      "PAYMENTS_STRIPE_API_BASE": sandbox.url, **env})  # fmt: skip
        server.start()
        try:
            with client_channel(server.target) as channel:
                yield payment_stub(channel), sandbox
        finally:
            server.close()


@pytest.fixture(scope="module")
def served(
    postgres: PostgresForTests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PaymentStub, StripeSandbox]]:
    """One server for the tests that need no settings of their own (each uses its own keys)."""
    log = tmp_path_factory.mktemp("lifecycle") / "serve.log"
    with serve_on_sandbox(postgres.new_database(), log) as served:
        yield served


def stripe_intent(sandbox: StripeSandbox, intent_id: str) -> dict[str, object]:
    """The PaymentIntent as Stripe's API shows it."""
    answer = httpx.get(f"{sandbox.url}/v1/payment_intents/{intent_id}", headers={"Authorization": f"Bearer {KEY}"})
    answer.raise_for_status()
    intent: dict[str, object] = answer.json()
    return intent


def get(stub: PaymentStub, payment_id: str) -> res.Payment:
    return stub.GetPayment(svc.GetPaymentRequest(id=payment_id), timeout=10).payment


def test_authorize_capture_part_then_refund_the_captured_amount(
    served: tuple[PaymentStub, StripeSandbox],
) -> None:
    stub, sandbox = served
    payment = stub.Charge(charge("life-1", amount=5000, manual=True), timeout=30).payment
    assert payment.status == res.PAYMENT_STATUS_REQUIRES_CAPTURE
    assert payment.amount_capturable.amount_minor == 5000
    assert payment.capturable_until.seconds > payment.create_time.seconds + 6 * 86400  # Stripe's 7-day hold
    captured = stub.CapturePayment(capture("life-1-c", payment.id, 3000), timeout=30).payment
    assert captured.status == res.PAYMENT_STATUS_SUCCEEDED
    assert (captured.amount_captured.amount_minor, captured.amount_capturable.amount_minor) == (3000, 0)
    intent = stripe_intent(sandbox, payment.psp_reference)
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 3000)
    refunded = stub.Refund(refund("life-1-r", payment.id), timeout=30).refund
    assert refunded.amount.amount_minor == 3000
    with pytest.raises(grpc.RpcError) as caught:
        stub.CapturePayment(capture("life-1-c2", payment.id), timeout=30)
    assert error_reason(caught.value) == "PAYMENT_NOT_CAPTURABLE"


def test_authorize_then_cancel(served: tuple[PaymentStub, StripeSandbox]) -> None:
    stub, sandbox = served
    payment = stub.Charge(charge("life-2", manual=True), timeout=30).payment
    canceled = stub.CancelPayment(cancel("life-2-x", payment.id, "abandoned"), timeout=30).payment
    assert canceled.status == res.PAYMENT_STATUS_CANCELED
    assert canceled.cancellation_reason == "abandoned"
    intent = stripe_intent(sandbox, payment.psp_reference)
    assert (intent["status"], intent["cancellation_reason"]) == ("canceled", "abandoned")


def test_capture_and_cancel_race_through_stripe(served: tuple[PaymentStub, StripeSandbox]) -> None:
    stub, sandbox = served
    payment = stub.Charge(charge("life-3", manual=True), timeout=30).payment

    answers = capture_or_cancel_race(stub, payment.id, "life-3")
    assert answers.count("OK") == 1, answers
    winner = answers.index("OK")
    operation = Operation.CAPTURE if winner % 2 else Operation.CANCEL
    executions = [
        sandbox.executions_for_key(psp_idempotency_key("default", f"life-3-{n}", op))
        for n in range(50) for op in (Operation.CAPTURE, Operation.CANCEL)
    ]  # fmt: skip
    assert sum(executions) == 1, "the PSP was called once, by the winner"
    assert sandbox.executions_for_key(psp_idempotency_key("default", f"life-3-{winner}", operation)) == 1


def _follow_challenge(url: str, choice: str) -> httpx.Response:
    """As a browser: open the challenge page, click the link, stop at the redirect back to the shop."""
    with httpx.Client(timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200
        anchors = re.findall(r'<a[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', page.text)
        links = {text.strip().lower(): href for href, text in anchors}
        (href,) = [h for text, h in links.items() if text.startswith(choice)]
        return browser.get(httpx.URL(url).join(href), follow_redirects=False)


def test_3ds_challenge_completed_in_the_browser_makes_the_payment_succeed(
    served: tuple[PaymentStub, StripeSandbox],
) -> None:
    stub, _ = served
    payment = stub.Charge(charge("life-4", method="pm_card_authenticationRequired", return_url=RETURN_URL),
                          timeout=30).payment  # fmt: skip
    assert payment.status == res.PAYMENT_STATUS_REQUIRES_ACTION
    redirect = payment.next_action.redirect_to_url
    assert redirect.return_url == RETURN_URL
    back = _follow_challenge(redirect.url, "complete")
    assert back.status_code == 302
    assert back.headers["location"].startswith(RETURN_URL)
    assert "redirect_status=succeeded" in back.headers["location"]
    assert wait_for(lambda: get(stub, payment.id).status == res.PAYMENT_STATUS_SUCCEEDED, timeout=15, interval=0.1)


def test_3ds_challenge_failed_makes_the_payment_fail(served: tuple[PaymentStub, StripeSandbox]) -> None:
    stub, _ = served
    payment = stub.Charge(charge("life-5", method="pm_card_threeDSecure2Required", return_url=RETURN_URL),
                          timeout=30).payment  # fmt: skip
    back = _follow_challenge(payment.next_action.redirect_to_url.url, "fail")
    assert "redirect_status=failed" in back.headers["location"]
    assert wait_for(lambda: get(stub, payment.id).status == res.PAYMENT_STATUS_FAILED, timeout=15, interval=0.1)
    assert get(stub, payment.id).failure.code == "payment_intent_authentication_failure"


def test_without_a_return_url_the_caller_gets_the_client_secret_and_a_replay_asks_stripe_again(
    served: tuple[PaymentStub, StripeSandbox],
) -> None:
    stub, _ = served
    first = stub.Charge(charge("life-6", method="pm_card_authenticationRequired"), timeout=30).payment
    secret = first.next_action.use_stripe_sdk.client_secret
    assert secret.startswith(first.psp_reference + "_secret_")
    replay = stub.Charge(charge("life-6", method="pm_card_authenticationRequired"), timeout=30).payment
    assert replay.next_action.use_stripe_sdk.client_secret == secret
    assert not get(stub, first.id).HasField("next_action"), "GetPayment shows what is stored: no secret"


def test_3ds_completed_converges_through_the_webhook_with_polling_slowed_down(
    database_url: str, tmp_path: Path
) -> None:
    """Polling looks again only after an hour once its first look-up saw REQUIRES_ACTION; the sandbox's
    signed payment_intent.succeeded event brings the payment to SUCCEEDED within 2 s of the click."""
    secret = StripeSandbox.generate_webhook_secret()
    webhook_port = free_port()
    with StripeSandbox() as sandbox:
        sandbox.set_webhook(f"http://127.0.0.1:{webhook_port}/v1/webhooks/stripe", secret)
        env = {
            "PAYMENTS_STRIPE_API_KEY": KEY, "PAYMENTS_STRIPE_API_BASE": sandbox.url,
            "PAYMENTS_STRIPE_WEBHOOK_SECRETS": secret, "PAYMENTS_WEBHOOK_LISTEN": f"127.0.0.1:{webhook_port}",
            "PAYMENTS_WEBHOOK_POLL_SECONDS": "3600",
        }  # fmt: skip
        server = ServeProcess(database_url, tmp_path / "serve.log", env=env)
        server.start()
        try:
            with client_channel(server.target) as channel:
                stub = payment_stub(channel)
                request = charge("life-7", method="pm_card_authenticationRequired", return_url=RETURN_URL)
                payment = stub.Charge(request, timeout=30).payment
                assert payment.status == res.PAYMENT_STATUS_REQUIRES_ACTION

                def polled() -> bool:
                    gets = [r for r in sandbox.requests() if r.method == "GET" and payment.psp_reference in r.path]
                    return bool(gets)

                assert wait_for(polled, timeout=10, interval=0.05), "the first look-up (1 s after the charge)"
                looked_up = len(sandbox.requests())
                clicked = time.monotonic()
                _follow_challenge(payment.next_action.redirect_to_url.url, "complete")
                assert wait_for(lambda: get(stub, payment.id).status == res.PAYMENT_STATUS_SUCCEEDED, timeout=2,
                                interval=0.05), "within 2 s of the click"  # fmt: skip
                assert time.monotonic() - clicked < 2
                delivered = [d for d in sandbox.webhook_deliveries() if d.type == "payment_intent.succeeded"]
                assert delivered
                assert delivered[0].status == 200
                assert len(sandbox.requests()) > looked_up, "the event led to a look-up (events prove nothing)"

                # An out-of-order pair: an older state's event after the new one's. It is answered and changes
                # nothing: events only prompt a look-up, and a final payment is not looked up again.
                stale = event("evt_stale_requires_action", "payment_intent.requires_action", payment.psp_reference)
                answer = httpx.post(f"http://127.0.0.1:{webhook_port}/v1/webhooks/stripe", content=stale,
                                    headers={"Stripe-Signature": sign(stale, secret),
                                             "Content-Type": "application/json"})  # fmt: skip
                assert answer.status_code == 200
                time.sleep(0.5)
                assert get(stub, payment.id).status == res.PAYMENT_STATUS_SUCCEEDED

                # An event that does not match Stripe's state (a forged or misrouted one): the look-up it
                # prompts finds the authorization intact, so nothing changes.
                held = stub.Charge(charge("life-7b", manual=True), timeout=30).payment
                before = len(sandbox.requests())
                forged = event("evt_not_true", "payment_intent.canceled", held.psp_reference)
                answer = httpx.post(f"http://127.0.0.1:{webhook_port}/v1/webhooks/stripe", content=forged,
                                    headers={"Stripe-Signature": sign(forged, secret),
                                             "Content-Type": "application/json"})  # fmt: skip
                assert answer.status_code == 200
                assert wait_for(lambda: any(f"/v1/payment_intents/{held.psp_reference}" == r.path
                                            for r in sandbox.requests()[before:] if r.method == "GET"),
                                timeout=5, interval=0.05)  # fmt: skip
                assert get(stub, held.id).status == res.PAYMENT_STATUS_REQUIRES_CAPTURE
        finally:
            server.close()


def test_a_payment_nobody_authenticates_is_cancelled_at_the_psp(database_url: str, tmp_path: Path) -> None:
    with serve_on_sandbox(database_url, tmp_path / "serve.log", PAYMENTS_REQUIRES_ACTION_TIMEOUT_SECONDS="2") as (
        stub, sandbox
    ):  # fmt: skip
        payment = stub.Charge(charge("life-8", method="pm_card_authenticationRequired"), timeout=30).payment
        assert payment.status == res.PAYMENT_STATUS_REQUIRES_ACTION
        assert wait_for(lambda: get(stub, payment.id).status == res.PAYMENT_STATUS_CANCELED, timeout=20, interval=0.2)
        assert get(stub, payment.id).cancellation_reason == "abandoned"
        intent = stripe_intent(sandbox, payment.psp_reference)
        assert (intent["status"], intent["cancellation_reason"]) == ("canceled", "abandoned")


def alert_lines(log: Path, alert: str) -> list[dict[str, object]]:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith('{"time"')]
    return [entry for entry in map(json.loads, lines) if entry.get("alert") == alert]


def test_an_authorization_close_to_its_release_alerts_once(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    # Stripe holds it for 7 days; warned 8 days ahead, the very first look-up is inside the window.
    with serve_on_sandbox(database_url, log, PAYMENTS_CAPTURE_WARNING_SECONDS=str(8 * 86400)) as (stub, _):
        payment = stub.Charge(charge("life-9", manual=True), timeout=30).payment
        assert wait_for(lambda: bool(alert_lines(log, "CAPTURE_EXPIRING")), timeout=15, interval=0.2)
        time.sleep(2.5)  # one more look at it (2 s after the first)
        (alert,) = alert_lines(log, "CAPTURE_EXPIRING")
        assert alert["resource_id"] == payment.id
        assert get(stub, payment.id).status == res.PAYMENT_STATUS_REQUIRES_CAPTURE, "only an alert by default"


def test_with_auto_cancel_an_expiring_authorization_is_released(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    env = {"PAYMENTS_CAPTURE_WARNING_SECONDS": str(8 * 86400), "PAYMENTS_AUTO_CANCEL_UNCAPTURED": "1"}
    with serve_on_sandbox(database_url, log, **env) as (stub, sandbox):
        payment = stub.Charge(charge("life-10", manual=True), timeout=30).payment
        assert wait_for(lambda: get(stub, payment.id).status == res.PAYMENT_STATUS_CANCELED, timeout=15, interval=0.2)
        assert stripe_intent(sandbox, payment.psp_reference)["status"] == "canceled"
        assert len(alert_lines(log, "CAPTURE_EXPIRING")) == 1


def test_a_reversed_stripe_transfer_makes_the_payout_returned(served: tuple[PaymentStub, StripeSandbox]) -> None:
    """A paid payout to a connected account is watched: once the platform reverses the whole Transfer,
    the worker's look-up finds it and the payout is RETURNED."""
    stub, sandbox = served
    request = svc.PayoutRequest(idempotency_key="life-11", amount=res.Money(amount_minor=2500, currency="EUR"),
                                stripe_account_id="acct_1Reversed", reference="May sales")  # fmt: skip
    payout = stub.Payout(request, timeout=30).payout
    assert payout.status == res.PAYOUT_STATUS_PAID
    reversal = httpx.post(f"{sandbox.url}/v1/transfers/{payout.psp_reference}/reversals",
                          headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert reversal.status_code == 200, reversal.text

    def returned() -> bool:
        got = stub.GetPayout(svc.GetPayoutRequest(id=payout.id), timeout=10).payout
        return bool(got.status == res.PAYOUT_STATUS_RETURNED)

    assert wait_for(returned, timeout=15, interval=0.2)
