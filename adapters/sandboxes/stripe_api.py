"""Stripe's front door for the offline sandbox: authentication, routing, idempotency, the request log.

The real ``stripe`` SDK talks to it exactly as to api.stripe.com: only test-mode API keys, Stripe
error JSON, Stripe idempotency (replay with ``Idempotent-Replayed: true``, 400 ``idempotency_error``
on a changed request, 409 while the first request is still running). Behind it the ledger
(``stripe_objects``) applies the resource rules; in front of it the HTTP handler (``stripe_sandbox``)
applies faults. Nothing here touches a socket, so every answer is a plain value.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import traceback
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qsl

from adapters.sandboxes.faults import Fault, FaultPlan
from adapters.sandboxes.http_server import Latency
from adapters.sandboxes.idempotency import ClaimOutcome, IdempotencyScope, IdempotencyStore
from adapters.sandboxes.json_types import JsonDict, JsonValue
from adapters.sandboxes.observations import ExecutionCounter, RequestLog
from adapters.sandboxes.stripe_events import RequestOrigin
from adapters.sandboxes.stripe_objects import Route, StripeLedger
from adapters.sandboxes.stripe_resources import new_id
from adapters.sandboxes.stripe_webhooks import WebhookSender
from adapters.sandboxes.stripe_wire import (
    ApiResponse,
    StripeApiError,
    error_body,
    invalid_request,
    json_bytes,
    parse_form,
)

MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_LOGGED_REQUESTS = 10_000
_TEST_KEY_RE = re.compile(r"(sk|rk)_test_[A-Za-z0-9_]+")
# Stripe scopes idempotency keys to the account, not to the API key: a rotated key of the same account
# replays what the old one stored. The sandbox is one account.
_ACCOUNT = "acct_sandbox"


@dataclass(frozen=True)
class ApiRequest:
    """One request as read off the wire: header names lower-cased, the body as text."""

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
class Reply:
    """An answer to write; Content-Length is added when it is sent."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Result:
    """What the API did with a request: the reply, and the facts the request log records."""

    reply: Reply | None  # None: no answer is sent (the connection is dropped)
    replayed: bool = False
    executed: bool = False
    stored: bool = False
    operation: str | None = None


@dataclass(frozen=True)
class StoredResponse:
    """The exact answer kept under an idempotency key, replayed byte for byte."""

    status: int
    body: bytes
    request_id: str


@dataclass(frozen=True)
class RequestRecord:
    """One request as the sandbox saw it, for tests to assert on headers, keys and outcomes.

    ``status`` is None when no answer was sent (stall, reset, drop_after_work). The Authorization
    header is redacted: API keys never belong in logs, even a sandbox's.
    """

    request_id: str
    method: str
    path: str
    query: str
    idempotency_key: str | None
    headers: dict[str, str]
    body: str
    status: int | None
    replayed: bool
    fault: str | None
    operation: str | None
    executed: bool

    def to_json(self) -> JsonDict:
        """The record as JSON, for ``GET /_sandbox/requests``."""
        values = asdict(self)
        values["headers"] = dict[str, JsonValue](self.headers)
        return values


def new_request_id() -> str:
    return new_id("req", 14)


