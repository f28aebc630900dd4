"""Ports for persistence. PostgreSQL implements them in storage/; every guarantee lives there.

The idempotent phases (docs/contract.md, Idempotency): `begin_*` claims the key and creates the resource in one
transaction (or reports a replay, a conflict, or a resumable execution), the PSP is called with no
transaction open, and `finish` records the outcome and the reply in a second transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from server.domain.errors import ServiceError
from server.domain.idempotency import Operation
from server.domain.model import DestinationType, Failure, NextAction, Payment, Payout, Refund
from server.domain.money import Money
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus, ResourceType

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True, slots=True)
class StoredReply:
    """The reply as sent: gRPC code 0 with the response bytes, or a code with google.rpc.Status bytes.

    `final` is false when the reply shows a resource the PSP has not finished (PROCESSING,
    REQUIRES_RECONCILIATION, ...): a replay then answers the resource's current state instead, so a
    key replays its true outcome once there is one.
    """

    code: int
    body: bytes
    final: bool = True


@dataclass(frozen=True, slots=True)
class KeyClaim:
    client_id: str
    key: str
    operation: Operation
    fingerprint: bytes
    lease_seconds: float
    trace_context: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this execution owns the key until the lease runs out."""

    client_id: str
    key: str
    token: uuid.UUID


@dataclass(frozen=True, slots=True)
class Started(Generic[R_co]):
    """This request now executes the operation; `resumed` when an earlier attempt stopped midway.

    `executions` counts the key's executions, this one included, and `key_age_seconds` is the time
    since the key was first claimed: the finality rule and the PSP's key lifetime need both.
    """

    resource: R_co
    lease: Lease
    resumed: bool
    executions: int = 1
    key_age_seconds: float = 0.0
    # The key's operation, where it is not the one that created the resource (capture, cancel).
    operation: Operation | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """The key has a stored reply; `replayed` is false when it was stored by this very request."""

    reply: StoredReply
    replayed: bool


@dataclass(frozen=True, slots=True)
class Pruned:
    """Finished, with no stored reply worth replaying (pruned after the retention period, or showing a
    state the PSP had not finished): the reply is rebuilt from the resource's current state. None only for
    a business error pruned before errors were kept: NOT_FOUND."""

    resource_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class InFlight:
    """Another request holds the key right now."""

    retry_after_seconds: float


Begun = Started[R] | Done | Pruned | InFlight


class RefundSettlement:
    """What a refund's end does to its payment's reservation."""

    APPLY = "apply"  # reserved amount becomes refunded
    RELEASE = "release"  # reserved amount is given back to what remains


@dataclass(frozen=True, slots=True)
class Transition:
    """A status change with what the PSP told us, recorded with the actor and reason in the event log."""

    resource: ResourceType
    resource_id: uuid.UUID
    client_id: str
    from_status: str
    to_status: str
    actor: str
    reason: str
    at: datetime
    psp_reference: str | None = None
    failure: Failure | None = None
    captured_minor: int | None = None  # payments: amount captured so far, when it changed
    refund_settlement: str | None = None  # refunds: RefundSettlement.*
    capturable_minor: int | None = None  # payments: what a capture can still take, when it changed
    capturable_until: datetime | None = None  # payments: when the PSP releases the authorization
    cancellation_reason: str | None = None  # payments: a cancel's reason
    action_done: str | None = None  # payments: the key of the capture or cancel this finishes
    # payments: what the customer must do, for this answer only (never written: see Payment.next_action)
    next_action: NextAction | None = field(default=None, repr=False)
    psp_data: dict[str, str] = field(default_factory=dict)

    def payment_facts(self) -> dict[str, object] | None:
        """A payment's changed amounts, capture deadline, cancel reason and finished action, as the
        store's statement takes them (one JSON parameter); None when nothing of that changed."""
        facts: dict[str, object] = {}
        if self.captured_minor is not None:
            facts["captured"] = self.captured_minor
        if self.capturable_minor is not None:
            facts["capturable"] = self.capturable_minor
        if self.capturable_until is not None:
            facts["capturable_until"] = self.capturable_until.isoformat()
        if self.cancellation_reason is not None:
            facts["cancellation_reason"] = self.cancellation_reason
        if self.action_done is not None:
            facts["action_done"] = self.action_done
        return facts or None


ErrorEncoder = Callable[[ServiceError], StoredReply]


