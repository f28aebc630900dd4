"""Stripe webhooks in, through the server `payments serve` builds (docs/contract.md, Webhooks).

The Stripe sandbox lives in this test process (the server reaches it over HTTP like Stripe), and the
tests sign their events themselves with Stripe's scheme: `t=<unix>,v1=hex(HMAC-SHA256(secret, "<t>.<body>"))`,
which `stripe.Webhook.construct_event` checks on the server. Every request is real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import payment_stub
from server.security.devcerts import generate_dev_certs
from tests.support.chaos import ServeProcess, client_channel, wait_for
from tests.support.processes import REPO, free_port, start_cli_server
from tests.support.requests import charge
from tests.support.secure import require_openssl
from tests.support.webhooks import MARKER, event, sign

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

OLD_SECRET = "whsec_old_0123456789abcdef"  # test signing secrets
NEW_SECRET = "whsec_rotated_fedcba9876543210"
PATH = "/v1/webhooks/stripe"


@dataclass
class Served:
    server: ServeProcess
    sandbox: StripeSandbox
    webhook_url: str
    database_url: str
    http: httpx.Client  # one connection, as Stripe keeps one: the answer time is the endpoint's

    def post(
        self, body: bytes, signature: str | bytes | None, content_type: str = "application/json"
    ) -> httpx.Response:
        headers = [(b"Content-Type", content_type.encode())]
        if signature is not None:
            headers.append((b"Stripe-Signature", signature if isinstance(signature, bytes) else signature.encode()))
        return self.http.post(self.webhook_url, content=body, headers=headers)

    def send(self, body: bytes, secret: str = OLD_SECRET) -> httpx.Response:
        return self.post(body, sign(body, secret))

    def processing_charge(self, key: str) -> res.Payment:
        """A charge Stripe keeps processing (the sandbox settles it only when told): PROCESSING, polled."""
        with client_channel(self.server.target) as channel:
            payment = payment_stub(channel).Charge(charge(key, method="pm_card_processing"), timeout=30).payment
        assert payment.status == res.PAYMENT_STATUS_PROCESSING
        assert payment.psp_reference.startswith("pi_")
        return payment

    def get(self, payment_id: str) -> res.Payment:
        with client_channel(self.server.target) as channel:
            return payment_stub(channel).GetPayment(svc.GetPaymentRequest(id=payment_id), timeout=10).payment

    def sql(self, query: str, *args: object) -> list[Any]:
        async def fetch() -> list[Any]:
            conn = await asyncpg.connect(self.database_url)
            try:
                return list(await conn.fetch(query, *args))
            finally:
                await conn.close()

        return asyncio.run(fetch())

    def event_rows(self) -> list[tuple[str, str, str]]:
        rows = self.sql("SELECT event_id, type, object_id FROM stripe_webhook_events ORDER BY event_id")
        return [(r["event_id"], r["type"], r["object_id"]) for r in rows]

    def poll_due_in(self, psp_reference: str) -> float:
        """Seconds until the payment's next look-up (<= 0: due now)."""
        rows = self.sql(
            "SELECT EXTRACT(EPOCH FROM next_poll_at - now())::float8 AS due_in FROM payments WHERE psp_reference = $1",
            psp_reference,
        )
        return float(rows[0]["due_in"])

    def postpone_poll(self, psp_reference: str) -> None:
        """As after a few polls with webhooks on: the next look-up an hour away."""
        self.sql("UPDATE payments SET next_poll_at = now() + interval '1 hour' WHERE psp_reference = $1", psp_reference)


def serve(database_url: str, tmp_path: Path, sandbox: StripeSandbox, **env: str) -> Served:
    webhook_port = free_port()
    settings = {
        "PAYMENTS_STRIPE_API_KEY": "sk_test_webhooks", "PAYMENTS_STRIPE_API_BASE": sandbox.url,
        "PAYMENTS_STRIPE_WEBHOOK_SECRETS": f"{OLD_SECRET}, {NEW_SECRET}",
        "PAYMENTS_WEBHOOK_LISTEN": f"127.0.0.1:{webhook_port}",
        "PAYMENTS_WEBHOOK_POLL_SECONDS": "3600",  # polling would not find anything within a test
        **env,
    }  # fmt: skip
    server = ServeProcess(database_url, tmp_path / "serve.log", env=settings)
    server.start()
    return Served(server, sandbox, f"http://127.0.0.1:{webhook_port}{PATH}", database_url, httpx.Client(timeout=10))


