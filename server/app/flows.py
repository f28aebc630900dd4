"""How each resource type reacts to a PSP outcome: pure decisions, no I/O.

A flow turns an outcome into the status transition to record. An ambiguous outcome never becomes a
failure: the resource goes to (or stays in) its in-progress status and the key stays resumable.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from server.app.psp import OutcomeKind, PspOutcome
from server.app.store import RefundSettlement, Transition
from server.domain.model import Failure, Payment, Payout, Refund
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus, ResourceType, can_transition

R = TypeVar("R", Payment, Refund, Payout)

_UNKNOWN_OUTCOME = Failure("psp_outcome_unknown", "the PSP returned an outcome this service cannot map")


class Flow(Protocol, Generic[R]):
    resource_type: ResourceType

    def decide(self, resource: R, outcome: PspOutcome, actor: str, at: datetime) -> Transition | None: ...

    def in_progress(self, resource: R, actor: str, at: datetime) -> Transition | None: ...

    def reconcile(self, resource: R, actor: str, at: datetime) -> Transition | None: ...

    def apply(self, resource: R, transition: Transition) -> R: ...

    def storable(self, resource: R) -> R:
        """The resource as a stored reply may show it: without what only this answer may carry."""
        ...


def _transition(
    resource: Payment | Refund | Payout,
    rtype: ResourceType,
    to_status: str,
    outcome: PspOutcome | None,
    actor: str,
    at: datetime,
    reason: str,
    *,
    refund_settlement: str | None = None,
    facts: dict[str, object] | None = None,
) -> Transition | None:
    current = str(resource.status)
    reference = outcome.psp_reference if outcome else None
    data = outcome.data if outcome else {}
    facts = facts or {}
    if current == to_status and (reference is None or reference == resource.psp_reference) and not data \
            and not facts:  # fmt: skip
        return None
    if current != to_status and not can_transition(rtype, current, to_status):
        return None
    return Transition(
        resource=rtype,
        resource_id=resource.id,
        client_id=resource.client_id,
        from_status=current,
        to_status=to_status,
        actor=actor,
        reason=reason,
        at=at,
        psp_reference=reference,
        failure=outcome.failure if outcome else None,
        psp_data=dict(data),
        refund_settlement=refund_settlement,
        **facts,  # type: ignore[arg-type] # a payment's facts, named as Transition's fields (_payment_facts)
    )


def _needs_reconciliation(resource: Payment | Refund | Payout, rtype: ResourceType, actor: str,
                          at: datetime) -> Transition | None:  # fmt: skip
    return _transition(resource, rtype, "REQUIRES_RECONCILIATION", None, actor, at, "recovery:no_evidence")


def _applied(resource: R, transition: Transition) -> R:
    return dataclasses.replace(
        resource,
        status=type(resource.status)(transition.to_status),
        psp_reference=transition.psp_reference or resource.psp_reference,
        failure=transition.failure if transition.failure else resource.failure,
        updated_at=transition.at,
    )


class PaymentFlow:
    resource_type = ResourceType.PAYMENT
    _TARGET = {
        OutcomeKind.SUCCEEDED: PaymentStatus.SUCCEEDED,
        OutcomeKind.FAILED: PaymentStatus.FAILED,
        OutcomeKind.PENDING: PaymentStatus.PROCESSING,
        OutcomeKind.REQUIRES_ACTION: PaymentStatus.REQUIRES_ACTION,
        OutcomeKind.AUTHORIZED: PaymentStatus.REQUIRES_CAPTURE,
        OutcomeKind.CANCELED: PaymentStatus.CANCELED,
        OutcomeKind.UNKNOWN: PaymentStatus.PROCESSING,
    }

    def decide(self, resource: Payment, outcome: PspOutcome, actor: str, at: datetime) -> Transition | None:
        target = self._TARGET.get(outcome.kind)
        if target is None:
            outcome = dataclasses.replace(outcome, kind=OutcomeKind.FAILED, failure=_UNKNOWN_OUTCOME)
            target = PaymentStatus.FAILED
        transition = _transition(
            resource, self.resource_type, target, outcome, actor, at, f"psp:{outcome.kind}",
            facts=_payment_facts(resource, target, outcome),
        )  # fmt: skip
        if outcome.next_action is None or target is not PaymentStatus.REQUIRES_ACTION:
            return transition
        if transition is None:  # already REQUIRES_ACTION: the answer still carries what the customer must do
            status = str(resource.status)
            transition = Transition(
                resource=self.resource_type, resource_id=resource.id, client_id=resource.client_id,
                from_status=status, to_status=status, actor=actor, reason=f"psp:{outcome.kind}", at=at,
            )  # fmt: skip
        return dataclasses.replace(transition, next_action=outcome.next_action)

    def in_progress(self, resource: Payment, actor: str, at: datetime) -> Transition | None:
        return _transition(
            resource, self.resource_type, PaymentStatus.PROCESSING, None, actor, at, "psp:outcome_unknown"
        )

    def reconcile(self, resource: Payment, actor: str, at: datetime) -> Transition | None:
        return _needs_reconciliation(resource, self.resource_type, actor, at)

    def apply(self, resource: Payment, transition: Transition) -> Payment:
        applied = _applied(resource, transition)
        changes: dict[str, object] = {}
        if transition.captured_minor is not None:
            changes["amount_captured"] = transition.captured_minor
        if transition.capturable_minor is not None:
            changes["amount_capturable"] = transition.capturable_minor
        if transition.capturable_until is not None:
            changes["capturable_until"] = transition.capturable_until
        if transition.cancellation_reason is not None:
            changes["cancellation_reason"] = transition.cancellation_reason
        if transition.action_done is not None and resource.action and resource.action.key == transition.action_done:
            changes["action"] = None
        changes["next_action"] = transition.next_action
        return dataclasses.replace(applied, **changes)  # type: ignore[arg-type]

    def storable(self, resource: Payment) -> Payment:
        return dataclasses.replace(resource, next_action=None) if resource.next_action else resource


def _payment_facts(payment: Payment, target: PaymentStatus, outcome: PspOutcome) -> dict[str, object]:
    """What the money now looks like: captured and capturable amounts, as the PSP reports them or, where
    it does not, as the payment's own capture under way implies."""
    action = payment.action if payment.action and payment.action.operation == "capture" else None
    facts: dict[str, object] = {}
    if target is PaymentStatus.SUCCEEDED:
        captured = outcome.amount_received
        if captured is None:
            captured = payment.amount_captured + action.amount_minor if action else payment.amount.amount_minor
        facts["captured_minor"] = captured
        facts["capturable_minor"] = 0
    elif target is PaymentStatus.REQUIRES_CAPTURE:
        capturable = outcome.amount_capturable
        captured = outcome.amount_received
        if action and str(payment.status) == PaymentStatus.REQUIRES_CAPTURE:  # a partial, non-final capture
            captured = payment.amount_captured + action.amount_minor if captured is None else captured
            capturable = payment.amount_capturable - action.amount_minor if capturable is None else capturable
        elif capturable is None:
            capturable = payment.amount.amount_minor - payment.amount_captured
        if captured is not None and captured != payment.amount_captured:
            facts["captured_minor"] = captured
        if capturable != payment.amount_capturable:
            facts["capturable_minor"] = capturable
        if outcome.capturable_until is not None and outcome.capturable_until != payment.capturable_until:
            facts["capturable_until"] = outcome.capturable_until
    elif target in (PaymentStatus.CANCELED, PaymentStatus.FAILED) and payment.amount_capturable:
        facts["capturable_minor"] = 0
    return facts


