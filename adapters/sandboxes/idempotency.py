"""The idempotency layer both PSP sandboxes put in front of their rules: one execution per key.

Why shared: Stripe and the bank gateway promise the same thing for an Idempotency-Key: the first
request executes and its answer is kept; the same request again gets that answer back (a replay);
the key with a different request is refused; a request that never began executing (a validation
failure) leaves the key free for a corrected retry. Only the wording of the refusals and what a
"different request" is (the fingerprint) differ, and those stay with each sandbox. A key is claimed
before execution, so a duplicate arriving on another server thread while the first is still running
is told ``IN_USE`` instead of executing twice.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeAlias, TypeVar

R = TypeVar("R")
IdempotencyScope: TypeAlias = tuple[str, str]  # (account, Idempotency-Key)


class ClaimOutcome(StrEnum):
    """What the idempotency layer decides for an incoming keyed request."""

    EXECUTE = "execute"
    REPLAY = "replay"
    IN_USE = "in_use"
    OTHER_ENDPOINT = "other_endpoint"
    OTHER_PARAMS = "other_params"


@dataclass(frozen=True)
class Claim(Generic[R]):
    """The decision, with the stored answer (replay) or the first request's endpoint (mismatch)."""

    outcome: ClaimOutcome
    stored: R | None = None
    first_endpoint: str = ""


@dataclass
class _KeyEntry(Generic[R]):
    endpoint: str
    fingerprint: str
    response: R | None  # None while the first request is still executing


class IdempotencyStore(Generic[R]):
    """One execution per (account, Idempotency-Key); ``R`` is the answer kept for replays. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[IdempotencyScope, _KeyEntry[R]] = {}

    def claim(self, scope: IdempotencyScope, endpoint: str, fingerprint: str) -> Claim[R]:
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

    def complete(self, scope: IdempotencyScope, response: R) -> None:
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
        """Whether a request with this key (in any account) is executing right now."""
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
