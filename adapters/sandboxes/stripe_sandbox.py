"""An offline, Stripe-compatible HTTP sandbox, so the Stripe adapter is tested over real HTTP.

The real ``stripe`` SDK talks to it exactly as to api.stripe.com: form-encoded requests, Stripe error
JSON, Stripe idempotency (replay with ``Idempotent-Replayed: true``, 400 ``idempotency_error`` on a
changed request, 409 while the first request is still running), Stripe's test payment methods.
Tests can inject the failures a real network and a real PSP produce, and read how many times each
operation really executed, which is what proves exactly-once.

Standard library only: ``ThreadingHTTPServer`` speaking HTTP/1.1 (keep-alive) on a daemon thread.
Control endpoints live under ``/_sandbox/`` and need no API key; see ``StripeSandbox`` for Python.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import socket
import socketserver
import struct
import sys
import threading
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, urlsplit

from adapters.sandboxes import run_until_signalled
from adapters.sandboxes.stripe_faults import (
    DEFAULT_RETRY_AFTER_SECONDS,
    DEFAULT_STALL_SECONDS,
    ClaimOutcome,
    Fault,
    FaultKind,
    FaultPlan,
    IdempotencyStore,
    Observations,
    RequestRecord,
    StoredResponse,
)
from adapters.sandboxes.stripe_objects import Route, StripeLedger, new_id
from adapters.sandboxes.stripe_wire import (
    ApiResponse,
    JsonDict,
    JsonValue,
    StripeApiError,
    error_body,
    invalid_request,
    parse_form,
)

__all__ = ["FaultKind", "RequestRecord", "StripeSandbox", "main", "serve_forever"]

CONTROL_PREFIX = "/_sandbox/"
DEFAULT_STRIPE_VERSION = "2026-10-28.endive"  # the version stripe 16.1.0 pins
MAX_IDEMPOTENCY_KEY_LENGTH = 255
_TEST_KEY_RE = re.compile(r"(sk|rk)_test_[A-Za-z0-9_]+")
# Stripe scopes idempotency keys to the account, not to the API key: a rotated key of the same account
# replays what the old one stored. The sandbox is one account.
_ACCOUNT = "acct_sandbox"


@dataclass(frozen=True)
class _Request:
    request_id: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str

    @property
    def idempotency_key(self) -> str | None:
        # Stripe ignores idempotency keys on GET and DELETE: those are idempotent already.
        return self.headers.get("idempotency-key") if self.method == "POST" else None


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Result:
    """What the API did with a request: the reply, and the facts the request log records."""

    reply: _Reply | None  # None: no answer is sent (the connection is dropped)
    replayed: bool = False
    executed: bool = False
    stored: bool = False
    operation: str | None = None


def _json_bytes(body: JsonDict) -> bytes:
    return (json.dumps(body, indent=2) + "\n").encode()


def _request_id() -> str:
    return new_id("req", 14)


class _SandboxState:
    """Everything the server threads share; each part carries its own lock."""

    def __init__(self, *, settle_after_seconds: float, stripe_version: str) -> None:
        self.ledger = StripeLedger(settle_after_seconds=settle_after_seconds)
        self.faults = FaultPlan()
        self.idempotency = IdempotencyStore()
        self.observations = Observations()
        self.stopping = threading.Event()
        self.stripe_version = stripe_version
        self._revoked: set[str] = set()
        self._revoked_lock = threading.Lock()

    def revoke(self, api_key: str) -> None:
        with self._revoked_lock:
            self._revoked.add(api_key)

    def is_revoked(self, api_key: str) -> bool:
        with self._revoked_lock:
            return api_key in self._revoked

    def reset(self) -> None:
        self.ledger.reset()
        self.faults.clear()
        self.idempotency.clear()
        self.observations.clear()
        with self._revoked_lock:
            self._revoked.clear()


# ------------------------------------------------------------------------------------- the Stripe API


class _StripeApi:
    """Stripe's front door: authentication, routing, idempotency, then the ledger's rules."""

    def __init__(self, state: _SandboxState) -> None:
        self._state = state

    def handle(self, request: _Request, delay_seconds: float = 0.0) -> _Result:
        """Answer one API request; ``delay_seconds`` holds it (key claimed) before executing."""
        api_key, auth_error = _authenticate(request.headers)
        if auth_error is None and self._state.is_revoked(api_key):
            auth_error = invalid_request(
                f"Expired API Key provided: {_masked(api_key)}", status=401, code="api_key_expired"
            )
        if auth_error is not None:
            return self._result(request, auth_error.response())
        route = self._state.ledger.route(request.method, request.path)
        if route is None:
            message = (
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/."
            )
            return self._result(request, invalid_request(message, status=404).response())
        key = request.idempotency_key
        if key is None:
            return self._execute(request, route, delay_seconds)
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            message = f"Idempotency keys can be no longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters."
            return self._result(request, invalid_request(message).response())
        return self._execute_once(request, route, (_ACCOUNT, key), delay_seconds)

    def _execute_once(self, request: _Request, route: Route, scope: tuple[str, str], delay_seconds: float) -> _Result:
        endpoint = f"{request.method} {request.path}"
        fingerprint = json.dumps(sorted(parse_qsl(request.body, keep_blank_values=True)))
        claim = self._state.idempotency.claim(scope, endpoint, fingerprint)
        if claim.outcome is ClaimOutcome.REPLAY and claim.stored is not None:
            return self._replay(request, claim.stored)
        if claim.outcome is not ClaimOutcome.EXECUTE:
            refusal = _idempotency_refusal(claim.outcome, scope[1], endpoint, claim.first_endpoint)
            return self._result(request, refusal)
        result = _Result(None)
        try:
            result = self._execute(request, route, delay_seconds)
        finally:
            if result.reply is not None and result.stored:
                stored = StoredResponse(result.reply.status, result.reply.body, request.request_id)
                self._state.idempotency.complete(scope, stored)
            else:
                self._state.idempotency.release(scope)
        return result

    def _execute(self, request: _Request, route: Route, delay_seconds: float) -> _Result:
        if delay_seconds > 0 and self._state.stopping.wait(delay_seconds):
            return _Result(None)  # shutting down mid-delay: nothing was done
        try:
            params = parse_form(request.body if request.method == "POST" else request.query)
        except StripeApiError as error:
            return self._result(request, error.response())
        response = route.call(params)
        if response.executed and route.operation is not None:
            self._state.observations.record_execution(route.operation, request.idempotency_key)
        return self._result(request, response, operation=route.operation)

    def _replay(self, request: _Request, stored: StoredResponse) -> _Result:
        headers = self._headers(request, original_request=stored.request_id)
        headers.append(("Idempotent-Replayed", "true"))
        return _Result(_Reply(stored.status, stored.body, headers), replayed=True)

    def _result(self, request: _Request, response: ApiResponse, operation: str | None = None) -> _Result:
        reply = _Reply(response.status, _json_bytes(response.body), self._headers(request))
        return _Result(reply, executed=response.executed, stored=response.stored, operation=operation)

    def _headers(self, request: _Request, original_request: str | None = None) -> list[tuple[str, str]]:
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-cache, no-store"),
            ("Request-Id", request.request_id),
            ("Stripe-Version", request.headers.get("stripe-version", self._state.stripe_version)),
        ]
        key = request.idempotency_key
        if key is not None:
            headers.append(("Idempotency-Key", key))
            headers.append(("Original-Request", original_request or request.request_id))
        return headers


def _authenticate(headers: dict[str, str]) -> tuple[str, StripeApiError | None]:
    """The API key from Bearer (the SDK) or Basic (curl -u) auth; only test-mode keys are accepted."""
    scheme, _, credential = headers.get("authorization", "").partition(" ")
    key = credential.strip()
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(key, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    elif scheme.lower() != "bearer":
        key = ""
    if not key:
        message = (
            "You did not provide an API key. You need to provide your API key in the Authorization "
            "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
            "https://stripe.com/docs/api#authentication for details, or we can help at "
            "https://support.stripe.com/."
        )
        return "", invalid_request(message, status=401)
    if _TEST_KEY_RE.fullmatch(key) is None:
        message = f"Invalid API Key provided: {_masked(key)} (the sandbox accepts test-mode keys only)"
        return "", invalid_request(message, status=401, code="api_key_invalid")
    return key, None


def _masked(key: str) -> str:
    """As Stripe shows a key in its errors: the prefix and the last four characters."""
    return key[:8] + "*" * max(len(key) - 12, 0) + key[-4:]


def _idempotency_refusal(outcome: ClaimOutcome, key: str, endpoint: str, first_endpoint: str) -> ApiResponse:
    """Stripe's answers for a key in use (409) or reused for a different request (400)."""
    if outcome is ClaimOutcome.IN_USE:
        message = (
            "There is currently another in-progress request using this Idempotent Key (that probably "
            f"means you submitted twice, and the other request is still going through): {key}. "
            "Please try again later."
        )
        error = error_body("invalid_request_error", message, code="idempotency_key_in_use")
        return ApiResponse(409, {"error": error}, stored=False)
    if outcome is ClaimOutcome.OTHER_ENDPOINT:
        message = (
            "Keys for idempotent requests can only be used for the same endpoint they were first used "
            f"for ('{first_endpoint}' vs '{endpoint}'). Try using a key other than '{key}' if you meant "
            "to execute a different request."
        )
    else:
        message = (
            "Keys for idempotent requests can only be used with the same parameters they were first used "
            f"with. Try using a key other than '{key}' if you meant to execute a different request."
        )
    return ApiResponse(400, {"error": error_body("idempotency_error", message)}, stored=False)