class ActionFlow:
    """A capture or cancel of a payment: the payment's flow, and the finish of the action under way.

    Its outcome is the payment's state at the PSP afterwards, decided like any other look-up of it; a
    transition is always recorded (if only to clear the action), so the action's key and the payment
    row finish together.
    """

    resource_type = ResourceType.PAYMENT

    def __init__(self, operation: str) -> None:
        self._operation = operation
        self._payments = PaymentFlow()

    def decide(self, resource: Payment, outcome: PspOutcome, actor: str, at: datetime) -> Transition | None:
        if outcome.kind is OutcomeKind.FAILED:
            # A refused capture or cancel does not fail the payment: the caller sees it as it stands.
            return self._finished(resource, None, actor, at, f"{self._operation}:refused")
        transition = self._payments.decide(resource, outcome, actor, at)
        if transition is not None and transition.to_status == str(PaymentStatus.CANCELED) and resource.action:
            transition = dataclasses.replace(transition, cancellation_reason=resource.action.reason or None)
        return self._finished(resource, transition, actor, at, f"psp:{outcome.kind}")

    def in_progress(self, resource: Payment, actor: str, at: datetime) -> Transition | None:
        return None  # the payment keeps its status, and its action stays under way

    def reconcile(self, resource: Payment, actor: str, at: datetime) -> Transition | None:
        return self._finished(resource, self._payments.reconcile(resource, actor, at), actor, at, "recovery")

    def apply(self, resource: Payment, transition: Transition) -> Payment:
        return self._payments.apply(resource, transition)

    def storable(self, resource: Payment) -> Payment:
        return self._payments.storable(resource)

    def _finished(
        self, resource: Payment, transition: Transition | None, actor: str, at: datetime, reason: str
    ) -> Transition | None:
        key = resource.action.key if resource.action else None
        if key is None:
            return transition
        if transition is None:
            status = str(resource.status)
            transition = Transition(
                resource=self.resource_type, resource_id=resource.id, client_id=resource.client_id,
                from_status=status, to_status=status, actor=actor, reason=reason, at=at,
            )  # fmt: skip
        return dataclasses.replace(transition, action_done=key)


