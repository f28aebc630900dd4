"""The atomic phases of design.md §3, written once for charges, refunds and payouts.

Phase 1 (`begin`, one transaction): claim the key and create the resource, or learn that the key is
finished (replay), in flight (wait briefly, then IDEMPOTENCY_KEY_IN_USE), reused with another request
(IDEMPOTENCY_KEY_REUSED) or stopped at a recovery point (resume). Phase 2: call the PSP with no
transaction open, with the PSP key derived from (client, key, operation). Phase 3 (`finish`, one
transaction): record the transition and the reply. If the PSP cannot be reached or its answer is lost,
the key is released unfinished and the caller gets PSP_UNAVAILABLE; a retry re-drives the same PSP key.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from server.app import telemetry
from server.app.context import CallContext
from server.app.deadline import Deadline
from server.app.flows import Flow
from server.app.psp import OutcomeKind, PspOutcome, PspRejectedError, PspUnavailableError
from server.app.replies import Reply
from server.app.store import (
    Begun,
    Done,
    InFlight,
    KeyClaim,
    OperationStore,
    Pruned,
    Started,
    StoredReply,
    Transition,
)
from server.domain.errors import IdempotencyKeyInUse, IdempotencyKeyReused, PspUnavailable
from server.domain.idempotency import Operation
from server.domain.ids import format_id, id_kind
from server.domain.model import Failure, Payment, Payout, Refund

log = logging.getLogger(__name__)

R = TypeVar("R", Payment, Refund, Payout)


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    """Time budgets of one execution.

    `psp_budget_seconds` bounds a PSP call (all its retries) when the caller set no deadline; the key's
    lease lasts that long plus `lease_margin_seconds`, after which a retry may take the key over.
    """

    in_flight_wait_seconds: float = 1.5
    psp_budget_seconds: float = 20.0
    lease_margin_seconds: float = 2.0
    default_retry_after_seconds: float = 1.0
    # Time kept back from the caller's deadline to record the outcome and answer before gRPC gives up.
    reply_margin_seconds: float = 0.05

    def lease_seconds(self, deadline: Deadline) -> float:
        return deadline.clamp(self.psp_budget_seconds) + self.lease_margin_seconds

    def psp_deadline(self, deadline: Deadline) -> Deadline:
        left = deadline.remaining()
        if left is None:
            return Deadline.after(self.psp_budget_seconds)
        return Deadline.after(min(self.psp_budget_seconds, max(0.0, left - self.reply_margin_seconds)))


async def begin_with_wait(
    begin: Callable[[], Awaitable[Begun[R]]],
    deadline: Deadline,
    policy: ExecutionPolicy,
    operation: Operation,
) -> Started[R] | Done | Pruned:
    """Phase 1, waiting a little for an in-flight duplicate so it can be answered with the replay."""
    with telemetry.span("idempotency.claim", {"idempotency.operation": str(operation)}) as claim:
        try:
            begun = await _claim(begin, deadline, policy)
        except (IdempotencyKeyInUse, IdempotencyKeyReused) as exc:
            claim.set_attribute("idempotency.outcome", exc.reason)
            telemetry.idempotency_conflicts.add(1, {"reason": exc.reason, "operation": str(operation)})
            raise
        replayed = isinstance(begun, (Done, Pruned)) and (not isinstance(begun, Done) or begun.replayed)
        outcome = "replayed" if replayed else "resumed" if isinstance(begun, Started) and begun.resumed else "claimed"
        claim.set_attribute("idempotency.outcome", outcome)
        claim.set_attribute("idempotency.replayed", replayed)
    telemetry.annotate(**{"idempotency.replayed": replayed})
    if replayed:
        telemetry.idempotency_replays.add(1, {"operation": str(operation)})
    return begun


async def _claim(
    begin: Callable[[], Awaitable[Begun[R]]], deadline: Deadline, policy: ExecutionPolicy
) -> Started[R] | Done | Pruned:
    waited = 0.0
    pause = 0.02
    budget = deadline.clamp(policy.in_flight_wait_seconds)
    while True:
        begun = await begin()
        if not isinstance(begun, InFlight):
            return begun
        if waited + pause > budget:
            raise IdempotencyKeyInUse(begun.retry_after_seconds)
        await asyncio.sleep(pause)
        waited += pause
        pause = min(pause * 2, 0.2)


async def drive(
    *,
    flow: Flow[R],
    started: Started[R],
    call_psp: Callable[[Deadline], Awaitable[PspOutcome]],
    store: OperationStore,
    encode: Callable[[R], bytes],
    ctx: CallContext,
    policy: ExecutionPolicy,
    now: Callable[[], datetime],
) -> Reply:
    """Phases 2 and 3 for a started (or resumed) execution."""
    resource = started.resource
    telemetry.annotate(
        **{f"{flow.resource_type}.id": format_id(id_kind(flow.resource_type), resource.id), "psp": resource.psp}
    )
    try:
        outcome = await call_psp(policy.psp_deadline(ctx.deadline))
    except PspUnavailableError as exc:
        transition = flow.in_progress(resource, ctx.actor, now()) if exc.possibly_executed else None
        await asyncio.shield(_release(store, started, transition))
        retry_after = exc.retry_after or policy.default_retry_after_seconds
        raise PspUnavailable(
            "the payment provider did not give a final answer; retry with the same idempotency key",
            retry_after,
        ) from exc
    except PspRejectedError as exc:
        log.error("psp rejected the request: %s (code %s)", exc, exc.code)
        outcome = PspOutcome(OutcomeKind.FAILED, failure=Failure(exc.code, str(exc)))
    if outcome.kind is OutcomeKind.UNKNOWN:
        await asyncio.shield(_release(store, started, flow.in_progress(resource, ctx.actor, now())))
        raise PspUnavailable(
            "the payment provider's answer was lost; retry with the same idempotency key",
            policy.default_retry_after_seconds,
        )
    transition = flow.decide(resource, outcome, ctx.actor, now())
    final = flow.apply(resource, transition) if transition else resource
    # Shielded: once the PSP has answered, the outcome is recorded even if the caller goes away.
    stored = await asyncio.shield(_finish(store, started, transition, StoredReply(0, encode(final))))
    return Reply.of(stored, replayed=False)


async def _finish(
    store: OperationStore, started: Started[R], transition: Transition | None, reply: StoredReply
) -> StoredReply:
    with telemetry.span("idempotency.complete", {"idempotency.recovery_point": "finished"}):
        return await store.finish(started.lease, transition, reply)


async def _release(store: OperationStore, started: Started[R], transition: Transition | None) -> None:
    with telemetry.span("idempotency.complete", {"idempotency.recovery_point": "started"}):
        await store.release(started.lease, transition)


def key_claim(
    ctx: CallContext, key: str, operation: Operation, fingerprint: bytes, policy: ExecutionPolicy
) -> KeyClaim:
    return KeyClaim(
        client_id=ctx.client_id,
        key=key,
        operation=operation,
        fingerprint=fingerprint,
        lease_seconds=policy.lease_seconds(ctx.deadline),
        trace_context=ctx.trace_context,
    )


async def finish_begun(
    begun: Started[R] | Done | Pruned,
    execute: Callable[[Started[R]], Awaitable[Reply]],
    rebuild: Callable[[uuid.UUID], Awaitable[Reply]],
) -> Reply:
    """Dispatches the result of phase 1: execute, replay, or rebuild a pruned reply."""
    if isinstance(begun, Done):
        return Reply.of(begun.reply, replayed=begun.replayed)
    if isinstance(begun, Pruned):
        return await rebuild(begun.resource_id)
    return await execute(begun)
