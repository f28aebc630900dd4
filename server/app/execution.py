"""The atomic phases of the idempotency contract (docs/contract.md), written once for every operation.

Phase 1 (`begin`, one transaction): claim the key and create the resource, or learn that the key is
finished (replay), in flight (wait briefly, then IDEMPOTENCY_KEY_IN_USE), reused with another request
(IDEMPOTENCY_KEY_REUSED) or stopped at a recovery point (resume). Phase 2: call the PSP with no
transaction open, with the PSP key derived from (client, key, operation). Phase 3 (`finish`, one
transaction): record the transition and the reply. If the PSP cannot be reached, its answer is lost or
it refuses in a way that proves nothing (the finality rule), the key is released unfinished and the
caller gets PSP_UNAVAILABLE; a retry re-drives the same PSP key while the PSP honours it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from server.app import telemetry
from server.app.alerts import credentials_refused
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
)
from server.domain.errors import IdempotencyKeyInUse, IdempotencyKeyReused, PspUnavailable
from server.domain.finality import RecoverySchedule, Verdict, judge_rejection
from server.domain.idempotency import Operation
from server.domain.ids import format_id, id_kind
from server.domain.model import Failure, Payment, Payout, Refund
from server.domain.states import is_final

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
    # When the recovery worker resumes an execution released without a final answer.
    recovery: RecoverySchedule = field(default_factory=RecoverySchedule)

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
    """Phase 1, waiting a little for an in-flight duplicate so it can be answered with the replay.

    The claim is one SQL statement, and its SQL span says so; what it decided goes on the RPC's server
    span (`idempotency.*`), not on a span of its own. Only a wait for a duplicate gets one
    (`idempotency.wait`): that is where a slow claim's time goes.
    """
    try:
        begun = await _claim(begin, deadline, policy)
    except (IdempotencyKeyInUse, IdempotencyKeyReused) as exc:
        telemetry.annotate(**{"idempotency.operation": str(operation), "idempotency.outcome": exc.reason})
        telemetry.idempotency_conflicts.add(1, {"reason": exc.reason, "operation": str(operation)})
        raise
    replayed = isinstance(begun, (Done, Pruned)) and (not isinstance(begun, Done) or begun.replayed)
    outcome = "replayed" if replayed else "resumed" if isinstance(begun, Started) and begun.resumed else "claimed"
    labels: dict[str, str | bool | int] = {
        "idempotency.operation": str(operation), "idempotency.outcome": outcome, "idempotency.replayed": replayed,
    }  # fmt: skip
    telemetry.annotate(**labels)
    if replayed:
        telemetry.idempotency_replays.add(1, {"operation": str(operation)})
    return begun


async def _claim(
    begin: Callable[[], Awaitable[Begun[R]]], deadline: Deadline, policy: ExecutionPolicy
) -> Started[R] | Done | Pruned:
    begun = await begin()
    if not isinstance(begun, InFlight):
        return begun
    with telemetry.span("idempotency.wait") as wait:
        waited = 0.0
        pause = 0.02
        budget = deadline.clamp(policy.in_flight_wait_seconds)
        while isinstance(begun, InFlight):
            if waited + pause > budget:
                wait.set_attribute("idempotency.waited_ms", round(waited * 1000))
                raise IdempotencyKeyInUse(begun.retry_after_seconds)
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.2)
            begun = await begin()
        wait.set_attribute("idempotency.waited_ms", round(waited * 1000))
        return begun


async def drive(
    *,
    flow: Flow[R],
    started: Started[R],
    send: Callable[[Deadline], Awaitable[PspOutcome]],
    look_up: Callable[[Deadline], Awaitable[PspOutcome]],
    store: OperationStore,
    encode: Callable[[R], bytes],
    ctx: CallContext,
    policy: ExecutionPolicy,
    now: Callable[[], datetime],
    psp_deadline: Deadline | None = None,
) -> Reply:
    """Phases 2 and 3 for a started (or resumed) execution: `send` (re)sends it, `look_up` asks the PSP
    what became of it. What a PSP error proves is decided by the finality rule (domain/finality.py).
    `psp_deadline`: the PSP budget, when the caller took it already (a payout's payee check and its
    transfer share one); else one is taken from the call's deadline."""
    resource = started.resource
    public_id = format_id(id_kind(flow.resource_type), resource.id)
    telemetry.annotate(**{f"{flow.resource_type}.id": public_id, "psp": resource.psp})
    deadline = psp_deadline or policy.psp_deadline(ctx.deadline)
    try:
        outcome = await send(deadline)
    except PspUnavailableError as exc:
        await stop_unfinished(flow, started, store, ctx, policy, now, possibly_executed=exc.possibly_executed)
        raise PspUnavailable(
            "the payment provider did not give a final answer; retry with the same idempotency key",
            exc.retry_after or policy.default_retry_after_seconds,
        ) from exc
    except PspRejectedError as exc:
        verdict = judge_rejection(exc.rejection, resumed=started.resumed, possibly_executed=exc.possibly_executed)
        if verdict is Verdict.RETRY_LATER:
            credentials_refused(resource.psp, exc.code, public_id)
            await stop_unfinished(flow, started, store, ctx, policy, now, possibly_executed=exc.possibly_executed)
            raise PspUnavailable(
                "the payment provider is unavailable; retry with the same idempotency key",
                policy.default_retry_after_seconds,
            ) from exc
        if verdict is Verdict.FAIL:
            log.error("psp rejected a request that never executed: %s (code %s)", exc, exc.code)
            outcome = PspOutcome(OutcomeKind.FAILED, failure=Failure(exc.code, _REJECTED_MESSAGE))
        else:
            log.warning("psp rejected a request that may have executed (%s): looking it up", exc.code)
            outcome = await _ask(look_up, deadline)
    if outcome.kind is OutcomeKind.UNKNOWN:
        await stop_unfinished(flow, started, store, ctx, policy, now, possibly_executed=True)
        raise PspUnavailable(
            "the payment provider's answer was lost; retry with the same idempotency key",
            policy.default_retry_after_seconds,
        )
    transition = flow.decide(resource, outcome, ctx.actor, now())
    final = flow.apply(resource, transition) if transition else resource
    if transition is not None and transition.to_status == "FAILED":
        # Always logged, with the trace id, so a failed payment can be traced even when sampling dropped it.
        failure = transition.failure
        log.info("%s %s failed at the PSP: %s", flow.resource_type, public_id, failure.code if failure else "",
                 extra={"resource_id": public_id, "psp": resource.psp,
                        "failure_code": failure.code if failure else "",
                        "decline_code": failure.decline_code if failure else ""})  # fmt: skip
    storable = flow.storable(final)
    reply = StoredReply(0, encode(storable), final=is_final(flow.resource_type, str(final.status)))
    # Shielded: once the PSP has answered, the outcome is recorded even if the caller goes away.
    stored = await asyncio.shield(store.record_outcome(started.lease, transition, reply))
    if storable is not final and stored == reply:  # ours was recorded: the caller also gets what is not stored
        return Reply(0, encode(final), replayed=False)
    return Reply.of(stored, replayed=False)


