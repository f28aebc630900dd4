"""The pure rule of Stripe webhooks in: which events name which resource (server/app/webhook_events.py)."""

from __future__ import annotations

from typing import Any

import pytest

from server.app.webhook_events import (
    STRIPE_EVENT_RESOURCES,
    DueLookup,
    MalformedEvent,
    StripeEvent,
    due_lookup,
    parse_event,
)
from server.domain.states import ResourceType


def event(event_type: str, object_id: object = "pi_1", event_id: object = "evt_1") -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": event_type, "data": {"object": {"id": object_id}}}


@pytest.mark.parametrize(
    ("event_type", "object_id", "resource"),
    [
        ("payment_intent.succeeded", "pi_3", ResourceType.PAYMENT),
        ("payment_intent.payment_failed", "pi_3", ResourceType.PAYMENT),
        ("payment_intent.requires_action", "pi_3", ResourceType.PAYMENT),
        ("payment_intent.canceled", "pi_3", ResourceType.PAYMENT),
        ("payment_intent.amount_capturable_updated", "pi_3", ResourceType.PAYMENT),
        ("refund.created", "re_3", ResourceType.REFUND),
        ("refund.updated", "re_3", ResourceType.REFUND),
        ("refund.failed", "re_3", ResourceType.REFUND),
        ("transfer.reversed", "tr_3", ResourceType.PAYOUT),
    ],
)
def test_each_covered_event_makes_its_resource_due_by_the_objects_id(
    event_type: str, object_id: str, resource: ResourceType
) -> None:
    parsed = parse_event(event(event_type, object_id, "evt_9"))
    assert parsed == StripeEvent("evt_9", event_type, object_id)
    assert due_lookup(parsed) == DueLookup(resource, object_id)


def test_the_covered_types_are_exactly_the_nine_of_the_spec() -> None:
    assert len(STRIPE_EVENT_RESOURCES) == 9
    prefixes = {ResourceType.PAYMENT: "payment_intent.", ResourceType.REFUND: "refund.",
                ResourceType.PAYOUT: "transfer."}  # fmt: skip
    assert all(name.startswith(prefixes[resource]) for name, resource in STRIPE_EVENT_RESOURCES.items())


@pytest.mark.parametrize(
    "event_type", ["charge.succeeded", "payment_intent.created", "customer.created", "transfer.created", "x"]
)
def test_other_types_name_no_resource(event_type: str) -> None:
    assert due_lookup(parse_event(event(event_type))) is None


def test_another_type_may_come_without_an_object_id() -> None:
    parsed = parse_event({"id": "evt_2", "type": "balance.available", "data": {"object": {"object": "balance"}}})
    assert parsed == StripeEvent("evt_2", "balance.available", None)
    assert due_lookup(parsed) is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"id": "evt_1", "type": "payment_intent.succeeded"},  # no data
        {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {}}},  # no object id
        {"id": "evt_1", "type": "payment_intent.succeeded", "data": []},
        event("payment_intent.succeeded", event_id=None),
        event("payment_intent.succeeded", event_id=17),
        event("payment_intent.succeeded", event_id=""),
        event("payment_intent.succeeded", event_id="evt_" + "x" * 300),
        event("payment_intent.succeeded", event_id="evt 1"),
        event("payment_intent.succeeded", event_id="evt_\n1"),
        event("payment_intent.succeeded", object_id=["pi_1"]),
        event("payment_intent.succeeded", object_id="pi_é"),
        {"id": "evt_1", "type": None, "data": {"object": {"id": "pi_1"}}},
    ],
)
def test_a_malformed_event_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(body)
