"""Fault injection shared by the PSP sandboxes: what can go wrong, and which request it hits.

Why one module: the Stripe and bank sandboxes promise the same faults with the same meaning (what the
client sees, and whether the work was done), so a soak test drives both with one vocabulary; and the
rule that picks the faulted request is the same everywhere: scripted faults first, oldest first, each
used up one request at a time, then a seeded random rate. How each PSP words its error answers stays
with that sandbox (``stripe_faults``, ``bank_sandbox``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from adapters.sandboxes.json_types import JsonDict, JsonValue

DEFAULT_STALL_SECONDS = 5.0
DEFAULT_RETRY_AFTER_SECONDS = 1


class FaultKind(StrEnum):
    """What can go wrong between a client and a PSP, and whether the work was done.

    - ``http_500``: a 500 error answer; nothing executed, nothing stored under the key.
    - ``http_429``: rate limited, with ``Retry-After``; nothing executed.
    - ``lock_timeout`` (Stripe only): 429 with code ``lock_timeout`` and ``Stripe-Should-Retry: true``.
    - ``http_409`` (Stripe only): 409 conflict with ``Stripe-Should-Retry: true``; nothing executed.
    - ``stall``: hold the request ``stall_seconds`` (past the client's timeout), then end the connection
      without an answer (Stripe closes it, the bank resets it); nothing executed.
    - ``delay`` (Stripe only): hold the idempotency key in flight ``stall_seconds``, then execute and
      answer normally (a slow Stripe: concurrent duplicates see 409).
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


F = TypeVar("F")


@dataclass
class ScriptedFault(Generic[F]):
    """A fault promised to the next ``remaining`` requests that match ``method`` and ``path_prefix``."""

    fault: F
    remaining: int
    method: str | None
    path_prefix: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


class ScriptedFaults(Generic[F]):
    """The queue of scripted faults: the oldest matching one is used first, one request per use.

    Not locked on its own: its owner (``FaultPlan``, the in-process PSP) holds its lock around it.
    """

    def __init__(self) -> None:
        self._queue: list[ScriptedFault[F]] = []

    def add(self, fault: F, count: int, method: str | None = None, path_prefix: str | None = None) -> None:
        self._queue.append(ScriptedFault(fault, count, method.upper() if method else None, path_prefix or None))

    def take(self, method: str = "", path: str = "") -> F | None:
        """The fault for this request, counting one use down; None when no scripted fault matches."""
        for index, scripted in enumerate(self._queue):
            if scripted.matches(method, path):
                scripted.remaining -= 1
                if scripted.remaining <= 0:
                    del self._queue[index]
                return scripted.fault
        return None

    def pending(self) -> list[ScriptedFault[F]]:
        return list(self._queue)

    def clear(self) -> None:
        self._queue.clear()


@dataclass(frozen=True)
class _Rate:
    rate: float = 0.0
    kinds: tuple[FaultKind, ...] = ()
    weights: tuple[float, ...] | None = None  # None: every kind equally likely
    method: str | None = None
    path_prefix: str | None = None
    template: Fault = field(default_factory=lambda: Fault(FaultKind.HTTP_500))

    def applies(self, method: str, path: str) -> bool:
        return (
            self.rate > 0
            and (self.method is None or self.method == method)
            and (self.path_prefix is None or path.startswith(self.path_prefix))
        )


class FaultPlan:
    """Which requests fail and how: scripted faults first (in order), then a seeded random rate.

    Thread-safe: the servers answer each connection on its own thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripted: ScriptedFaults[Fault] = ScriptedFaults()
        self._rate = _Rate()
        self._random = random.Random()  # noqa: S311 - reproducible fault schedules, not cryptography

    def inject(self, fault: Fault, count: int, *, method: str | None, path_prefix: str | None) -> None:
        """Fail the next ``count`` requests matching ``method`` and ``path_prefix`` with ``fault``."""
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._scripted.add(fault, count, method, path_prefix)

    def set_rate(
        self,
        rate: float,
        kinds: Iterable[FaultKind],
        seed: int | None,
        template: Fault,
        *,
        weights: Iterable[float] | None = None,
        method: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Fail each unscripted matching request with probability ``rate``, its kind drawn from ``kinds``.

        ``weights`` (one per kind) skew the draw; without them every kind is equally likely. The seed
        makes a soak test's fault sequence reproducible (for a given request order).
        """
        chosen = tuple(kinds)
        odds = None if weights is None else tuple(weights)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if rate > 0 and not chosen:
            raise ValueError("a fault rate needs at least one fault kind")
        if odds is not None and len(odds) != len(chosen):
            raise ValueError("a fault rate needs one weight per fault kind")
        with self._lock:
            self._rate = _Rate(rate, chosen, odds, method.upper() if method else None, path_prefix or None, template)
            self._random = random.Random(seed)  # noqa: S311 - seeded on purpose, for reproducible soaks

    def next_fault(self, method: str, path: str) -> Fault | None:
        """The fault for this request, consuming one scripted use; None lets it through."""
        with self._lock:
            scripted = self._scripted.take(method, path)
            if scripted is not None:
                return scripted
            rate = self._rate
            if not rate.applies(method, path) or self._random.random() >= rate.rate:
                return None
            if rate.weights is None:
                kind = self._random.choice(rate.kinds)
            else:
                kind = self._random.choices(rate.kinds, weights=rate.weights)[0]
            return Fault(kind, rate.template.retry_after, rate.template.stall_seconds)

    def clear(self) -> None:
        """No more faults: scripted ones dropped, rate back to zero."""
        with self._lock:
            self._scripted.clear()
            self._rate = _Rate(template=self._rate.template)

    def describe(self) -> JsonDict:
        """The pending plan as JSON, for the Stripe sandbox's ``GET /_sandbox/faults``."""
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
                for s in self._scripted.pending()
            ]
            kinds: list[JsonValue] = [kind.value for kind in self._rate.kinds]
            return {"scripted": scripted, "rate": self._rate.rate, "kinds": kinds}
