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


def _transition(
    resource: Payment | Refund | Payout,
    rtype: ResourceType,
    to_status: str,
    outcome: PspOutcome | None,
    actor: str,
    at: datetime,
    reason: str,
    *,
    captured_minor: int | None = None,
    refund_settlement: str | None = None,
) -> Transition | None:
    current = str(resource.status)
    reference = outcome.psp_reference if outcome else None
    data = outcome.data if outcome else {}
    if current == to_status and (reference is None or reference == resource.psp_reference) and not data:
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
        captured_minor=captured_minor,
        refund_settlement=refund_settlement,
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
        OutcomeKind.UNKNOWN: PaymentStatus.PROCESSING,
    }

    def decide(self, resource: Payment, outcome: PspOutcome, actor: str, at: datetime) -> Transition | None:
        target = self._TARGET.get(outcome.kind)
        if target is None:
            outcome = dataclasses.replace(outcome, kind=OutcomeKind.FAILED, failure=_UNKNOWN_OUTCOME)
            target = PaymentStatus.FAILED
        captured = resource.amount.amount_minor if target is PaymentStatus.SUCCEEDED else None
        return _transition(
            resource,
            self.resource_type,
            target,
            outcome,
            actor,
            at,
            f"psp:{outcome.kind}",
            captured_minor=captured,
        )

    def in_progress(self, resource: Payment, actor: str, at: datetime) -> Transition | None:
        return _transition(
            resource, self.resource_type, PaymentStatus.PROCESSING, None, actor, at, "psp:outcome_unknown"
        )

    def reconcile(self, resource: Payment, actor: str, at: datetime) -> Transition | None:
        return _needs_reconciliation(resource, self.resource_type, actor, at)

    def apply(self, resource: Payment, transition: Transition) -> Payment:
        captured = transition.captured_minor
        applied = _applied(resource, transition)
        return applied if captured is None else dataclasses.replace(applied, amount_captured=captured)


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
