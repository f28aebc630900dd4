"""The list of resource types, one entry each: everything the engine needs to execute, recover, poll,
look up and answer a payment, a refund or a payout.

Code that must treat a resource by its type asks for its `ResourceSpec` instead of branching on the
type; adding a resource type (or an operation such as capture) means adding an entry here, its flow
(flows.py) and its order (orders.py). PostgreSQL's side of the list is storage/rows.py and the tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from server.app.deadline import Deadline
from server.app.flows import ActionFlow, Flow, PaymentFlow, PayoutFlow, RefundFlow
from server.app.orders import cancel_order, capture_order, charge_order, payout_order, refund_order
from server.app.psp import PaymentProvider, PspOutcome
from server.app.replies import ReplyEncoder
from server.app.store import ResourceReader
from server.domain.idempotency import Operation
from server.domain.ids import IdKind, format_id
from server.domain.model import Payment, PaymentAction, Payout, Refund
from server.domain.states import ResourceType

R = TypeVar("R", Payment, Refund, Payout)
PspCall = Callable[[Deadline], Awaitable[PspOutcome]]
# (resource, caller's key, its PSP, the reader) -> the call that (re)sends it and the look-up of it
PspCalls = Callable[[R, str, PaymentProvider, ResourceReader], Awaitable[tuple[PspCall, PspCall]]]


@dataclass(frozen=True, slots=True)
class ResourceSpec(Generic[R]):
    resource_type: ResourceType
    model: type[R]
    operation: Operation
    id_kind: IdKind
    flow: Flow[R]
    encode: Callable[[ReplyEncoder, R], bytes]
    load: Callable[[ResourceReader, str, uuid.UUID], Awaitable[R | None]]
    psp_calls: PspCalls[R]

    def public_id(self, resource: R) -> str:
        return format_id(self.id_kind, resource.id)


async def _payment_calls(
    payment: Payment, key: str, psp: PaymentProvider, reader: ResourceReader
) -> tuple[PspCall, PspCall]:
    order, reference = charge_order(payment, key), payment.psp_reference
    return (lambda d: psp.charge(order, d)), (lambda d: psp.lookup(order, reference, d))


async def _refund_calls(
    refund: Refund, key: str, psp: PaymentProvider, reader: ResourceReader
) -> tuple[PspCall, PspCall]:
    charge = refund.payment_psp_reference
    if charge is None:  # a refund claimed before the charge's reference was recorded on it
        payment = await reader.get_payment(refund.client_id, refund.payment_id)
        charge = payment.psp_reference if payment else None
    order, reference = refund_order(refund, charge, key), refund.psp_reference
    return (lambda d: psp.refund(order, d)), (lambda d: psp.lookup(order, reference, d))


async def _payout_calls(
    payout: Payout, key: str, psp: PaymentProvider, reader: ResourceReader
) -> tuple[PspCall, PspCall]:
    order, reference = payout_order(payout, key), payout.psp_reference
    return (lambda d: psp.payout(order, d)), (lambda d: psp.lookup(order, reference, d))


PAYMENT: ResourceSpec[Payment] = ResourceSpec(
    ResourceType.PAYMENT, Payment, Operation.CHARGE, IdKind.PAYMENT, PaymentFlow(),
    lambda encoder, payment: encoder.charge(payment), lambda reader, client, id_: reader.get_payment(client, id_),
    _payment_calls,
)  # fmt: skip
REFUND: ResourceSpec[Refund] = ResourceSpec(
    ResourceType.REFUND, Refund, Operation.REFUND, IdKind.REFUND, RefundFlow(),
    lambda encoder, refund: encoder.refund(refund), lambda reader, client, id_: reader.get_refund(client, id_),
    _refund_calls,
)  # fmt: skip
PAYOUT: ResourceSpec[Payout] = ResourceSpec(
    ResourceType.PAYOUT, Payout, Operation.PAYOUT, IdKind.PAYOUT, PayoutFlow(),
    lambda encoder, payout: encoder.payout(payout), lambda reader, client, id_: reader.get_payout(client, id_),
    _payout_calls,
)  # fmt: skip

SPECS: tuple[ResourceSpec[Any], ...] = (PAYMENT, REFUND, PAYOUT)
_BY_MODEL: dict[type, ResourceSpec[Any]] = {spec.model: spec for spec in SPECS}
_BY_KIND: dict[IdKind, ResourceSpec[Any]] = {spec.id_kind: spec for spec in SPECS}


def spec_of(resource: Payment | Refund | Payout) -> ResourceSpec[Any]:
    """The entry for a resource (typed loosely: one entry serves the three resource types)."""
    return _BY_MODEL[type(resource)]


def spec_for_kind(kind: IdKind) -> ResourceSpec[Any]:
    return _BY_KIND[kind]


# -- actions on an existing resource: capture and cancel of a payment -----------------------------


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """An operation on a stored payment (its key's resource is the payment): its flow and PSP calls.
    The parameters every attempt sends are the payment's action under way (Payment.action)."""

    operation: Operation
    flow: ActionFlow
    psp_calls: PspCalls[Payment]


async def _capture_calls(
    payment: Payment, key: str, psp: PaymentProvider, reader: ResourceReader
) -> tuple[PspCall, PspCall]:
    order = capture_order(payment, _action(payment, key))
    return (lambda d: psp.capture(order, d)), (lambda d: psp.lookup(order, payment.psp_reference, d))


async def _cancel_calls(
    payment: Payment, key: str, psp: PaymentProvider, reader: ResourceReader
) -> tuple[PspCall, PspCall]:
    order = cancel_order(payment, _action(payment, key))
    return (lambda d: psp.cancel(order, d)), (lambda d: psp.lookup(order, payment.psp_reference, d))


def _action(payment: Payment, key: str) -> PaymentAction:
    if payment.action is None or payment.action.key != key:
        # An unfinished capture or cancel key always names the payment's action under way (they are
        # cleared together); anything else would send the PSP a request nobody claimed.
        raise RuntimeError(f"no capture or cancel under way on this payment for key {key!r}")
    return payment.action


ACTIONS: dict[Operation, ActionSpec] = {
    Operation.CAPTURE: ActionSpec(Operation.CAPTURE, ActionFlow(Operation.CAPTURE), _capture_calls),
    Operation.CANCEL: ActionSpec(Operation.CANCEL, ActionFlow(Operation.CANCEL), _cancel_calls),
}


def executed_by(resource: Payment | Refund | Payout, operation: Operation | None) -> ResourceSpec[Any] | ActionSpec:
    """What executes `operation` on `resource`: an action's entry, or the resource type's own."""
    if operation in ACTIONS:
        return ACTIONS[operation]
    return spec_of(resource)
