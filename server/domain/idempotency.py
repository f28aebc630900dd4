"""Idempotency-key rules: what a valid key is, the request fingerprint, and the PSP-side key.

The PSP key is derived, not random, so that every attempt of one logical operation — retries, a resume
after a crash, a recovery worker on another machine — sends the PSP the same key.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

MAX_KEY_LENGTH = 255


class Operation(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    PAYOUT = "payout"


class RecoveryPoint(StrEnum):
    """Where an execution stands: how a retry or the recovery worker resumes it."""

    STARTED = "started"  # key claimed, resource created; the PSP may or may not have been reached
    FINISHED = "finished"  # outcome recorded and a reply stored


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