@pytest.fixture
def sandbox() -> Iterator[StripeSandbox]:
    with StripeSandbox(settle_after_seconds=3600) as running:  # "processing" until the test settles it
        yield running


@pytest.fixture
def without_worker(database_url: str, tmp_path: Path, sandbox: StripeSandbox) -> Iterator[Served]:
    """Nothing polls: what an event leaves behind stays visible."""
    served = serve(database_url, tmp_path, sandbox, PAYMENTS_WORKER="off")
    try:
        yield served
    finally:
        served.http.close()
        served.server.close()


@pytest.fixture
def with_worker(database_url: str, tmp_path: Path, sandbox: StripeSandbox) -> Iterator[Served]:
    served = serve(database_url, tmp_path, sandbox)
    try:
        yield served
    finally:
        served.http.close()
        served.server.close()


def test_a_signed_event_is_recorded_and_makes_its_payment_due_now(without_worker: Served) -> None:
    served = without_worker
    payment = served.processing_charge("wh-due")
    served.postpone_poll(payment.psp_reference)
    body = event("evt_due", "payment_intent.succeeded", payment.psp_reference)
    started = time.monotonic()
    answer = served.send(body)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": "due"}
    assert elapsed < 1.0, f"the endpoint never waits on the PSP; it took {elapsed:.3f} s"
    print(f"webhook answered in {elapsed * 1000:.1f} ms")
    assert served.event_rows() == [("evt_due", "payment_intent.succeeded", payment.psp_reference)]
    assert served.poll_due_in(payment.psp_reference) <= 0
    assert served.get(payment.id).status == res.PAYMENT_STATUS_PROCESSING, "an event is a hint, never evidence"

    log = served.server.log_path.read_text(errors="replace")
    assert '"event_id": "evt_due"' in log
    assert '"event_type": "payment_intent.succeeded"' in log
    for secret in (MARKER, OLD_SECRET, NEW_SECRET, "whsec_"):
        assert secret not in log, f"{secret} reached the log"


def test_a_bad_signature_or_a_stale_timestamp_is_refused_and_writes_nothing(without_worker: Served) -> None:
    served = without_worker
    payment = served.processing_charge("wh-refused")
    served.postpone_poll(payment.psp_reference)
    body = event("evt_refused", "payment_intent.succeeded", payment.psp_reference)
    stale = int(time.time()) - 301
    refusals = {
        "unknown secret": served.post(body, sign(body, "whsec_someone_else")),
        "changed body": served.post(body.replace(b"evt_refused", b"evt_refusex"), sign(body, OLD_SECRET)),
        "stale timestamp": served.post(body, sign(body, OLD_SECRET, timestamp=stale)),
        "no signature": served.post(body, None),
        "garbled signature": served.post(body, "t=abc,v9=zz"),
        "non-ASCII signature": served.post(body, f"t={int(time.time())},v1=\u00e9".encode()),
    }
    for case, answer in refusals.items():
        assert answer.status_code == 400, (case, answer.status_code, answer.text)
    assert served.event_rows() == []
    assert served.poll_due_in(payment.psp_reference) > 3000


def test_a_duplicate_event_id_is_answered_and_does_nothing_else(without_worker: Served) -> None:
    served = without_worker
    payment = served.processing_charge("wh-duplicate")
    body = event("evt_twice", "payment_intent.succeeded", payment.psp_reference)
    assert served.send(body).json() == {"received": "due"}
    served.postpone_poll(payment.psp_reference)
    again = served.send(body)
    assert again.status_code == 200
    assert again.json() == {"received": "duplicate"}
    assert served.event_rows() == [("evt_twice", "payment_intent.succeeded", payment.psp_reference)]
    assert served.poll_due_in(payment.psp_reference) > 3000, "a duplicate makes nothing due"


def test_an_event_signed_with_the_rotated_secret_is_accepted(without_worker: Served) -> None:
    served = without_worker
    payment = served.processing_charge("wh-rotated")
    served.postpone_poll(payment.psp_reference)
    body = event("evt_rotated", "payment_intent.payment_failed", payment.psp_reference)
    answer = served.send(body, secret=NEW_SECRET)
    assert answer.status_code == 200, answer.text
    assert served.event_rows() == [("evt_rotated", "payment_intent.payment_failed", payment.psp_reference)]
    assert served.poll_due_in(payment.psp_reference) <= 0


