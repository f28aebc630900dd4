"""An offline, Stripe-compatible HTTP sandbox, so the Stripe adapter is tested over real HTTP.

The real ``stripe`` SDK talks to it exactly as to api.stripe.com: form-encoded requests, Stripe error
JSON, Stripe idempotency (replay with ``Idempotent-Replayed: true``, 400 ``idempotency_error`` on a
changed request, 409 while the first request is still running), Stripe's test payment methods.
Tests can inject the failures a real network and a real PSP produce, and read how many times each
operation really executed, which is what proves exactly-once.

This module is the HTTP surface: the request handler that applies faults, and ``StripeSandbox``, the
Python API. Behind it: ``stripe_api`` (auth, idempotency), ``stripe_objects`` (the account's rules),
``stripe_control`` (``/_sandbox/`` control endpoints, no API key needed), ``stripe_challenge`` (the
3-D Secure page), ``stripe_webhooks`` (signed events to a registered endpoint), ``http_server``
(threads, keep-alive, RST aborts). Standard library only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Self
from urllib.parse import urlsplit

from adapters.sandboxes import listen_arguments, run_until_signalled
from adapters.sandboxes.faults import Fault, FaultKind
from adapters.sandboxes.http_server import HostedSandbox, SandboxHandler
from adapters.sandboxes.json_types import JsonDict
from adapters.sandboxes.stripe_api import (
    ApiRequest,
    Reply,
    RequestRecord,
    Result,
    StripeState,
    answer_or_report,
    new_request_id,
    record_of,
)
from adapters.sandboxes.stripe_challenge import ChallengePage
from adapters.sandboxes.stripe_control import CONTROL_PREFIX, Control
from adapters.sandboxes.stripe_faults import ANSWERING_FAULTS, fault_reply, make_fault
from adapters.sandboxes.stripe_intents import CHALLENGE_PATH
from adapters.sandboxes.stripe_webhooks import WebhookDelivery, WebhookEndpoint, WebhookSender, generate_secret

__all__ = ["FaultKind", "RequestRecord", "StripeSandbox", "WebhookDelivery", "main", "serve_forever"]

DEFAULT_STRIPE_VERSION = "2026-10-28.endive"  # the version stripe 16.1.0 pins
SETTLE_TICK_SECONDS = 0.05  # how late an asynchronous outcome (and its webhook) may come, at most


class _Handler(SandboxHandler[StripeState]):
    """Reads a request, lets the fault plan and the API decide, writes (or withholds) the answer."""

    server_version = "nginx"
    sys_version = ""
    timeout = 60.0  # idle keep-alive connections end eventually
    wbufsize = -1  # buffer the status line, headers and body: one send per answer, flushed per request

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request stderr lines: the request log is the record."""

    def dispatch(self) -> None:
        state = self.state
        request = self._read_request()
        if request.path.startswith(CHALLENGE_PATH):
            self._send(ChallengePage(state.ledger).handle(request))
            return
        if request.path.startswith(CONTROL_PREFIX):
            self._send(Control(state).handle(request))
            return
        if not state.latency.hold():  # stopping while the latency held it: nothing done, nothing answered
            self.close_connection = True
            return
        fault = state.faults.next_fault(request.method, request.path)
        result = self._serve(request, fault)
        state.requests.append(record_of(request, result, fault))

    def _serve(self, request: ApiRequest, fault: Fault | None) -> Result:
        kind = fault.kind if fault is not None else None
        if kind is FaultKind.RESET:
            self.abort()
            return Result(None)
        if fault is not None and kind is FaultKind.STALL:
            self.state.stopping.wait(fault.stall_seconds)
            self.close_connection = True
            return Result(None)
        if fault is not None and kind in ANSWERING_FAULTS:
            result = Result(fault_reply(fault, request))
        else:
            delay = fault.stall_seconds if fault is not None and kind is FaultKind.DELAY else 0.0
            result = answer_or_report(self.state, request, delay)
        if kind is FaultKind.DROP_AFTER_WORK:
            self.abort()
            return Result(None, result.replayed, result.executed, result.stored, result.operation)
        if result.reply is None:
            self.close_connection = True
        else:
            self._send(result.reply)
        return result

    def _read_request(self) -> ApiRequest:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length > 0 else ""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return ApiRequest(new_request_id(), self.command, parts.path, parts.query, headers, body)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


# ---------------------------------------------------------------------------------------- public API