class StripeState:
    """Everything the server threads share; each part carries its own lock.

    ``webhooks``: the sender the account's events go to (by default one with no endpoint yet).
    """

    def __init__(
        self,
        *,
        settle_after_seconds: float,
        stripe_version: str,
        latency_seconds: float = 0.0,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self.webhooks = webhooks or WebhookSender()
        self.ledger = StripeLedger(
            settle_after_seconds=settle_after_seconds, events=self.webhooks, api_version=stripe_version
        )
        self.faults = FaultPlan()
        self.idempotency: IdempotencyStore[StoredResponse] = IdempotencyStore()
        self.executions = ExecutionCounter()
        self.requests: RequestLog[RequestRecord] = RequestLog(MAX_LOGGED_REQUESTS)
        self.stopping = threading.Event()
        self.stripe_version = stripe_version
        self._revoked: set[str] = set()
        self._revoked_lock = threading.Lock()
        self.latency = Latency(latency_seconds, self.stopping)

    def revoke(self, api_key: str) -> None:
        with self._revoked_lock:
            self._revoked.add(api_key)

    def is_revoked(self, api_key: str) -> bool:
        with self._revoked_lock:
            return api_key in self._revoked

    def counters_json(self) -> JsonDict:
        """The execution counters as JSON, for ``GET /_sandbox/counters``."""
        counts = self.executions.snapshot()
        return {
            "total": counts.total,
            "by_operation": dict[str, JsonValue](counts.by_subject),
            "by_idempotency_key": dict[str, JsonValue](counts.by_idempotency_key),
        }

    def reset(self) -> None:
        self.ledger.reset()
        self.faults.clear()
        self.idempotency.clear()
        self.executions.clear()
        self.requests.clear()
        self.latency.reset()
        self.webhooks.reset()
        with self._revoked_lock:
            self._revoked.clear()


class StripeApi:
    """Stripe's front door: authentication, routing, idempotency, then the ledger's rules."""

    def __init__(self, state: StripeState) -> None:
        self._state = state

    def handle(self, request: ApiRequest, delay_seconds: float = 0.0) -> Result:
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

    def _execute_once(self, request: ApiRequest, route: Route, scope: IdempotencyScope, delay_seconds: float) -> Result:
        endpoint = f"{request.method} {request.path}"
        fingerprint = json.dumps(sorted(parse_qsl(request.body, keep_blank_values=True)))
        claim = self._state.idempotency.claim(scope, endpoint, fingerprint)
        if claim.outcome is ClaimOutcome.REPLAY and claim.stored is not None:
            return self._replay(request, claim.stored)
        if claim.outcome is not ClaimOutcome.EXECUTE:
            refusal = _idempotency_refusal(claim.outcome, scope[1], endpoint, claim.first_endpoint)
            return self._result(request, refusal)
        result = Result(None)
        try:
            result = self._execute(request, route, delay_seconds)
        finally:
            if result.reply is not None and result.stored:
                stored = StoredResponse(result.reply.status, result.reply.body, request.request_id)
                self._state.idempotency.complete(scope, stored)
            else:
                self._state.idempotency.release(scope)
        return result

    def _execute(self, request: ApiRequest, route: Route, delay_seconds: float) -> Result:
        if delay_seconds > 0 and self._state.stopping.wait(delay_seconds):
            return Result(None)  # shutting down mid-delay: nothing was done
        try:
            params = parse_form(request.body if request.method == "POST" else request.query)
        except StripeApiError as error:
            return self._result(request, error.response())
        response = route.call(params, RequestOrigin(request.request_id, request.idempotency_key))
        if response.executed and route.operation is not None:
            self._state.executions.record(route.operation, request.idempotency_key)
        return self._result(request, response, operation=route.operation)

    def _replay(self, request: ApiRequest, stored: StoredResponse) -> Result:
        headers = self._headers(request, original_request=stored.request_id)
        headers.append(("Idempotent-Replayed", "true"))
        return Result(Reply(stored.status, stored.body, headers), replayed=True)

    def _result(self, request: ApiRequest, response: ApiResponse, operation: str | None = None) -> Result:
        reply = Reply(response.status, json_bytes(response.body), self._headers(request))
        return Result(reply, executed=response.executed, stored=response.stored, operation=operation)

    def _headers(self, request: ApiRequest, original_request: str | None = None) -> list[tuple[str, str]]:
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


def answer_or_report(state: StripeState, request: ApiRequest, delay_seconds: float) -> Result:
    """A sandbox bug answers 500 (and prints), never a silent drop that would pass for a ``reset``."""
    try:
        return StripeApi(state).handle(request, delay_seconds)
    except Exception:
        traceback.print_exc()
        body: JsonDict = {"error": error_body("api_error", "The Stripe sandbox failed; see its stderr.")}
        return Result(Reply(500, json_bytes(body), [("Content-Type", "application/json")]))


def record_of(request: ApiRequest, result: Result, fault: Fault | None) -> RequestRecord:
    """The log entry of an API request; the Authorization header keeps its scheme and 8 characters."""
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