_REJECTED_MESSAGE = "the payment provider refused the request"


async def _ask(look_up: Callable[[Deadline], Awaitable[PspOutcome]], deadline: Deadline) -> PspOutcome:
    """The PSP's view of the operation; no answer is no evidence (UNKNOWN)."""
    try:
        return await look_up(deadline)
    except (PspUnavailableError, PspRejectedError) as exc:
        log.info("look-up gave no answer: %s", exc)
        return PspOutcome(OutcomeKind.UNKNOWN)


async def stop_unfinished(
    flow: Flow[R], started: Started[R], store: OperationStore, ctx: CallContext, policy: ExecutionPolicy,
    now: Callable[[], datetime], *, possibly_executed: bool,
) -> None:  # fmt: skip
    """No final answer: the resource shows it is in progress if the PSP may have it, and the key goes
    back, resumable by a client retry at once or by the recovery worker after the schedule's delay."""
    transition = flow.in_progress(started.resource, ctx.actor, now()) if possibly_executed else None
    recover_in = policy.recovery.delay(started.executions, started.key_age_seconds)
    await asyncio.shield(store.release(started.lease, transition, recover_in))


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


async def answer_begun(
    begun: Started[R] | Done | Pruned,
    execute: Callable[[Started[R]], Awaitable[Reply]],
    rebuild: Callable[[uuid.UUID | None], Awaitable[Reply]],
) -> Reply:
    """Dispatches the result of phase 1: execute, replay, or rebuild a pruned reply."""
    if isinstance(begun, Done):
        return Reply.of(begun.reply, replayed=begun.replayed)
    if isinstance(begun, Pruned):
        return await rebuild(begun.resource_id)
    return await execute(begun)
