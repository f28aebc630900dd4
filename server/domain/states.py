"""The lifecycles of payments, refunds and payouts, defined once.

The same table is loaded into PostgreSQL by the migrator, where a trigger refuses any other
transition and appends every transition to the event log, so no process can skip either.
"""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    CANCELED = "CANCELED"
    REQUIRES_RECONCILIATION = "REQUIRES_RECONCILIATION"
    REQUIRES_CAPTURE = "REQUIRES_CAPTURE"


class RefundStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REQUIRES_RECONCILIATION = "REQUIRES_RECONCILIATION"


class PayoutStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    PAID = "PAID"
    FAILED = "FAILED"
    RETURNED = "RETURNED"
    REQUIRES_RECONCILIATION = "REQUIRES_RECONCILIATION"


class ResourceType(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    PAYOUT = "payout"


class IllegalTransition(Exception):
    """A status change the lifecycle does not allow; a programming error or a lost race."""


_P = PaymentStatus
_R = RefundStatus
_O = PayoutStatus

# PENDING means "recorded, PSP call not completed"; PROCESSING means the PSP is finishing it later or
# its answer was lost. REQUIRES_RECONCILIATION is left only by evidence (a PSP lookup or an operator).
# REQUIRES_CAPTURE (authorized, manual capture) ends by a capture (SUCCEEDED) or a cancel or expiry at
# the PSP (CANCELED).
PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    _P.PENDING: frozenset({_P.PROCESSING, _P.SUCCEEDED, _P.FAILED, _P.REQUIRES_ACTION, _P.REQUIRES_CAPTURE,
                           _P.CANCELED, _P.REQUIRES_RECONCILIATION}),
    _P.PROCESSING: frozenset({_P.SUCCEEDED, _P.FAILED, _P.REQUIRES_ACTION, _P.REQUIRES_CAPTURE, _P.CANCELED,
                              _P.REQUIRES_RECONCILIATION}),
    _P.REQUIRES_ACTION: frozenset({_P.PROCESSING, _P.SUCCEEDED, _P.FAILED, _P.REQUIRES_CAPTURE, _P.CANCELED,
                                   _P.REQUIRES_RECONCILIATION}),
    _P.REQUIRES_CAPTURE: frozenset({_P.SUCCEEDED, _P.CANCELED, _P.REQUIRES_RECONCILIATION}),
    _P.REQUIRES_RECONCILIATION: frozenset({_P.PROCESSING, _P.SUCCEEDED, _P.FAILED, _P.REQUIRES_ACTION,
                                           _P.REQUIRES_CAPTURE, _P.CANCELED}),
    _P.SUCCEEDED: frozenset(),
    _P.FAILED: frozenset(),
    _P.CANCELED: frozenset(),
}  # fmt: skip

REFUND_TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    _R.PENDING: frozenset({_R.SUCCEEDED, _R.FAILED, _R.REQUIRES_RECONCILIATION}),
    _R.REQUIRES_RECONCILIATION: frozenset({_R.PENDING, _R.SUCCEEDED, _R.FAILED}),
    _R.SUCCEEDED: frozenset(),
    _R.FAILED: frozenset(),
}

PAYOUT_TRANSITIONS: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    _O.PENDING: frozenset({_O.PROCESSING, _O.PAID, _O.FAILED, _O.REQUIRES_RECONCILIATION}),
    _O.PROCESSING: frozenset({_O.PAID, _O.FAILED, _O.RETURNED, _O.REQUIRES_RECONCILIATION}),
    _O.PAID: frozenset({_O.RETURNED}),
    _O.REQUIRES_RECONCILIATION: frozenset({_O.PROCESSING, _O.PAID, _O.FAILED, _O.RETURNED}),
    _O.FAILED: frozenset(),
    _O.RETURNED: frozenset(),
}

INITIAL_STATUS: dict[ResourceType, str] = {
    ResourceType.PAYMENT: PaymentStatus.PENDING,
    ResourceType.REFUND: RefundStatus.PENDING,
    ResourceType.PAYOUT: PayoutStatus.PENDING,
}

_TABLES: dict[ResourceType, dict[str, frozenset[str]]] = {
    ResourceType.PAYMENT: {str(k): frozenset(map(str, v)) for k, v in PAYMENT_TRANSITIONS.items()},
    ResourceType.REFUND: {str(k): frozenset(map(str, v)) for k, v in REFUND_TRANSITIONS.items()},
    ResourceType.PAYOUT: {str(k): frozenset(map(str, v)) for k, v in PAYOUT_TRANSITIONS.items()},
}


# Statuses in which the PSP still owes us the end of the story: the worker polls them. A paid payout
# is polled for a return (SEPA returns arrive days later) until the return window closes, and
# REQUIRES_RECONCILIATION is looked up again daily until evidence moves it on.
AWAITING_PSP: dict[ResourceType, frozenset[str]] = {
    ResourceType.PAYMENT: frozenset(
        {
            PaymentStatus.PROCESSING,
            PaymentStatus.REQUIRES_ACTION,
            PaymentStatus.REQUIRES_CAPTURE,
            PaymentStatus.REQUIRES_RECONCILIATION,
        }
    ),
    ResourceType.REFUND: frozenset({RefundStatus.PENDING, RefundStatus.REQUIRES_RECONCILIATION}),
    ResourceType.PAYOUT: frozenset({PayoutStatus.PROCESSING, PayoutStatus.PAID, PayoutStatus.REQUIRES_RECONCILIATION}),
}


def awaits_psp(resource: ResourceType, status: str) -> bool:
    return status in AWAITING_PSP[resource]


def can_transition(resource: ResourceType, current: str, new: str) -> bool:
    return new in _TABLES[resource].get(current, frozenset())


def check_transition(resource: ResourceType, current: str, new: str) -> None:
    if not can_transition(resource, current, new):
        raise IllegalTransition(f"{resource} cannot go from {current} to {new}")


def is_final(resource: ResourceType, status: str) -> bool:
    """Final statuses have no way out (RETURNED after PAID is the one late change of a payout)."""
    return not _TABLES[resource].get(status)


def all_transitions() -> list[tuple[str, str, str]]:
    """(resource, from, to) rows, with from = "" for the creation of a resource."""
    rows = [(str(r), "", INITIAL_STATUS[r]) for r in ResourceType]
    for resource, table in _TABLES.items():
        rows.extend((str(resource), src, dst) for src, targets in table.items() for dst in sorted(targets))
    return rows