def test_other_types_and_unknown_resources_are_answered_200(without_worker: Served) -> None:
    served = without_worker
    ignored = served.send(event("evt_other", "customer.created", "cus_1"))
    assert ignored.status_code == 200
    assert ignored.json() == {"received": "ignored"}
    unknown = served.send(event("evt_unknown", "refund.updated", "re_not_ours"))
    assert unknown.status_code == 200
    assert unknown.json() == {"received": "not_found"}
    assert served.event_rows() == [("evt_unknown", "refund.updated", "re_not_ours")], "ignored types: not recorded"


def test_nothing_a_caller_sends_is_a_server_error(without_worker: Served) -> None:
    served = without_worker
    not_json = b"{not json"
    not_an_object = b"[1, 2]"
    no_object_id = json.dumps({"id": "evt_x", "type": "refund.updated", "data": {"object": {}}}).encode()
    not_utf8 = b'{"id": "\xff"}'
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = {
        "not JSON": (served.post(not_json, sign(not_json, OLD_SECRET)), 400),
        "not an object": (served.post(not_an_object, sign(not_an_object, OLD_SECRET)), 400),
        "no object id": (served.post(no_object_id, sign(no_object_id, OLD_SECRET)), 400),
        "not UTF-8": (served.post(not_utf8, f"t={int(time.time())},v1=00"), 400),
        "nested too deep": (served.post(deep, sign(deep, OLD_SECRET)), 400),
        "form content": (served.post(b"a=b", sign(b"a=b", OLD_SECRET), "application/x-www-form-urlencoded"), 400),
        "over 1 MiB": (served.post(b" " * ((1 << 20) + 1), "t=1,v1=00"), 413),
    }
    for case, (answer, expected) in cases.items():
        assert answer.status_code == expected, (case, answer.status_code, answer.text)
    assert httpx.get(served.webhook_url, timeout=10).status_code == 405
    assert httpx.post(served.webhook_url.replace(PATH, "/v1/other"), timeout=10).status_code == 404
    assert served.event_rows() == []
    assert served.server.error_lines() == []


def test_a_processing_charge_converges_within_two_seconds_of_its_webhook(with_worker: Served) -> None:
    """Polling alone would look again in an hour (PAYMENTS_WEBHOOK_POLL_SECONDS): the webhook's look-up
    goes through the worker's status poll and the finality rule, and the payment is SUCCEEDED at once."""
    served = with_worker
    payment = served.processing_charge("wh-converges")

    def first_poll_recorded() -> bool:
        polls = served.sql("SELECT polls FROM payments WHERE psp_reference = $1", payment.psp_reference)[0][0]
        return bool(polls >= 1 and served.poll_due_in(payment.psp_reference) > 3000)

    # The first poll (1 s after the charge) finds it processing; the next one is an hour away.
    assert wait_for(first_poll_recorded, timeout=10), "the first poll never came"
    served.sandbox.set_status(payment.psp_reference, "succeeded")  # Stripe settles it later
    time.sleep(0.5)
    assert served.get(payment.id).status == res.PAYMENT_STATUS_PROCESSING, "nothing looked it up yet"

    started = time.monotonic()
    answer = served.send(event("evt_settled", "payment_intent.succeeded", payment.psp_reference))
    assert answer.status_code == 200
    assert wait_for(lambda: served.get(payment.id).status == res.PAYMENT_STATUS_SUCCEEDED, timeout=2.0, interval=0.02)
    took = time.monotonic() - started
    assert took < 2.0, took
    print(f"webhook to SUCCEEDED: {took * 1000:.0f} ms")
    lookups = [r for r in served.sandbox.requests() if r.method == "GET" and payment.psp_reference in r.path]
    assert len(lookups) == 2, "the first poll and the webhook's look-up"

    # A late, out-of-order event changes nothing: the look-up it triggers finds the final state.
    late = served.send(event("evt_late", "payment_intent.requires_action", payment.psp_reference))
    assert late.json() == {"received": "not_found"}, "a final payment is not watched"
    assert served.get(payment.id).status == res.PAYMENT_STATUS_SUCCEEDED


