"""The port of the operator's admin service (server/app/admin.py): what it reads and writes in storage.

Unlike every other port, these reads are not scoped by client: operators resolve operations of every
client. Only the admin use case may hold an AdminStore, and it lets only admin clients through.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.app.store import Transition
from server.domain.ids import format_id, id_kind
from server.domain.model import Payment, Payout, Refund
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus, ResourceType

Resource = Payment | Refund | Payout

# Statuses in which an operation still waits for its end; listed as stuck once not updated for a while.
# (REQUIRES_RECONCILIATION is always listed: it waits for an operator, not for time.)
IN_PROGRESS: dict[ResourceType, tuple[str, ...]] = {
    ResourceType.PAYMENT: (PaymentStatus.PENDING, PaymentStatus.PROCESSING),
    ResourceType.REFUND: (RefundStatus.PENDING,),
    ResourceType.PAYOUT: (PayoutStatus.PENDING, PayoutStatus.PROCESSING),
}


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """Which resource, of any client: its type and its id."""

    resource_type: ResourceType
    id: uuid.UUID

    @property
    def public_id(self) -> str:
        return format_id(id_kind(self.resource_type), self.id)


@dataclass(frozen=True, slots=True)
class KeyState:
    """The idempotency key that created a resource, as its executions left it."""

    executions: int
    finished: bool  # recovery_point 'finished': the reply is stored
    recover_after: datetime | None  # when the recovery worker may resume an unfinished key
    locked_until: datetime | None  # lease of the execution holding the key


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One row of resource_events."""

    from_status: str | None
    to_status: str
    actor: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """A resource with the evidence an operator needs to judge it."""

    resource_type: ResourceType
    resource: Resource
    idempotency_key: str  # the client's key that created it
    last_actor: str
    last_reason: str
    key: KeyState | None  # None only if the key row is missing (keys are never deleted)
    events: tuple[EventRecord, ...]  # newest first

    @property
    def ref(self) -> ResourceRef:
        return ResourceRef(self.resource_type, self.resource.id)


@dataclass(frozen=True, slots=True)
class StuckQuery:
    older_than_seconds: float
    limit: int
    client_id: str | None
    after: tuple[datetime, uuid.UUID] | None  # keyset cursor: (updated_at, id) of the last row seen


@dataclass(frozen=True, slots=True)
class StuckPage:
    records: list[OperationRecord]
    next_cursor: tuple[datetime, uuid.UUID] | None


class AdminStore(Protocol):
    async def list_stuck(self, query: StuckQuery) -> StuckPage:
        """Resources in REQUIRES_RECONCILIATION, and in progress (IN_PROGRESS) not updated for
        `older_than_seconds`, of every client (or one), ordered by (updated_at, id)."""
        ...

    async def get(self, ref: ResourceRef) -> OperationRecord | None: ...

    async def schedule_recovery(self, client_id: str, key: str) -> bool:
        """Makes an unfinished key due for the recovery worker now; False if an execution holds it (or it
        is finished)."""
        ...

    async def apply(self, transition: Transition) -> bool:
        """Applies a transition, conditional on its from_status; False when the status had moved on."""
        ...

    async def resolve(self, ref: ResourceRef, decide: Callable[[Resource], Transition]) -> OperationRecord | None:
        """In one transaction: locks the resource (None if there is none), asks `decide` for the transition
        (it may raise to refuse; nothing is written then), applies it, and finishes the resource's key if
        it was somehow still unfinished, so a replay answers the resolved state. Returns the record after."""
        ...