_ANSWERING_FAULTS = frozenset({FaultKind.HTTP_500, FaultKind.HTTP_429, FaultKind.LOCK_TIMEOUT, FaultKind.HTTP_409})
_RATE_LIMITED = "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
_LOCK_TIMEOUT = (
    "This object cannot be accessed right now because another API request or Stripe process is "
    "currently accessing it. If you see this error intermittently, retry the request."
)
_CONFLICT = "The request conflicts with another request (perhaps due to using the same idempotent key)."


def _fault_reply(fault: Fault, request: _Request) -> _Reply:
    """The answer of an answering fault; none of them executes or stores anything."""
    headers = [("Content-Type", "application/json"), ("Request-Id", request.request_id)]
    if fault.kind is FaultKind.HTTP_500:
        status, error = 500, error_body("api_error", "An unknown error occurred")
    elif fault.kind is FaultKind.HTTP_409:
        status, error = 409, error_body("invalid_request_error", _CONFLICT)
        headers.append(("Stripe-Should-Retry", "true"))
    elif fault.kind is FaultKind.LOCK_TIMEOUT:
        status, error = 429, error_body("invalid_request_error", _LOCK_TIMEOUT, code="lock_timeout")
        headers += [("Stripe-Should-Retry", "true"), ("Retry-After", str(fault.retry_after))]
    else:
        status, error = 429, error_body("invalid_request_error", _RATE_LIMITED, code="rate_limit")
        headers.append(("Retry-After", str(fault.retry_after)))
    return _Reply(status, _json_bytes({"error": error}), headers)