class RefundFlow:
    resource_type = ResourceType.REFUND
    _TARGET = {
        OutcomeKind.SUCCEEDED: RefundStatus.SUCCEEDED,
        OutcomeKind.FAILED: RefundStatus.FAILED,
        OutcomeKind.PENDING: RefundStatus.PENDING,
        OutcomeKind.UNKNOWN: RefundStatus.PENDING,
    }

    def decide(self, resource: Refund, outcome: PspOutcome, actor: str, at: datetime) -> Transition | None:
        target = self._TARGET.get(outcome.kind)
        if target is None:
            outcome = dataclasses.replace(outcome, kind=OutcomeKind.FAILED, failure=_UNKNOWN_OUTCOME)
            target = RefundStatus.FAILED
        settlement = {
            RefundStatus.SUCCEEDED: RefundSettlement.APPLY,
            RefundStatus.FAILED: RefundSettlement.RELEASE,
        }.get(target)
        return _transition(
            resource,
            self.resource_type,
            target,
            outcome,
            actor,
            at,
            f"psp:{outcome.kind}",
            refund_settlement=settlement,
        )

    def in_progress(self, resource: Refund, actor: str, at: datetime) -> Transition | None:
        return None  # a refund stays PENDING until the PSP's answer is known

    def reconcile(self, resource: Refund, actor: str, at: datetime) -> Transition | None:
        return _needs_reconciliation(resource, self.resource_type, actor, at)

    def apply(self, resource: Refund, transition: Transition) -> Refund:
        return _applied(resource, transition)

    def storable(self, resource: Refund) -> Refund:
        return resource


class PayoutFlow:
    resource_type = ResourceType.PAYOUT
    _TARGET = {
        OutcomeKind.SUCCEEDED: PayoutStatus.PAID,
        OutcomeKind.FAILED: PayoutStatus.FAILED,
        OutcomeKind.PENDING: PayoutStatus.PROCESSING,
        OutcomeKind.RETURNED: PayoutStatus.RETURNED,
        OutcomeKind.UNKNOWN: PayoutStatus.PROCESSING,
    }

    def decide(self, resource: Payout, outcome: PspOutcome, actor: str, at: datetime) -> Transition | None:
        target = self._TARGET.get(outcome.kind)
        if target is None:
            outcome = dataclasses.replace(outcome, kind=OutcomeKind.FAILED, failure=_UNKNOWN_OUTCOME)
            target = PayoutStatus.FAILED
        return _transition(resource, self.resource_type, target, outcome, actor, at, f"psp:{outcome.kind}")

    def in_progress(self, resource: Payout, actor: str, at: datetime) -> Transition | None:
        return _transition(
            resource, self.resource_type, PayoutStatus.PROCESSING, None, actor, at, "psp:outcome_unknown"
        )

    def reconcile(self, resource: Payout, actor: str, at: datetime) -> Transition | None:
        return _needs_reconciliation(resource, self.resource_type, actor, at)

    def apply(self, resource: Payout, transition: Transition) -> Payout:
        data = {**resource.psp_data, **transition.psp_data}
        return dataclasses.replace(_applied(resource, transition), psp_data=data)

    def storable(self, resource: Payout) -> Payout:
        return resource