class OperationStore(Protocol):
    async def begin_charge(self, claim: KeyClaim, payment: Payment) -> Begun[Payment]: ...

    async def begin_refund(
        self, claim: KeyClaim, refund: Refund, requested: Money | None, encode_error: ErrorEncoder
    ) -> Begun[Refund]: ...

    async def begin_payout(self, claim: KeyClaim, payout: Payout) -> Begun[Payout]: ...

    async def begin_capture(
        self, claim: KeyClaim, payment_id: uuid.UUID, requested: Money | None, final: bool,
        encode_error: ErrorEncoder,
    ) -> Begun[Payment]:  # fmt: skip
        """Claims the key and admits the capture (server.domain.captures) on the locked payment; a refusal
        is stored on the key."""
        ...

    async def begin_cancel(
        self, claim: KeyClaim, payment_id: uuid.UUID, reason: str, encode_error: ErrorEncoder
    ) -> Begun[Payment]: ...

    async def record_outcome(self, lease: Lease, transition: Transition | None, reply: StoredReply) -> StoredReply:
        """Records the outcome and stores the reply; returns the reply the key holds afterwards."""
        ...

    async def release(self, lease: Lease, transition: Transition | None, recover_in_seconds: float) -> None:
        """Gives the key back unfinished (PSP unavailable or answer lost) so a retry can resume it; the
        recovery worker resumes it after `recover_in_seconds` unless a client does first."""
        ...


@dataclass(frozen=True, slots=True)
class StalledExecution:
    """A key stopped at a recovery point, now leased to the worker that claimed it."""

    started: Started[Payment] | Started[Refund] | Started[Payout]
    key: str
    operation: Operation
    trace_context: str | None


@dataclass(frozen=True, slots=True)
class PollTarget:
    """A resource whose outcome the PSP finishes later, leased to the worker that claimed it."""

    resource: Payment | Refund | Payout
    key: str
    polls: int
    age_seconds: float
    trace_context: str | None


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits, as PostgreSQL shows it: the same in every process that measures it."""

    oldest_unfinished_seconds: float  # the oldest idempotency key whose execution has no final answer (0: none)
    requires_reconciliation: dict[str, int]  # resource type -> how many are in REQUIRES_RECONCILIATION now


class WorkerStore(Protocol):
    """Claims for the background worker; every claim is exclusive across processes (SKIP LOCKED)."""

    async def claim_stalled(
        self, *, idle_seconds: float, limit: int, lease_seconds: float
    ) -> list[StalledExecution]: ...

    async def claim_due_polls(self, *, limit: int, lease_seconds: float) -> list[PollTarget]: ...

    async def prune_replies(self, *, older_than_seconds: float, limit: int) -> int:
        """Drops stored reply bodies past the retention period; keys and resources stay forever."""
        ...

    async def warn_capture_once(self, payment_id: uuid.UUID) -> bool:
        """Marks an authorized payment as warned about its capture deadline; True only the first time
        (across processes), so its alert is raised once."""
        ...

    async def prune_webhook_events(self, *, older_than_seconds: float, limit: int) -> int:
        """Forgets webhook event ids past the time the PSP may deliver them again; returns how many."""
        ...

    async def prune_events(self, *, older_than_seconds: float, limit: int) -> int:
        """Deletes up to `limit` outbox events older than the retention period, oldest first; returns how
        many (the feed's consumers and Debezium have had that long to read them)."""
        ...

    async def record_poll(self, target: PollTarget, transition: Transition | None, next_poll_in: float | None) -> bool:
        """Applies what the PSP said (if anything changed) and schedules the next poll (None: stop)."""
        ...

    async def measure_backlog(self) -> Backlog:
        """The age of the oldest unfinished execution and the REQUIRES_RECONCILIATION counts, for the
        gauges SREs alert on; reads only the worker's own partial indexes, so it stays cheap as tables grow."""
        ...


Cursor = tuple[datetime, uuid.UUID]  # (created_at, id) of the last row of a page: where the next one starts


@dataclass(frozen=True, slots=True)
class KeysetPage(Generic[R_co]):
    """One page of a listing, newest first; `next_cursor` is None on the last page."""

    items: list[R_co]
    next_cursor: Cursor | None


class ResourceReader(Protocol):
    """Reads, each scoped to the calling client: another client's resource is never seen."""

    async def get_payment(self, client_id: str, payment_id: uuid.UUID) -> Payment | None: ...

    async def get_refund(self, client_id: str, refund_id: uuid.UUID) -> Refund | None: ...

    async def get_payout(self, client_id: str, payout_id: uuid.UUID) -> Payout | None: ...

    async def list_payments(
        self, client_id: str, *, limit: int, status: PaymentStatus | None, customer_id: str | None,
        after: Cursor | None,
    ) -> KeysetPage[Payment]: ...  # fmt: skip

    async def list_refunds(
        self, client_id: str, *, limit: int, status: RefundStatus | None, payment_id: uuid.UUID | None,
        after: Cursor | None,
    ) -> KeysetPage[Refund]: ...  # fmt: skip

    async def list_payouts(
        self, client_id: str, *, limit: int, status: PayoutStatus | None, destination: DestinationType | None,
        after: Cursor | None,
    ) -> KeysetPage[Payout]: ...  # fmt: skip
