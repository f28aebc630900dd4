"""What a sandbox saw, for tests to assert on: real executions, and the log of requests.

Why shared: exactly-once is proven the same way against every PSP sandbox — count each real
execution under what it executed (a Stripe operation, a SEPA EndToEndId) and under the
Idempotency-Key that carried it — and every sandbox keeps a log of the requests it answered. The
shape of a log entry is each sandbox's own (it is part of its control API), so the log is generic.
Thread-safe: the servers answer each connection on its own thread.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class ExecutionCounts:
    """A consistent snapshot of an ``ExecutionCounter``."""

    total: int
    by_subject: Mapping[str, int]
    by_idempotency_key: Mapping[str, int]


class ExecutionCounter:
    """Real executions, per subject (what executed) and per Idempotency-Key; exactly-once means 1."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_subject: Counter[str] = Counter()
        self._by_key: Counter[str] = Counter()

    def record(self, subject: str, idempotency_key: str | None) -> None:
        """Count one real execution of ``subject``."""
        with self._lock:
            self._by_subject[subject] += 1
            if idempotency_key is not None:
                self._by_key[idempotency_key] += 1

    def executions(self, subject: str | None = None) -> int:
        """Real executions of one subject, or of all of them."""
        with self._lock:
            if subject is None:
                return sum(self._by_subject.values())
            return self._by_subject[subject]

    def executions_for_key(self, idempotency_key: str) -> int:
        """Real executions carrying this idempotency key."""
        with self._lock:
            return self._by_key[idempotency_key]

    def snapshot(self) -> ExecutionCounts:
        with self._lock:
            return ExecutionCounts(sum(self._by_subject.values()), dict(self._by_subject), dict(self._by_key))

    def clear(self) -> None:
        with self._lock:
            self._by_subject.clear()
            self._by_key.clear()


class RequestLog(Generic[R]):
    """The requests a sandbox answered, oldest first; bounded by ``max_entries`` (oldest dropped) if given."""

    def __init__(self, max_entries: int | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: deque[R] = deque(maxlen=max_entries)

    def append(self, entry: R) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[R]:
        """A snapshot, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
