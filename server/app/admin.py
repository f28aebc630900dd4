"""The operator's admin service: resolve operations the service could not finish on its own.

Recovery never turns "no evidence" into FAILED; it leaves such operations in REQUIRES_RECONCILIATION
(domain/finality.py). Someone must then find out what happened at the PSP and record it, and that must
go through the same rules as every other transition: the Flow of the resource type decides the
transition (so a refund's reservation is applied or released exactly as after a PSP answer), the
PostgreSQL trigger checks it against the lifecycle and writes the event log (actor `admin:<client>`),
and every write is a compare-and-set, so an operator never overwrites a change they did not see.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from server.app import page_tokens
from server.app.admin_port import AdminStore, OperationRecord, Resource, ResourceRef, StuckQuery
from server.app.alerts import credentials_refused
from server.app.context import CallContext
from server.app.execution import ExecutionPolicy
from server.app.operations import Operations
from server.app.psp import OutcomeKind, PspOutcome, PspRejectedError, PspUnavailableError
from server.app.resources import spec_of
from server.app.store import Transition
from server.domain.errors import (
    FieldViolation,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RequestRejected,
)
from server.domain.finality import Rejection
from server.domain.model import Failure
from server.domain.states import ResourceType, is_final

log = logging.getLogger(__name__)

ADMIN_ACTOR_PREFIX = "admin:"
DEFAULT_STUCK_AFTER_SECONDS = 15 * 60.0
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
RESOLVED_FAILURE_CODE = "resolved_by_operator"
RECONCILIATION = "REQUIRES_RECONCILIATION"

# What an operator may establish, per resource type (a payout's SUCCEEDED is PAID).
RESOLVABLE: dict[ResourceType, frozenset[OutcomeKind]] = {
    ResourceType.PAYMENT: frozenset({OutcomeKind.SUCCEEDED, OutcomeKind.FAILED}),
    ResourceType.REFUND: frozenset({OutcomeKind.SUCCEEDED, OutcomeKind.FAILED}),
    ResourceType.PAYOUT: frozenset({OutcomeKind.SUCCEEDED, OutcomeKind.FAILED, OutcomeKind.RETURNED}),
}


class AdminOnly(PermissionDenied):
    default_reason = "ADMIN_ONLY"

    def __init__(self) -> None:
        super().__init__("this client may not use the admin service (see PAYMENTS_ADMIN_CLIENTS)")


class NotInReconciliation(RequestRejected):
    default_reason = "NOT_IN_RECONCILIATION"


class ResourceChanged(RequestRejected):
    default_reason = "RESOURCE_CHANGED"


class OperationFinal(RequestRejected):
    default_reason = "OPERATION_FINAL"


class PspNotConfigured(RequestRejected):
    default_reason = "PSP_NOT_CONFIGURED"


class RecheckResult(StrEnum):
    TRANSITIONED = "transitioned"
    UNCHANGED = "unchanged"
    NO_EVIDENCE = "no_evidence"
    RECOVERY_SCHEDULED = "recovery_scheduled"
    EXECUTION_IN_FLIGHT = "execution_in_flight"
    CHANGED_MEANWHILE = "changed_meanwhile"


@dataclass(frozen=True, slots=True)
class StuckListing:
    older_than_seconds: float | None  # None: DEFAULT_STUCK_AFTER_SECONDS
    page_size: int
    page_token: str
    client_id: str | None


@dataclass(frozen=True, slots=True)
class StuckList:
    records: list[OperationRecord]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class ResolveCommand:
    ref: ResourceRef
    outcome: OutcomeKind
    psp_reference: str | None
    reason: str
    expected_update_time: datetime


@dataclass(frozen=True, slots=True)
class RecheckReport:
    result: RecheckResult
    record: OperationRecord


class Admin:
    """ListStuckOperations, GetOperation, RecheckOperation and ResolveOperation, for admin clients only."""

    def __init__(
        self,
        store: AdminStore,
        operations: Operations,
        admin_clients: frozenset[str],
        policy: ExecutionPolicy,
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._ops = operations
        self._admins = admin_clients
        self._policy = policy
        self._now = now

    def authorize(self, ctx: CallContext) -> str:
        """The actor for the event log; refuses every client not configured as an admin. Every use case
        calls it first; the edge calls it before validating a request too, so a client that is no admin
        learns nothing, not even which of its requests would be valid."""
        if ctx.client_id not in self._admins:
            raise AdminOnly()
        return f"{ADMIN_ACTOR_PREFIX}{ctx.client_id}"

    async def list_stuck(self, listing: StuckListing, ctx: CallContext) -> StuckList:
        self.authorize(ctx)
        older_than = DEFAULT_STUCK_AFTER_SECONDS if listing.older_than_seconds is None else listing.older_than_seconds
        limit = min(listing.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = decode_page_token(listing.page_token, older_than, listing.client_id)
        page = await self._store.list_stuck(StuckQuery(older_than, limit, listing.client_id, after))
        token = encode_page_token(page.next_cursor, older_than, listing.client_id) if page.next_cursor else ""
        return StuckList(page.records, token)

    async def get(self, ref: ResourceRef, ctx: CallContext) -> OperationRecord:
        self.authorize(ctx)
        return await self._load(ref)

    async def _load(self, ref: ResourceRef) -> OperationRecord:
        record = await self._store.get(ref)
        if record is None:
            raise NotFound(f"{ref.resource_type} not found")
        return record

    async def recheck(self, ref: ResourceRef, ctx: CallContext) -> RecheckReport:
        """An unfinished key goes to the recovery worker (which owns unfinished executions); otherwise the
        PSP is asked now, and only evidence changes anything (an UNKNOWN answer never does)."""
        actor = self.authorize(ctx)
        record = await self._load(ref)
        resource = record.resource
        if record.key is not None and not record.key.finished:
            scheduled = await self._store.schedule_recovery(resource.client_id, record.idempotency_key)
            result = RecheckResult.RECOVERY_SCHEDULED if scheduled else RecheckResult.EXECUTION_IN_FLIGHT
            return RecheckReport(result, await self._load(ref))
        if is_final(ref.resource_type, str(resource.status)):
            raise OperationFinal(f"{ref.public_id} is {resource.status}: there is nothing left to find out")
        outcome = await self._look_up(record, ctx)
        transition = None
        if outcome.kind is not OutcomeKind.UNKNOWN:
            transition = decide(resource, outcome, actor, self._now())
        if transition is None:
            result = RecheckResult.UNCHANGED if outcome.kind is not OutcomeKind.UNKNOWN else RecheckResult.NO_EVIDENCE
            return RecheckReport(result, record)
        transition = dataclasses.replace(transition, reason=f"admin:recheck: {transition.reason}")
        if not await self._store.apply(transition):
            return RecheckReport(RecheckResult.CHANGED_MEANWHILE, await self._load(ref))
        moved = transition.to_status != transition.from_status
        log.info("operator re-check of %s: %s", ref.public_id, transition.to_status, extra={"actor": actor})
        return RecheckReport(RecheckResult.TRANSITIONED if moved else RecheckResult.UNCHANGED, await self._load(ref))

    async def _look_up(self, record: OperationRecord, ctx: CallContext) -> PspOutcome:
        deadline = self._policy.psp_deadline(ctx.deadline)
        try:
            return await self._ops.look_up(record.resource, record.idempotency_key, deadline)
        except (PspUnavailableError, PspRejectedError) as exc:
            if isinstance(exc, PspRejectedError) and exc.rejection is Rejection.CREDENTIALS:
                credentials_refused(record.resource.psp, exc.code, record.ref.public_id)
            log.info("operator re-check of %s: the PSP gave no answer: %s", record.ref.public_id, exc)
            return PspOutcome(OutcomeKind.UNKNOWN)
        except LookupError:  # the directory does not know the resource's PSP
            raise PspNotConfigured(f"the PSP {record.resource.psp!r} is not configured in this process") from None

    async def resolve(self, cmd: ResolveCommand, ctx: CallContext) -> OperationRecord:
        actor = self.authorize(ctx)
        if cmd.outcome not in RESOLVABLE[cmd.ref.resource_type]:
            allowed = ", ".join(sorted(k.upper() for k in RESOLVABLE[cmd.ref.resource_type]))
            raise InvalidRequest([FieldViolation(
                "outcome", f"a {cmd.ref.resource_type} can be resolved to {allowed}", "OUTCOME_NOT_ALLOWED"
            )])  # fmt: skip
        failure = Failure(RESOLVED_FAILURE_CODE, cmd.reason) if cmd.outcome is OutcomeKind.FAILED else None
        outcome = PspOutcome(cmd.outcome, cmd.psp_reference, failure)

        def transition_for(resource: Resource) -> Transition:
            """Runs under the row lock: the compare-and-set on status and update time, then the Flow."""
            if str(resource.status) != RECONCILIATION:
                raise NotInReconciliation(
                    f"{cmd.ref.public_id} is {resource.status}; only operations in {RECONCILIATION} can be resolved"
                )
            if resource.updated_at != cmd.expected_update_time:
                raise ResourceChanged(
                    f"{cmd.ref.public_id} changed at {resource.updated_at.isoformat()}, after expected_update_time; "
                    "look at it again before resolving it"
                )
            transition = decide(resource, outcome, actor, self._now())
            if transition is None:  # every resolvable outcome is a legal way out of reconciliation
                raise RuntimeError(f"no transition from {resource.status} for {cmd.outcome}")
            return dataclasses.replace(transition, reason=f"admin:resolve: {cmd.reason}")

        record = await self._store.resolve(cmd.ref, transition_for)
        if record is None:
            raise NotFound(f"{cmd.ref.resource_type} not found")
        log.warning(
            "operator resolved %s to %s", cmd.ref.public_id, record.resource.status,
            extra={"actor": actor, "resource_id": cmd.ref.public_id, "outcome": str(cmd.outcome)},
        )  # fmt: skip
        return record


def decide(resource: Resource, outcome: PspOutcome, actor: str, at: datetime) -> Transition | None:
    """The transition the resource type's Flow makes of an outcome, exactly as after a PSP answer."""
    transition: Transition | None = spec_of(resource).flow.decide(resource, outcome, actor, at)
    return transition


# -- page tokens ------------------------------------------------------------------------------------


def encode_page_token(cursor: page_tokens.Cursor, older_than_seconds: float, client_id: str | None) -> str:
    return page_tokens.encode(cursor, page_tokens.filter_digest(older_than_seconds, client_id))


def decode_page_token(token: str, older_than_seconds: float, client_id: str | None) -> page_tokens.Cursor | None:
    """The keyset cursor in a page token (server/app/page_tokens.py), for these filters only."""
    return page_tokens.decode(token, page_tokens.filter_digest(older_than_seconds, client_id))