def test_a_non_loopback_webhook_address_without_tls_refuses_to_start(database_url: str) -> None:
    process = start_cli_server(
        database_url, free_port(), PAYMENTS_WEBHOOK_LISTEN=f"0.0.0.0:{free_port()}",
        PAYMENTS_STRIPE_WEBHOOK_SECRETS=OLD_SECRET, PAYMENTS_WORKER="off",
    )  # fmt: skip
    assert process.wait(timeout=60) == 2
    assert process.stderr is not None
    lines = [line for line in process.stderr.read().decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: refusing to listen for Stripe webhooks on 0.0.0.0:"), lines
    assert "PAYMENTS_TLS_CERT" in lines[0]
    assert OLD_SECRET not in lines[0]


def test_with_workers_only_the_first_process_listens_for_webhooks(
    database_url: str, sandbox: StripeSandbox, tmp_path: Path
) -> None:
    port, webhook_port = free_port(), free_port()
    env = {
        **os.environ, "PAYMENTS_DATABASE_URL": database_url, "PAYMENTS_LISTEN": f"127.0.0.1:{port}",
        "PAYMENTS_STRIPE_API_KEY": "sk_test_webhooks", "PAYMENTS_STRIPE_API_BASE": sandbox.url,
        "PAYMENTS_STRIPE_WEBHOOK_SECRETS": OLD_SECRET, "PAYMENTS_WEBHOOK_LISTEN": f"127.0.0.1:{webhook_port}",
    }  # fmt: skip
    log = (tmp_path / "workers.log").open("wb")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--workers", "2"], cwd=REPO, env=env,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{webhook_port}{PATH}"

        def answered() -> bool:
            try:
                body = event("evt_workers", "customer.created", "cus_1")
                return httpx.post(url, content=body, headers={"Stripe-Signature": sign(body, OLD_SECRET),
                                  "Content-Type": "application/json"}, timeout=2).status_code == 200  # fmt: skip
            except httpx.TransportError:
                return False

        assert wait_for(answered, timeout=30, interval=0.1), (tmp_path / "workers.log").read_text()
        import psutil

        children = [c for c in psutil.Process(supervisor.pid).children() if "server.cli" in " ".join(c.cmdline())]
        assert len(children) == 2, "both processes run: the second did not try to take the webhook port"
        listening = [c for c in children if any(a.laddr.port == webhook_port for a in c.net_connections("tcp"))]
        assert len(listening) == 1
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
        log.close()


def test_with_the_grpc_listeners_tls_the_webhook_listener_speaks_tls_too(
    database_url: str, sandbox: StripeSandbox, tmp_path: Path
) -> None:
    """PAYMENTS_TLS_CERT/KEY serve the webhook listener too; mutual TLS is not asked of Stripe."""
    require_openssl()
    certs = generate_dev_certs(tmp_path / "certs", client_ids=["client-a"], days=2)
    webhook_port = free_port()
    env = {
        **os.environ, "PAYMENTS_DATABASE_URL": database_url, "PAYMENTS_LISTEN": f"127.0.0.1:{free_port()}",
        "PAYMENTS_TLS_CERT": str(certs.server.cert), "PAYMENTS_TLS_KEY": str(certs.server.key),
        "PAYMENTS_TLS_CLIENT_CA": str(certs.ca.cert), "PAYMENTS_WORKER": "off",
        "PAYMENTS_STRIPE_API_KEY": "sk_test_webhooks", "PAYMENTS_STRIPE_API_BASE": sandbox.url,
        "PAYMENTS_STRIPE_WEBHOOK_SECRETS": OLD_SECRET, "PAYMENTS_WEBHOOK_LISTEN": f"localhost:{webhook_port}",
    }  # fmt: skip
    log = (tmp_path / "tls.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    body = event("evt_tls", "customer.created", "cus_1")
    headers = {"Content-Type": "application/json"}
    try:
        trusting = ssl.create_default_context(cafile=str(certs.ca.cert))
        with httpx.Client(verify=trusting, timeout=5) as https:

            def answered() -> bool:
                try:
                    signed = {**headers, "Stripe-Signature": sign(body, OLD_SECRET)}
                    url = f"https://localhost:{webhook_port}{PATH}"
                    return https.post(url, content=body, headers=signed).status_code == 200
                except httpx.TransportError:
                    return False

            assert wait_for(answered, timeout=30, interval=0.1), (tmp_path / "tls.log").read_text()
        with pytest.raises(httpx.TransportError):
            httpx.post(f"http://localhost:{webhook_port}{PATH}", content=body, headers=headers, timeout=5)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        log.close()
