"""The use case of a verified Stripe event: record it once, make its resource due, wake the worker.

It never calls the PSP and never changes a status: the worker's status poll looks the resource up and
the finality rule judges the answer (see server/app/webhook_events.py). So the endpoint answers in the
time of one SQL statement, and a duplicate, late or reordered event can do no harm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from server.app.webhook_events import DueLookup, StripeEvent, due_lookup

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Receipt:
    recorded: bool  # false: the event id was seen before (a duplicate delivery)
    due: int  # resources made due for a look-up (0: unknown to us, or already final)


class WebhookStore(Protocol):
    async def record(self, event: StripeEvent, lookup: DueLookup) -> Receipt:
        """Records the event and, if it is new, makes the resource due now, atomically."""
        ...


class Intake(StrEnum):
    """What became of an event; each is answered 200."""

    IGNORED = "ignored"  # a type that says nothing about our resources: not recorded
    DUPLICATE = "duplicate"  # recorded before: nothing done
    NOT_FOUND = "not_found"  # recorded; no resource of ours awaits the PSP under that reference
    DUE = "due"  # recorded; the resource is due for a look-up and the worker was woken


class WebhookIntake:
    def __init__(self, store: WebhookStore, wake_worker: Callable[[], None]) -> None:
        self._store = store
        self._wake_worker = wake_worker

    async def accept(self, event: StripeEvent) -> Intake:
        lookup = due_lookup(event)
        if lookup is None:
            outcome = Intake.IGNORED
        else:
            receipt = await self._store.record(event, lookup)
            outcome = Intake.DUE if receipt.due else Intake.NOT_FOUND if receipt.recorded else Intake.DUPLICATE
        if outcome is Intake.DUE:
            self._wake_worker()
        # The event id, type and object id only: never the payload (a PaymentIntent holds its client secret).
        log.info("stripe webhook event %s", outcome, extra={"event_id": event.id, "event_type": event.type,
                                                            "object_id": event.object_id})  # fmt: skip
        return outcome
