"""Which Stripe events say that one of our resources may have moved, and which one (docs/contract.md, Webhooks).

An event is a hint, never evidence: it makes the resource it names due for a look-up through the worker's
usual status poll, and what the look-up finds goes through the finality rule like every other answer. So an
event cannot move a status by itself, and events that come late, twice or out of order cannot move one
backwards. Pure: `parse_event` reads the verified event's JSON, `due_lookup` maps it to a resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from server.domain.states import ResourceType

# The event types that trigger a look-up, and the resource whose PSP reference is the event's object id:
# a PaymentIntent (pi_…), a Refund (re_…) or a Transfer (tr_…). Every other type is answered and ignored.
STRIPE_EVENT_RESOURCES: Mapping[str, ResourceType] = MappingProxyType({
    "payment_intent.succeeded": ResourceType.PAYMENT,
    "payment_intent.payment_failed": ResourceType.PAYMENT,
    "payment_intent.requires_action": ResourceType.PAYMENT,
    "payment_intent.canceled": ResourceType.PAYMENT,
    "payment_intent.amount_capturable_updated": ResourceType.PAYMENT,
    "refund.created": ResourceType.REFUND,
    "refund.updated": ResourceType.REFUND,
    "refund.failed": ResourceType.REFUND,
    "transfer.reversed": ResourceType.PAYOUT,
})  # fmt: skip

MAX_ID_LENGTH = 255  # Stripe's ids are far shorter; anything longer is not one of them


class MalformedEvent(ValueError):
    """The event lacks what every Stripe event carries (an id, a type, the object's id)."""


@dataclass(frozen=True, slots=True)
class StripeEvent:
    id: str  # evt_…: duplicates are recognised by it
    type: str
    object_id: str | None  # data.object.id; None when the object carries none (no handled type)


@dataclass(frozen=True, slots=True)
class DueLookup:
    """Look up the resource of this type whose PSP reference is `psp_reference`, now."""

    resource: ResourceType
    psp_reference: str


def parse_event(event: Mapping[str, object]) -> StripeEvent:
    """The fields of a (verified) Stripe event that matter here; MalformedEvent when one is missing or odd."""
    data = event.get("data")
    stripe_object = data.get("object") if isinstance(data, Mapping) else None
    object_id = stripe_object.get("id") if isinstance(stripe_object, Mapping) else None
    parsed = StripeEvent(_identifier(event.get("id"), "id"), _identifier(event.get("type"), "type"), None)
    if object_id is None:
        if parsed.type in STRIPE_EVENT_RESOURCES:
            raise MalformedEvent("the event's data.object has no id")
        return parsed
    return StripeEvent(parsed.id, parsed.type, _identifier(object_id, "data.object.id"))


def due_lookup(event: StripeEvent) -> DueLookup | None:
    """The resource the event is about, or None: a type that says nothing about our resources."""
    resource = STRIPE_EVENT_RESOURCES.get(event.type)
    if resource is None or event.object_id is None:
        return None
    return DueLookup(resource, event.object_id)


def _identifier(value: object, name: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise MalformedEvent(f"the event's {name} must be a string of 1 to {MAX_ID_LENGTH} characters")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise MalformedEvent(f"the event's {name} must be printable ASCII without spaces")
    return value
