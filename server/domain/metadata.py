"""Caller metadata: what a charge may carry to the PSP next to the service's own keys.

The limits are the strictest PSP's, Stripe's ("Metadata", Stripe API reference): at most 50 keys, keys
of at most 40 characters without square brackets, values of at most 500 characters. The service adds
its own keys to every PSP object (our ids and the caller's idempotency key, so an operation can always be
found again), so a caller gets what is left. Those keys live under a prefix callers may not use, so a
caller's key can never overwrite ours nor ours a caller's. PostgreSQL's jsonb cannot hold NUL, and no
PSP wants control characters, so values may not contain them.
"""

from __future__ import annotations

import re

SERVICE_PREFIX = "payments."
PSP_MAX_KEYS = 50
SERVICE_KEYS_MAX = 3  # a charge: payment id, idempotency key, customer id
MAX_ENTRIES = PSP_MAX_KEYS - SERVICE_KEYS_MAX
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500

_CONTROL = re.compile("[\x00-\x1f\x7f]")


def service_key(name: str) -> str:
    """The PSP metadata key the service itself uses for `name` (e.g. payments.payment_id)."""
    return SERVICE_PREFIX + name


def key_problem(key: str) -> str | None:
    if not key or len(key) > MAX_KEY_LENGTH:
        return f"keys must be 1-{MAX_KEY_LENGTH} characters"
    if not (key.isascii() and key.isprintable()):
        return "keys must be printable ASCII"
    if "[" in key or "]" in key:
        return "keys must not contain square brackets"
    if key.startswith(SERVICE_PREFIX):
        return f"keys starting with {SERVICE_PREFIX!r} are the service's own"
    return None


def value_problem(value: str) -> str | None:
    if len(value) > MAX_VALUE_LENGTH:
        return f"must be at most {MAX_VALUE_LENGTH} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None
