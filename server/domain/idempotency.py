"""Idempotency-key rules: what a valid key is, the request fingerprint, the PSP-side key, and the
decision table for a key that already exists (`classify`).

The PSP key is derived, not random, so that every attempt of one logical operation — retries, a resume
after a crash, a recovery worker on another machine — sends the PSP the same key.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from enum import StrEnum

MAX_KEY_LENGTH = 255


class Operation(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    PAYOUT = "payout"
    CAPTURE = "capture"  # of a payment: its key's resource is the payment
    CANCEL = "cancel"  # of a payment, likewise


class RecoveryPoint(StrEnum):
    """Where an execution stands: how a retry or the recovery worker resumes it (the SQL's literals)."""

    STARTED = "started"  # key claimed, resource created; the PSP may or may not have been reached
    FINISHED = "finished"  # outcome recorded and a reply stored


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the store holds for an existing key, as far as the decision needs it."""

    operation: str
    fingerprint: bytes
    recovery_point: RecoveryPoint
    resource_id: uuid.UUID | None  # None: a business error was stored before a resource existed
    has_reply: bool  # a stored reply body (pruned after the retention period)
    reply_final: bool  # the stored reply shows a state the PSP has finished
    lease_left_seconds: float  # > 0 while an execution holds the key


@dataclass(frozen=True, slots=True)
class Replay:
    """Send the stored reply again, byte for byte."""


@dataclass(frozen=True, slots=True)
class Rebuild:
    """Answer the resource's current state (the stored reply was pruned, or showed an unfinished state).

    `resource_id` is None only for a business error pruned before errors were kept (NOT_FOUND then)."""

    resource_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Reused:
    """The key was used for a different request: IDEMPOTENCY_KEY_REUSED."""


@dataclass(frozen=True, slots=True)
class Busy:
    """Another execution holds the key: wait a little, or IDEMPOTENCY_KEY_IN_USE."""

    retry_after_seconds: float


@dataclass(frozen=True, slots=True)
class TakeOver:
    """The execution stopped at its recovery point: resume it (a compare-and-set on the lease)."""


Decision = Replay | Rebuild | Reused | Busy | TakeOver


def classify(existing: KeyRecord, operation: Operation, request_fingerprint: bytes) -> Decision:
    """The decision table for a request whose key exists, in order: reused → replay → rebuild → in flight
    → take over. Pure, so the store applies it inside the claim's own round trip."""
    if existing.operation != operation.value or existing.fingerprint != request_fingerprint:
        return Reused()
    if existing.recovery_point is RecoveryPoint.FINISHED:
        if existing.has_reply and (existing.reply_final or existing.resource_id is None):
            return Replay()
        return Rebuild(existing.resource_id)
    if existing.lease_left_seconds > 0:
        return Busy(min(max(existing.lease_left_seconds, 0.05), 1.0))
    return TakeOver()


def key_problem(key: str) -> str | None:
    """Why the key is unacceptable, or None when it is a valid key."""
    if not key:
        return "is required"
    if len(key) > MAX_KEY_LENGTH:
        return f"must be at most {MAX_KEY_LENGTH} characters"
    if not (key.isascii() and key.isprintable()):  # printable ASCII, 0x20-0x7E
        return "must be printable ASCII"
    return None


def fingerprint(rpc_name: str, canonical_request: bytes) -> bytes:
    """SHA-256 over the RPC name and the deterministic encoding of the request without its key."""
    digest = hashlib.sha256()
    digest.update(rpc_name.encode())
    digest.update(b"\x00")
    digest.update(canonical_request)
    return digest.digest()


def psp_idempotency_key(client_id: str, key: str, operation: Operation) -> str:
    """A stable key for the PSP, unique per (client, key, operation), revealing neither."""
    digest = hashlib.sha256(f"{client_id}\x00{operation.value}\x00{key}".encode()).hexdigest()
    return f"{operation.value}-{digest[:48]}"
