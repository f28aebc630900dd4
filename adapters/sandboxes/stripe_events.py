"""Stripe's Event object for the offline sandbox: what the account announces when an object changes.

Why apart from delivery (``stripe_webhooks``): the rules decide *that* something happened and the
ledger stamps it with the request that caused it; how an endpoint hears of it (signing, retries,
duplicates) is another concern. An event is rendered once, to the bytes every delivery sends, so a
retried or duplicated delivery carries the same payload, as Stripe's does. Pure: no state, no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from adapters.sandboxes.json_types import JsonDict
from adapters.sandboxes.stripe_resources import new_id
from adapters.sandboxes.stripe_wire import json_bytes


@dataclass(frozen=True)
class RequestOrigin:
    """The API request behind an event (Event.request); both None for Stripe's own later changes."""

    id: str | None = None
    idempotency_key: str | None = None


AUTOMATIC = RequestOrigin()
"""Changes no API request caused: settlements, the 3-D Secure page, ``set_status``."""


@dataclass(frozen=True)
class Event:
    """One Event object, already rendered: ``payload`` is the exact body every delivery sends."""

    id: str
    type: str
    created: int
    payload: bytes


class EventSink(Protocol):
    """Where the ledger's events go (the webhook sender); ``listening`` lets it skip rendering."""

    def listening(self) -> bool: ...

    def publish(self, event: Event) -> None: ...


def new_event(event_type: str, data_object: JsonDict, *, api_version: str, origin: RequestOrigin) -> Event:
    """Stripe's Event object around a snapshot of the changed object, in the API's JSON layout."""
    event_id, created = new_id("evt"), int(time.time())
    body: JsonDict = {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": origin.id, "idempotency_key": origin.idempotency_key},
        "type": event_type,
    }
    return Event(event_id, event_type, created, json_bytes(body))
