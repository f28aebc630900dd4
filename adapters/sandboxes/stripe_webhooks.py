"""Webhooks out of the offline Stripe sandbox, delivered as Stripe delivers them.

Every Event the account creates (``stripe_events``) is POSTed to the registered endpoint with
Stripe's ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<payload>">`` header, signed anew
for each attempt, as the official SDK's ``stripe.Webhook.construct_event`` verifies it. Delivery is at
least once: a connection error or a non-2xx answer is retried with backoff (8 attempts in all). And,
like Stripe, the sandbox may deliver an event twice or out of order: seeded rates for soaks, and
scripted "the next one twice" / "hold the next one back" for deterministic tests.

One sender thread per sandbox, fed by a bounded queue so that the API threads never wait on a slow
endpoint; events go out one at a time in the order the ledger created them (apart from the disorder
asked for). ``stop()`` aborts a delivery in flight, so it returns promptly. Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import queue
import random
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from adapters.sandboxes.json_types import JsonDict
from adapters.sandboxes.observations import RequestLog
from adapters.sandboxes.stripe_events import Event
from adapters.sandboxes.stripe_resources import new_id

RETRY_DELAYS_SECONDS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0)
"""The waits before each retry: 8 attempts in all within about 3.5 s (Stripe's own span three days)."""
ATTEMPT_TIMEOUT_SECONDS = 5.0
HOLD_SECONDS = 1.0
"""A held-back event goes out right after the next event, or after this long if none comes."""
MAX_WAITING_EVENTS = 1_000
MAX_LOGGED_DELIVERIES = 10_000
_MAX_ANSWER_BYTES = 65_536
_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def generate_secret() -> str:
    """A fresh endpoint signing secret, shaped like Stripe's (``whsec_`` and 32 characters)."""
    return new_id("whsec", 32)


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """Stripe's ``Stripe-Signature`` value: the timestamp and the v1 HMAC-SHA256 of ``"<t>.<payload>"``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class WebhookEndpoint:
    """Where events go and the secret that signs them; checked when it is registered."""

    url: str
    secret: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a webhook URL must be an absolute http(s) URL, got {self.url!r}")
        if not self.secret:
            raise ValueError("a webhook endpoint needs a signing secret")


@dataclass(frozen=True)
class WebhookDelivery:
    """One delivery of one event, once it is finished (delivered, or given up after its attempts).

    ``status``: the endpoint's last HTTP status (None: no answer). ``duplicate``: the second delivery
    of an event; ``held``: an event sent after the one created after it.
    """

    event_id: str
    type: str
    status: int | None
    attempts: int
    delivered: bool
    error: str | None = None
    duplicate: bool = False
    held: bool = False

    def to_json(self) -> JsonDict:
        """The record as JSON, for ``GET /_sandbox/webhooks``."""
        return dict(asdict(self))


@dataclass(frozen=True)
class _Pending:
    event: Event
    endpoint: WebhookEndpoint
    duplicate: bool
    hold: bool
    generation: int


class _Disorder:
    """Which events go out twice or late: scripted ones first, then seeded rates. Not locked on its own."""

    def __init__(self, duplicate_rate: float, reorder_rate: float, seed: int | None) -> None:
        for name, rate in (("duplicate_rate", duplicate_rate), ("reorder_rate", reorder_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        self.duplicate_rate, self.reorder_rate = duplicate_rate, reorder_rate
        self.random = random.Random(seed)  # noqa: S311 - seeded on purpose, for reproducible soaks
        self.duplicates_asked = self.holds_asked = 0

    def decide(self) -> tuple[bool, bool]:
        """(send twice, hold back) for the next event."""
        duplicate = self.duplicates_asked > 0 or self.random.random() < self.duplicate_rate
        hold = self.holds_asked > 0 or self.random.random() < self.reorder_rate
        self.duplicates_asked = max(self.duplicates_asked - 1, 0)
        self.holds_asked = max(self.holds_asked - 1, 0)
        return duplicate, hold


class WebhookSender:
    """Delivers the sandbox's events to its one endpoint (none: events are not even rendered)."""

    def __init__(
        self,
        endpoint: WebhookEndpoint | None = None,
        *,
        duplicate_rate: float = 0.0,
        reorder_rate: float = 0.0,
        seed: int | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS_SECONDS,
    ) -> None:
        self._lock = threading.Lock()
        self._initial = (endpoint, duplicate_rate, reorder_rate, seed)
        self._endpoint = endpoint
        self._disorder = _Disorder(duplicate_rate, reorder_rate, seed)
        self._generation = 0  # bumped by reset(): events from before it are not delivered
        self._retry_delays = tuple(retry_delays)
        self._queue: queue.Queue[_Pending | None] = queue.Queue(MAX_WAITING_EVENTS)
        self._deliveries: RequestLog[WebhookDelivery] = RequestLog(MAX_LOGGED_DELIVERIES)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: http.client.HTTPConnection | None = None

    # ---------------------------------------------------------------------------- configuration

    def configure(self, endpoint: WebhookEndpoint | None) -> None:
        """Send later events to ``endpoint`` (None: to nobody); events already waiting keep theirs."""
        with self._lock:
            self._endpoint = endpoint

    def set_rates(self, duplicate_rate: float, reorder_rate: float, seed: int | None = None) -> None:
        """Send each event twice with ``duplicate_rate``, hold it back with ``reorder_rate`` (seeded)."""
        disorder = _Disorder(duplicate_rate, reorder_rate, seed)
        with self._lock:
            disorder.duplicates_asked = self._disorder.duplicates_asked
            disorder.holds_asked = self._disorder.holds_asked
            self._disorder = disorder

    def duplicate_next(self) -> None:
        """Deliver the next event twice (two full deliveries of the same event id and payload)."""
        with self._lock:
            self._disorder.duplicates_asked += 1

    def hold_next(self) -> None:
        """Hold the next event back and deliver it after the event that follows it."""
        with self._lock:
            self._disorder.holds_asked += 1

    def reset(self) -> None:
        """Back to the endpoint and rates it was made with; waiting events and the record are dropped."""
        endpoint, duplicate_rate, reorder_rate, seed = self._initial
        with self._lock:
            self._endpoint = endpoint
            self._disorder = _Disorder(duplicate_rate, reorder_rate, seed)
            self._generation += 1
        self._drain()
        self._deliveries.clear()

    def deliveries(self) -> list[WebhookDelivery]:
        """Every finished delivery, oldest first."""
        return self._deliveries.entries()

    # ------------------------------------------------------------------------------- event sink

    def listening(self) -> bool:
        with self._lock:
            return self._endpoint is not None

    def publish(self, event: Event) -> None:
        """Queue ``event`` for the current endpoint; never blocks (a full queue drops it, recorded)."""
        with self._lock:
            endpoint = self._endpoint
            if endpoint is None:
                return
            duplicate, hold = self._disorder.decide()
            pending = _Pending(event, endpoint, duplicate, hold, self._generation)
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            error = f"dropped: more than {MAX_WAITING_EVENTS} events waiting"
            self._deliveries.append(WebhookDelivery(event.id, event.type, None, 0, False, error))

    # -------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the sender thread (idempotent)."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="stripe-sandbox-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop promptly: a delivery in flight is aborted, waiting events are dropped. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wake the sender; a full queue wakes it anyway
        with self._lock:
            connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        thread.join(timeout=ATTEMPT_TIMEOUT_SECONDS)
        self._thread = None
        self._drain()

    def _drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()

    # ---------------------------------------------------------------------------------- sending

    def _run(self) -> None:
        held: _Pending | None = None
        held_until = 0.0
        while not self._stopping.is_set():
            timeout = max(held_until - time.monotonic(), 0.0) if held is not None else 0.5
            try:
                pending = self._queue.get(timeout=timeout)
            except queue.Empty:
                if held is not None:
                    self._deliver(held, held=True)
                    held = None
                continue
            if pending is None or pending.generation != self._current_generation():
                continue
            if pending.hold and held is None:
                held, held_until = pending, time.monotonic() + HOLD_SECONDS
                continue
            self._deliver(pending)
            if pending.duplicate:
                self._deliver(pending, duplicate=True)
            if held is not None:
                self._deliver(held, held=True)
                held = None

    def _current_generation(self) -> int:
        with self._lock:
            return self._generation

    def _deliver(self, pending: _Pending, *, duplicate: bool = False, held: bool = False) -> None:
        if pending.generation != self._current_generation():
            return
        status: int | None = None
        error: str | None = "the sandbox stopped"
        attempts = 0
        for delay in (0.0, *self._retry_delays):
            if self._stopping.wait(delay) or self._stopping.is_set():
                break
            attempts += 1
            status, error = self._post(pending.event, pending.endpoint)
            if status is not None and 200 <= status < 300:
                break
        delivered = status is not None and 200 <= status < 300
        event = pending.event
        record = WebhookDelivery(event.id, event.type, status, attempts, delivered, error, duplicate, held)
        self._deliveries.append(record)

    def _post(self, event: Event, endpoint: WebhookEndpoint) -> tuple[int | None, str | None]:
        """One attempt: the endpoint's status (None if it never answered) and what went wrong."""
        parts = urlsplit(endpoint.url)
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(parts.hostname or "", parts.port, timeout=ATTEMPT_TIMEOUT_SECONDS)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": _USER_AGENT,
            "Accept": "*/*; q=0.5, application/xml",
            "Cache-Control": "no-cache",
            "Stripe-Signature": signature_header(event.payload, endpoint.secret, int(time.time())),
        }
        with self._lock:
            if self._stopping.is_set():
                return None, "the sandbox stopped"
            self._connection = connection  # from here on stop() can abort it
        try:
            connection.connect()
            if self._stopping.is_set():  # stop() looked before there was a socket to abort
                return None, "the sandbox stopped"
            connection.request("POST", target, body=event.payload, headers=headers)
            answer = connection.getresponse()
            answer.read(_MAX_ANSWER_BYTES)
        except (OSError, http.client.HTTPException) as failure:
            return None, f"{type(failure).__name__}: {failure}"
        finally:
            with self._lock:
                self._connection = None
            connection.close()
        return answer.status, None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
