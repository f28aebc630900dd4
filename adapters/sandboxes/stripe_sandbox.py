"""An offline, Stripe-compatible HTTP sandbox, so the Stripe adapter is tested over real HTTP.

The real ``stripe`` SDK talks to it exactly as to api.stripe.com: form-encoded requests, Stripe error
JSON, Stripe idempotency (replay with ``Idempotent-Replayed: true``, 400 ``idempotency_error`` on a
changed request, 409 while the first request is still running), Stripe's test payment methods.
Tests can inject the failures a real network and a real PSP produce, and read how many times each
operation really executed, which is what proves exactly-once.

This module is the HTTP surface: the request handler that applies faults, and ``StripeSandbox``, the
Python API. Behind it: ``stripe_api`` (auth, idempotency), ``stripe_objects`` (the account's rules),
``stripe_control`` (``/_sandbox/`` control endpoints, no API key needed), ``http_server`` (threads,
keep-alive, RST aborts). Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
from adapters.sandboxes.stripe_control import CONTROL_PREFIX, Control
from adapters.sandboxes.stripe_faults import ANSWERING_FAULTS, fault_reply, make_fault

__all__ = ["FaultKind", "RequestRecord", "StripeSandbox", "main", "serve_forever"]

DEFAULT_STRIPE_VERSION = "2026-10-28.endive"  # the version stripe 16.1.0 pins


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
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        settle_after_seconds: float = 0.0,
        stripe_version: str = DEFAULT_STRIPE_VERSION,
        latency_seconds: float = 0.0,
    ) -> None:
        state = StripeState(
            settle_after_seconds=settle_after_seconds, stripe_version=stripe_version, latency_seconds=latency_seconds
        )
        super().__init__((host, port), state, _Handler, label="Stripe sandbox", stopping=state.stopping)

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
        """Forget objects, idempotency keys, faults, counters, revocations and the request log; the
        latency goes back to the one the sandbox was started with."""
        self._state.reset()


def serve_forever(
    host: str = "127.0.0.1", port: int = 12111, *, settle_after_seconds: float = 0.0, latency_seconds: float = 0.0
) -> None:
    """Run the sandbox in the foreground until interrupted (for ``payments sandbox``)."""
    sandbox = StripeSandbox(host, port, settle_after_seconds=settle_after_seconds, latency_seconds=latency_seconds)
    sandbox.start()
    print(f"Stripe sandbox listening on {sandbox.url} (control API under {CONTROL_PREFIX})", flush=True)
    run_until_signalled(sandbox)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m adapters.sandboxes.stripe_sandbox --port 12111``."""
    parser = listen_arguments("Offline Stripe-compatible sandbox", 12111)
    parser.add_argument("--settle-after-seconds", type=float, default=0.0)
    parser.add_argument("--latency-seconds", type=float, default=0.0, help="hold every API request this long")
    args = parser.parse_args(argv)
    serve_forever(
        args.host, args.port, settle_after_seconds=args.settle_after_seconds, latency_seconds=args.latency_seconds
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