def _make_fault(kind: FaultKind | str, *, retry_after: int | None = None, stall_seconds: float | None = None) -> Fault:
    """Validate fault settings from Python or JSON; raises ValueError for nonsense."""
    if retry_after is not None and retry_after < 0:
        raise ValueError("retry_after must be zero or more seconds")
    if stall_seconds is not None and stall_seconds < 0:
        raise ValueError("stall_seconds must be zero or more")
    return Fault(
        FaultKind(kind),
        DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else retry_after,
        DEFAULT_STALL_SECONDS if stall_seconds is None else stall_seconds,
    )


# ------------------------------------------------------------------------------------ control API


class _Control:
    """``/_sandbox/…``: the HTTP twin of ``StripeSandbox``'s test methods, for other processes."""

    def __init__(self, state: _SandboxState) -> None:
        self._state = state

    def handle(self, request: _Request) -> _Reply:
        """Answer a control request; bad input is a 400 with a plain message."""
        try:
            status, body = self._route(request)
        except ValueError as error:
            status, body = 400, {"error": {"message": str(error)}}
        return _Reply(status, _json_bytes(body), [("Content-Type", "application/json")])

    def _route(self, request: _Request) -> tuple[int, JsonDict]:
        state = self._state
        action = (request.method, request.path.removeprefix(CONTROL_PREFIX).rstrip("/"))
        status_match = re.fullmatch(r"objects/([^/]+)/status", action[1])
        if action == ("GET", "health"):
            return 200, {"ok": True}
        if action == ("GET", "counters"):
            return 200, state.observations.counters_json()
        if action == ("GET", "requests"):
            records: list[JsonValue] = [r.to_json() for r in state.observations.requests()]
            return 200, {"requests": records}
        if action == ("POST", "reset"):
            state.reset()
        elif action == ("POST", "idempotency/forget"):
            state.idempotency.forget_completed()
        elif action == ("POST", "api_keys/revoke"):
            state.revoke(_json_str(_json_object(request.body), "key") or "")
        elif action == ("GET", "faults"):
            return 200, state.faults.describe()
        elif action == ("DELETE", "faults"):
            state.faults.clear()
        elif action == ("POST", "faults"):
            self._set_faults(_json_object(request.body))
        elif action == ("POST", "balance"):
            settings = _json_object(request.body)
            currency = _json_str(settings, "currency") or ""
            state.ledger.set_available_balance(currency, _json_int(settings, "amount"))
        elif request.method == "POST" and status_match is not None:
            new_status = _json_str(_json_object(request.body), "status") or ""
            state.ledger.set_status(status_match.group(1), new_status)
        else:
            return 404, {"error": {"message": f"no control endpoint {request.method} {request.path}"}}
        return 200, {"ok": True}

    def _set_faults(self, settings: dict[str, object]) -> None:
        if settings.get("clear") is True:
            self._state.faults.clear()
            return
        retry_after = _json_int(settings, "retry_after")
        stall_seconds = _json_number(settings, "stall_seconds")
        if "rate" in settings:
            kinds = settings.get("kinds", [])
            if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
                raise ValueError("kinds must be a list of fault kinds")
            template = _make_fault(FaultKind.HTTP_500, retry_after=retry_after, stall_seconds=stall_seconds)
            fault_kinds = [FaultKind(str(k)) for k in kinds]
            rate = _json_number(settings, "rate") or 0.0
            self._state.faults.set_rate(rate, fault_kinds, _json_int(settings, "seed"), template)
            return
        fault = _make_fault(_json_str(settings, "kind") or "", retry_after=retry_after, stall_seconds=stall_seconds)
        method, prefix = _json_str(settings, "method"), _json_str(settings, "path_prefix")
        count = _json_int(settings, "count")
        self._state.faults.inject(fault, 1 if count is None else count, method=method, path_prefix=prefix)


