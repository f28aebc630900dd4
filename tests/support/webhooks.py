"""Stripe events as Stripe sends them, for the tests of the webhook endpoint."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

MARKER = "client-secret-marker-7f3a"  # in every payload: must never reach the server's log


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_id: str, event_type: str, object_id: str) -> bytes:
    stripe_object = {"id": object_id, "object": event_type.split(".")[0], "client_secret": f"{object_id}_{MARKER}"}
    body = {"id": event_id, "object": "event", "type": event_type, "created": int(time.time()),
            "livemode": False, "data": {"object": stripe_object}}  # fmt: skip
    return json.dumps(body).encode()
