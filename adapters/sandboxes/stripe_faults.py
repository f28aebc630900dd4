"""Fault injection, idempotency store and execution counters for the offline Stripe sandbox.

These are the sandbox's test instruments, kept apart from the HTTP plumbing (``stripe_sandbox``) and the
resource rules (``stripe_objects``). Every class is thread-safe because the server answers each
connection on its own thread, and duplicates of one idempotency key must race on shared state.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum

from adapters.sandboxes.stripe_wire import JsonDict, JsonValue

DEFAULT_STALL_SECONDS = 5.0
DEFAULT_RETRY_AFTER_SECONDS = 1
MAX_LOGGED_REQUESTS = 10_000


class FaultKind(StrEnum):
    """What can go wrong between a client and Stripe, and whether the work was done.

    - ``http_500``: Stripe ``api_error`` JSON; nothing executed, nothing stored under the key.
    - ``http_429``: rate limited (code ``rate_limit``) with ``Retry-After``; nothing executed.
    - ``lock_timeout``: 429 with code ``lock_timeout`` and ``Stripe-Should-Retry: true``.
    - ``http_409``: 409 conflict with ``Stripe-Should-Retry: true``; nothing executed.
    - ``stall``: hold the request ``stall_seconds`` (past the client's timeout), then close without an
      answer; nothing executed.
    - ``delay``: hold the idempotency key in flight ``stall_seconds``, then execute and answer normally
      (a slow Stripe: concurrent duplicates see 409).
    - ``reset``: abort the TCP connection (RST) without an answer; nothing executed.
    - ``drop_after_work``: execute, store the answer under the key, then abort the connection (RST).
    """

    HTTP_500 = "http_500"
    HTTP_429 = "http_429"
    LOCK_TIMEOUT = "lock_timeout"
    HTTP_409 = "http_409"
    STALL = "stall"
    DELAY = "delay"
    RESET = "reset"
    DROP_AFTER_WORK = "drop_after_work"


@dataclass(frozen=True)
class Fault:
    """One fault to apply to one request."""

    kind: FaultKind
    retry_after: int = DEFAULT_RETRY_AFTER_SECONDS
    stall_seconds: float = DEFAULT_STALL_SECONDS


@dataclass
class _ScriptedFault:
    fault: Fault
    remaining: int
    method: str | None
    path_prefix: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


class FaultPlan:
    """Which requests fail and how: scripted faults first (in order), then a seeded random rate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripted: list[_ScriptedFault] = []
        self._rate = 0.0
        self._kinds: tuple[FaultKind, ...] = ()
        self._template = Fault(FaultKind.HTTP_500)
        self._random = random.Random()  # noqa: S311 - reproducible fault schedules, not cryptography

    def inject(self, fault: Fault, count: int, *, method: str | None, path_prefix: str | None) -> None:
        """Fail the next ``count`` requests matching ``method`` and ``path_prefix`` with ``fault``."""
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._scripted.append(_ScriptedFault(fault, count, method.upper() if method else None, path_prefix or None))

    def set_rate(self, rate: float, kinds: Iterable[FaultKind], seed: int | None, template: Fault) -> None:
        """Fail each unscripted request with probability ``rate``, drawing its kind from ``kinds``.

        The seed makes a soak test's fault sequence reproducible (for a given request order).
        """
        chosen = tuple(kinds)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if rate > 0 and not chosen:
            raise ValueError("a fault rate needs at least one fault kind")
        with self._lock:
            self._rate, self._kinds, self._template = rate, chosen, template
            self._random = random.Random(seed)  # noqa: S311 - seeded on purpose, for reproducible soaks

    def next_fault(self, method: str, path: str) -> Fault | None:
        """The fault for this request, consuming one scripted use; None lets it through."""
        with self._lock:
            for scripted in self._scripted:
                if scripted.matches(method, path):
                    scripted.remaining -= 1
                    if scripted.remaining == 0:
                        self._scripted.remove(scripted)
                    return scripted.fault
            if self._rate > 0 and self._random.random() < self._rate:
                kind = self._random.choice(self._kinds)
                return Fault(kind, self._template.retry_after, self._template.stall_seconds)
        return None

    def clear(self) -> None:
        """No more faults: scripted ones dropped, rate back to zero."""
        with self._lock:
            self._scripted.clear()
            self._rate, self._kinds = 0.0, ()

    def describe(self) -> JsonDict:
        """The pending plan as JSON, for ``GET /_sandbox/faults``."""
        with self._lock:
            scripted: list[JsonValue] = [
                {
                    "kind": s.fault.kind.value,
                    "remaining": s.remaining,
                    "method": s.method,
                    "path_prefix": s.path_prefix,
                    "retry_after": s.fault.retry_after,
                    "stall_seconds": s.fault.stall_seconds,
                }
                for s in self._scripted
            ]
            kinds: list[JsonValue] = [kind.value for kind in self._kinds]
            return {"scripted": scripted, "rate": self._rate, "kinds": kinds}


@dataclass(frozen=True)
class StoredResponse:
    """The exact answer kept under an idempotency key, replayed byte for byte."""

    status: int
    body: bytes
    request_id: str


class ClaimOutcome(StrEnum):
    """What the idempotency layer decides for an incoming keyed request."""

    EXECUTE = "execute"
    REPLAY = "replay"
    IN_USE = "in_use"
    OTHER_ENDPOINT = "other_endpoint"
    OTHER_PARAMS = "other_params"


@dataclass(frozen=True)
class Claim:
    """The decision, with the stored answer (replay) or the first request's endpoint (mismatch)."""

    outcome: ClaimOutcome
    stored: StoredResponse | None = None
    first_endpoint: str = ""


@dataclass
class _KeyEntry:
    endpoint: str
    fingerprint: str
    response: StoredResponse | None  # None while the first request is still executing


IdempotencyScope = tuple[str, str]  # (account, Idempotency-Key)


class IdempotencyStore:
    """Stripe's idempotency layer: one execution per (account, Idempotency-Key), answers replayed.

    A key is claimed before execution, so a duplicate arriving on another server thread while the
    first is running sees ``IN_USE`` (Stripe's 409) instead of executing twice.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[IdempotencyScope, _KeyEntry] = {}

    def claim(self, scope: IdempotencyScope, endpoint: str, fingerprint: str) -> Claim:
        """Decide, atomically, whether this request executes, replays, or is refused."""
        with self._lock:
            entry = self._entries.get(scope)
            if entry is None:
                self._entries[scope] = _KeyEntry(endpoint, fingerprint, None)
                return Claim(ClaimOutcome.EXECUTE)
            if entry.endpoint != endpoint:
                return Claim(ClaimOutcome.OTHER_ENDPOINT, first_endpoint=entry.endpoint)
            if entry.fingerprint != fingerprint:
                return Claim(ClaimOutcome.OTHER_PARAMS)
            if entry.response is None:
                return Claim(ClaimOutcome.IN_USE)
            return Claim(ClaimOutcome.REPLAY, stored=entry.response)

    def complete(self, scope: IdempotencyScope, response: StoredResponse) -> None:
        """Keep the answer of an execution that began, for every later retry."""
        with self._lock:
            entry = self._entries.get(scope)
            if entry is not None:
                entry.response = response

    def release(self, scope: IdempotencyScope) -> None:
        """Forget a claim whose request never began executing (validation failure, abort)."""
        with self._lock:
            entry = self._entries.get(scope)
            if entry is not None and entry.response is None:
                del self._entries[scope]

    def in_flight(self, idempotency_key: str) -> bool:
        """Whether a request with this key (under any API key) is executing right now."""
        with self._lock:
            return any(key == idempotency_key and entry.response is None for (_, key), entry in self._entries.items())

    def clear(self) -> None:
        """Forget every key."""
        with self._lock:
            self._entries.clear()

    def forget_completed(self) -> None:
        """Forget every key whose request finished (Stripe's keys expire after 24 h); in-flight ones stay."""
        with self._lock:
            self._entries = {scope: e for scope, e in self._entries.items() if e.response is None}


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


class Observations:
    """Execution counters (per operation, per idempotency key) and the request log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_operation: Counter[str] = Counter()
        self._by_key: Counter[str] = Counter()
        self._log: deque[RequestRecord] = deque(maxlen=MAX_LOGGED_REQUESTS)

    def record_execution(self, operation: str, idempotency_key: str | None) -> None:
        """Count one real execution of ``operation``."""
        with self._lock:
            self._by_operation[operation] += 1
            if idempotency_key is not None:
                self._by_key[idempotency_key] += 1

    def record_request(self, record: RequestRecord) -> None:
        """Append to the request log (bounded, oldest dropped first)."""
        with self._lock:
            self._log.append(record)

    def executions(self, operation: str | None = None) -> int:
        """Real executions of one operation, or of all operations."""
        with self._lock:
            if operation is None:
                return sum(self._by_operation.values())
            return self._by_operation[operation]

    def executions_for_key(self, idempotency_key: str) -> int:
        """Real executions carrying this idempotency key (exactly-once means 1)."""
        with self._lock:
            return self._by_key[idempotency_key]

    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def counters_json(self) -> JsonDict:
        """The counters as JSON, for ``GET /_sandbox/counters``."""
        with self._lock:
            return {
                "total": sum(self._by_operation.values()),
                "by_operation": dict[str, JsonValue](self._by_operation),
                "by_idempotency_key": dict[str, JsonValue](self._by_key),
            }

    def clear(self) -> None:
        """Zero the counters and empty the log."""
        with self._lock:
            self._by_operation.clear()
            self._by_key.clear()
            self._log.clear()