class StripeSandbox(HostedSandbox[StripeState]):
    """An offline Stripe test-mode account over real HTTP, with fault injection and counters.

    Use it as a context manager (or ``start()`` / ``stop()``) and point the SDK at ``url``. It binds
    127.0.0.1 on a free port by default, serves on a daemon thread and is safe to drive from any thread.
    ``latency_seconds``: every API request is held that long before it is handled (a sleeping thread,
    no CPU), like a real PSP's response time; 0 answers at once.

    Webhooks: with ``webhook_url`` (and its signing ``webhook_secret``, e.g. from
    ``generate_webhook_secret()``) every PaymentIntent, Refund and Transfer change is POSTed there as
    Stripe's signed Event, by a sender thread that lives as long as the sandbox runs. Like Stripe it
    may deliver an event twice (``webhook_duplicate_rate``) or late (``webhook_reorder_rate``), seeded
    by ``webhook_seed``; both are 0 by default.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        settle_after_seconds: float = 0.0,
        stripe_version: str = DEFAULT_STRIPE_VERSION,
        latency_seconds: float = 0.0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_duplicate_rate: float = 0.0,
        webhook_reorder_rate: float = 0.0,
        webhook_seed: int | None = None,
    ) -> None:
        endpoint = None
        if webhook_url is not None:
            if webhook_secret is None:
                raise ValueError("webhook_url needs its webhook_secret (see generate_webhook_secret())")
            endpoint = WebhookEndpoint(webhook_url, webhook_secret)
        webhooks = WebhookSender(
            endpoint, duplicate_rate=webhook_duplicate_rate, reorder_rate=webhook_reorder_rate, seed=webhook_seed
        )
        state = StripeState(
            settle_after_seconds=settle_after_seconds,
            stripe_version=stripe_version,
            latency_seconds=latency_seconds,
            webhooks=webhooks,
        )
        super().__init__((host, port), state, _Handler, label="Stripe sandbox", stopping=state.stopping)
        self._settler: threading.Thread | None = None

    def start(self) -> Self:
        """Serve in the background, settle asynchronous outcomes on time, send webhooks; returns self."""
        super().start()
        self._state.ledger.set_public_url(self.url)
        self._state.webhooks.start()
        self._settler = threading.Thread(target=self._settle, name="stripe-sandbox-settler", daemon=True)
        self._settler.start()
        return self

    def stop(self) -> None:
        """Stop serving, settling and sending webhooks (a delivery in flight is aborted). Idempotent."""
        super().stop()  # sets ``stopping``, which ends the settler
        if self._settler is not None:
            self._settler.join(timeout=5)
            self._settler = None
        self._state.webhooks.stop()

    def _settle(self) -> None:
        """Without this, a processing payment or a pending refund would settle (and announce it) only
        when the next API request arrives; Stripe settles them, and sends their webhooks, on its own."""
        while not self._state.stopping.wait(SETTLE_TICK_SECONDS):
            self._state.ledger.settle_due()

    # ------------------------------------------------------------------------------------ webhooks

    @staticmethod
    def generate_webhook_secret() -> str:
        """A fresh signing secret, ``whsec_`` and 32 random characters."""
        return generate_secret()

    def set_webhook(self, url: str | None, secret: str | None = None) -> str | None:
        """Send every later event to ``url`` (None: to nobody), signed with ``secret`` (made if None).

        Returns the secret in use, to verify with ``stripe.Webhook.construct_event``.
        """
        if url is None:
            self._state.webhooks.configure(None)
            return None
        endpoint = WebhookEndpoint(url, secret or generate_secret())
        self._state.webhooks.configure(endpoint)
        return endpoint.secret

    def set_webhook_rates(self, duplicate_rate: float, reorder_rate: float, seed: int | None = None) -> None:
        """Deliver each event twice with ``duplicate_rate`` and late with ``reorder_rate`` (0..1, seeded)."""
        self._state.webhooks.set_rates(duplicate_rate, reorder_rate, seed)

    def duplicate_next_webhook(self) -> None:
        """Deliver the next event twice: two full deliveries, same event id, same payload."""
        self._state.webhooks.duplicate_next()

    def hold_next_webhook(self) -> None:
        """Hold the next event back and deliver it right after the event that follows it."""
        self._state.webhooks.hold_next()

    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every finished delivery (event id, type, last status, attempts), oldest first."""
        return self._state.webhooks.deliveries()

    # -------------------------------------------------------------------------------------- faults

    def inject(
        self,
        kind: FaultKind | str,
        count: int = 1,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        retry_after: int | None = None,
        stall_seconds: float | None = None,
    ) -> None:
        """Fail the next ``count`` API requests matching ``method`` / ``path_prefix`` with ``kind``.

        ``retry_after`` (whole seconds) is the 429 ``Retry-After``; ``stall_seconds`` is how long
        ``stall`` and ``delay`` hold the request. Scripted faults apply before the random rate.
        """
        fault = make_fault(kind, retry_after=retry_after, stall_seconds=stall_seconds)
        self._state.faults.inject(fault, count, method=method, path_prefix=path_prefix)

    def set_fault_rate(
        self,
        rate: float,
        kinds: Iterable[FaultKind | str],
        seed: int | None = None,
        *,
        retry_after: int | None = None,
        stall_seconds: float | None = None,
    ) -> None:
        """Fail each API request with probability ``rate`` (0..1), kind drawn from ``kinds``, seeded."""
        template = make_fault(FaultKind.HTTP_500, retry_after=retry_after, stall_seconds=stall_seconds)
        self._state.faults.set_rate(rate, [FaultKind(kind) for kind in kinds], seed, template)

    def clear_faults(self) -> None:
        """Drop scripted faults and set the random rate to zero."""
        self._state.faults.clear()

    def set_latency(self, seconds: float) -> None:
        """Hold every API request ``seconds`` before handling it from now on (0: answer at once)."""
        self._state.latency.set(seconds)

    def executions(self, operation: str | None = None) -> int:
        """How many times ``operation`` (e.g. ``"payment_intents.create"``) really ran; all if None."""
        return self._state.executions.executions(operation)

    def executions_for_key(self, idempotency_key: str) -> int:
        """How many real executions carried this Idempotency-Key (exactly-once means 1)."""
        return self._state.executions.executions_for_key(idempotency_key)

    def requests(self) -> list[RequestRecord]:
        """Every API request seen (control requests excluded), oldest first."""
        return self._state.requests.entries()

    def counters(self) -> JsonDict:
        """Execution counters as ``GET /_sandbox/counters`` returns them."""
        return self._state.counters_json()

    def is_in_flight(self, idempotency_key: str) -> bool:
        """Whether a request with this key is executing right now (lets tests time a duplicate)."""
        return self._state.idempotency.in_flight(idempotency_key)

    def set_status(self, object_id: str, status: str) -> None:
        """Finish an asynchronous outcome (intent or refund), as Stripe would later; ValueError if odd."""
        self._state.ledger.set_status(object_id, status)

    def set_available_balance(self, currency: str, amount: int | None) -> None:
        """Cap the balance transfers draw from in ``currency`` (minor units); None removes the cap."""
        self._state.ledger.set_available_balance(currency, amount)

    def forget_idempotency_keys(self) -> None:
        """Forget every finished idempotency key, as Stripe does after 24 hours; objects stay findable.

        A request that reuses a forgotten key executes again: what a client that re-sends past the
        key's lifetime would do to a real account.
        """
        self._state.idempotency.forget_completed()

    def revoke_api_key(self, api_key: str) -> None:
        """Answer every request with this key 401 ``api_key_expired``, like a rolled or expired key."""
        self._state.revoke(api_key)

    def reset(self) -> None:
        """Forget objects, idempotency keys, faults, counters, revocations, the request log and webhook
        deliveries; the latency and the webhook endpoint go back to the ones the sandbox was made with."""
        self._state.reset()


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 12111,
    *,
    settle_after_seconds: float = 0.0,
    latency_seconds: float = 0.0,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> None:
    """Run the sandbox in the foreground until interrupted (for ``payments sandbox``).

    With ``webhook_url`` and no ``webhook_secret`` a secret is made and printed, as ``stripe listen``
    prints its own: the receiver needs it, and nobody else knows it. A given secret is never printed.
    """
    generated = webhook_url is not None and webhook_secret is None
    if generated:
        webhook_secret = StripeSandbox.generate_webhook_secret()
    sandbox = StripeSandbox(
        host,
        port,
        settle_after_seconds=settle_after_seconds,
        latency_seconds=latency_seconds,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )
    sandbox.start()
    print(f"Stripe sandbox listening on {sandbox.url} (control API under {CONTROL_PREFIX})", flush=True)
    if webhook_url is not None:
        signed = f"signed with the new secret {webhook_secret}" if generated else "signed with the given secret"
        print(f"Webhooks to {webhook_url}, {signed}", flush=True)
    run_until_signalled(sandbox)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m adapters.sandboxes.stripe_sandbox --port 12111``."""
    parser = listen_arguments("Offline Stripe-compatible sandbox", 12111)
    parser.add_argument("--settle-after-seconds", type=float, default=0.0)
    parser.add_argument("--latency-seconds", type=float, default=0.0, help="hold every API request this long")
    parser.add_argument("--webhook-url", default=None, help="POST every event there, signed as Stripe signs")
    parser.add_argument("--webhook-secret", default=None, help="the whsec_ signing secret (default: a new one)")
    options = vars(parser.parse_args(argv))  # every option but where to listen is serve_forever's keyword
    serve_forever(options.pop("host"), options.pop("port"), **options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