def _json_object(text: str) -> dict[str, object]:
    try:
        value: object = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"body is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise ValueError("body must be a JSON object")
    return {str(k): v for k, v in value.items()}


def _json_str(values: dict[str, object], name: str) -> str | None:
    value = values.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def _json_int(values: dict[str, object], name: str) -> int | None:
    value = values.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer")
    return value


def _json_number(values: dict[str, object], name: str) -> float | None:
    """Durations and rates (never money) may be fractional."""
    value = values.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    return float(value)


# --------------------------------------------------------------------------------------- HTTP server


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, lets the fault plan and the API decide, writes (or withholds) the answer."""

    protocol_version = "HTTP/1.1"  # keep-alive, like api.stripe.com
    server_version = "nginx"
    sys_version = ""
    timeout = 60.0  # idle keep-alive connections end eventually
    disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stalls on small answers
    wbufsize = -1  # buffer the status line, headers and body: one send per answer, flushed per request

    def do_GET(self) -> None:
        """Serve a GET (reads, lists, search, control)."""
        self._dispatch()

    def do_POST(self) -> None:
        """Serve a POST (creates and actions, control)."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Serve a DELETE (control only; Stripe's 404 otherwise)."""
        self._dispatch()

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request stderr lines: the request log is the record."""

    def _dispatch(self) -> None:
        server = self.server
        if not isinstance(server, _Server):
            raise TypeError("the Stripe sandbox handler needs its own server class")
        state = server.state
        request = self._read_request()
        if request.path.startswith(CONTROL_PREFIX):
            self._send(_Control(state).handle(request))
            return
        fault = state.faults.next_fault(request.method, request.path)
        result = self._serve(server, request, fault)
        state.observations.record_request(_record(request, result, fault))

    def _serve(self, server: _Server, request: _Request, fault: Fault | None) -> _Result:
        kind = fault.kind if fault is not None else None
        if kind is FaultKind.RESET:
            self._abort(server)
            return _Result(None)
        if fault is not None and kind is FaultKind.STALL:
            server.state.stopping.wait(fault.stall_seconds)
            self.close_connection = True
            return _Result(None)
        if fault is not None and kind in _ANSWERING_FAULTS:
            result = _Result(_fault_reply(fault, request))
        else:
            delay = fault.stall_seconds if fault is not None and kind is FaultKind.DELAY else 0.0
            result = _answer_or_report(server.state, request, delay)
        if kind is FaultKind.DROP_AFTER_WORK:
            self._abort(server)
            return _Result(None, result.replayed, result.executed, result.stored, result.operation)
        if result.reply is None:
            self.close_connection = True
        else:
            self._send(result.reply)
        return result

    def _read_request(self) -> _Request:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length > 0 else ""
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return _Request(_request_id(), self.command, parts.path, parts.query, headers, body)

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _abort(self, server: _Server) -> None:
        self.close_connection = True
        server.abort(self.connection)


def _answer_or_report(state: _SandboxState, request: _Request, delay_seconds: float) -> _Result:
    """A sandbox bug answers 500 (and prints), never a silent drop that would pass for a ``reset``."""
    try:
        return _StripeApi(state).handle(request, delay_seconds)
    except Exception:
        traceback.print_exc()
        body: JsonDict = {"error": error_body("api_error", "The Stripe sandbox failed; see its stderr.")}
        return _Result(_Reply(500, _json_bytes(body), [("Content-Type", "application/json")]))


def _record(request: _Request, result: _Result, fault: Fault | None) -> RequestRecord:
    headers = dict(request.headers)
    if "authorization" in headers:
        scheme, _, credential = headers["authorization"].partition(" ")
        headers["authorization"] = f"{scheme} {credential[:8]}…" if credential else scheme
    return RequestRecord(
        request_id=request.request_id,
        method=request.method,
        path=request.path,
        query=request.query,
        idempotency_key=request.idempotency_key,
        headers=headers,
        body=request.body,
        status=result.reply.status if result.reply is not None else None,
        replayed=result.replayed,
        fault=fault.kind.value if fault is not None else None,
        operation=result.operation,
        executed=result.executed,
    )


_SocketRequest = socket.socket | tuple[bytes, socket.socket]  # socketserver's request type


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that can abort connections with RST and close them all on stop."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # socketserver's default of 5 drops SYNs under a duplicate storm (1 s stalls)

    def __init__(self, address: tuple[str, int], state: _SandboxState) -> None:
        self.state = state
        self._connections_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._aborted: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (getfqdn), which can hang offline."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: _SocketRequest, client_address: object) -> None:
        """Track the connection so ``stop()`` can close it."""
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: _SocketRequest) -> None:
        """Close a connection; an aborted one is closed without FIN, so SO_LINGER 0 sends an RST."""
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
                aborted = request in self._aborted
                self._aborted.discard(request)
            if aborted:
                request.close()
                return
        super().shutdown_request(request)

    def abort(self, connection: socket.socket) -> None:
        """Mark a connection to be reset (RST) instead of closed when its handler finishes."""
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._connections_lock:
            self._aborted.add(connection)

    def close_connections(self) -> None:
        """Unblock every handler thread still reading from a keep-alive connection."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue  # already gone

    def handle_error(self, request: _SocketRequest, client_address: object) -> None:
        """Clients vanishing mid-request is routine here (timeouts, resets); other errors still print."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


# ---------------------------------------------------------------------------------------- public API


class StripeSandbox:
    """An offline Stripe test-mode account over real HTTP, with fault injection and counters.

    Use it as a context manager (or ``start()`` / ``stop()``) and point the SDK at ``url``. It binds
    127.0.0.1 on a free port by default, serves on a daemon thread and is safe to drive from any thread.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        settle_after_seconds: float = 0.0,
        stripe_version: str = DEFAULT_STRIPE_VERSION,
    ) -> None:
        self._address = (host, port)
        self._state = _SandboxState(settle_after_seconds=settle_after_seconds, stripe_version=stripe_version)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and serve in the background; returns self so ``StripeSandbox().start()`` reads well."""
        if self._server is not None:
            raise RuntimeError("the Stripe sandbox is already running")
        self._state.stopping.clear()
        server = _Server(self._address, self._state)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="stripe-sandbox", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, wake stalled requests, close every connection. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._state.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        if self._server is None:
            raise RuntimeError("the Stripe sandbox is not running")
        return self._server.server_port

    @property
    def url(self) -> str:
        """The API base to give the SDK, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("the Stripe sandbox is not running")
        return f"http://{self._server.server_name}:{self._server.server_port}"

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
        fault = _make_fault(kind, retry_after=retry_after, stall_seconds=stall_seconds)
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
        template = _make_fault(FaultKind.HTTP_500, retry_after=retry_after, stall_seconds=stall_seconds)
        self._state.faults.set_rate(rate, [FaultKind(kind) for kind in kinds], seed, template)

    def clear_faults(self) -> None:
        """Drop scripted faults and set the random rate to zero."""
        self._state.faults.clear()

    def executions(self, operation: str | None = None) -> int:
        """How many times ``operation`` (e.g. ``"payment_intents.create"``) really ran; all if None."""
        return self._state.observations.executions(operation)

    def executions_for_key(self, idempotency_key: str) -> int:
        """How many real executions carried this Idempotency-Key (exactly-once means 1)."""
        return self._state.observations.executions_for_key(idempotency_key)

    def requests(self) -> list[RequestRecord]:
        """Every API request seen (control requests excluded), oldest first."""
        return self._state.observations.requests()

    def counters(self) -> JsonDict:
        """Execution counters as ``GET /_sandbox/counters`` returns them."""
        return self._state.observations.counters_json()

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
        """Forget objects, idempotency keys, faults, counters, revocations and the request log."""
        self._state.reset()


def serve_forever(host: str = "127.0.0.1", port: int = 12111, *, settle_after_seconds: float = 0.0) -> None:
    """Run the sandbox in the foreground until interrupted (for ``payments sandbox``)."""
    sandbox = StripeSandbox(host, port, settle_after_seconds=settle_after_seconds).start()
    print(f"Stripe sandbox listening on {sandbox.url} (control API under {CONTROL_PREFIX})", flush=True)
    run_until_signalled(sandbox)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m adapters.sandboxes.stripe_sandbox --port 12111``."""
    parser = argparse.ArgumentParser(description="Offline Stripe-compatible sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--settle-after-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)
    serve_forever(args.host, args.port, settle_after_seconds=args.settle_after_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
