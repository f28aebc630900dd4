"""The background worker: recovery of stopped executions and status polling (docs/contract.md, Recovery).

Runs in every `payments serve` process (and alone as `payments worker`); every claim is exclusive in
PostgreSQL, so any number of workers cooperate. Recovery: a key stopped at a recovery point (PSP
unavailable, lost answer, crashed server) is resumed on the recovery schedule (domain/finality.py):
re-sent with the same PSP key while the PSP honours it, looked up afterwards, for as long as the PSP
can be asked. Only past that window, without evidence, does the resource go to REQUIRES_RECONCILIATION
(never FAILED), which is still looked up daily. Polling: resources the PSP finishes later (SEPA payouts,
Stripe "processing") are looked up with backoff until they reach their end, and paid payouts until the
return window closes. Each recovery and each poll runs as its own job, up to `concurrency` of each kind
at once, so a PSP that holds one call delays only that resource. A webhook makes its resource due and
`wake`s the worker, which then claims at once instead of at its next interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from server.app import telemetry
from server.app.alerts import capture_expiring, credentials_refused, reconciliation_required
from server.app.commands import CancelCommand
from server.app.context import CallContext
from server.app.deadline import Deadline
from server.app.operations import Operations
from server.app.psp import OutcomeKind, ProviderDirectory, PspOutcome, PspRejectedError, PspUnavailableError
from server.app.resources import spec_of
from server.app.store import PollTarget, ResourceReader, StalledExecution, Transition, WorkerStore
from server.app.task_lane import TaskLane
from server.domain.errors import PaymentNotCancelable, RetryLater, StorageUnavailable
from server.domain.finality import RecoverySchedule, Rejection, still_looking
from server.domain.idempotency import fingerprint
from server.domain.model import Payment, Payout, Refund
from server.domain.states import PaymentStatus, PayoutStatus, ResourceType, awaits_psp

log = logging.getLogger(__name__)

RECOVERY_ACTOR = "worker:recovery"
POLLER_ACTOR = "worker:status-poller"


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    interval_seconds: float = 0.5
    # When a stopped key is resumed (a crashed server's key: once idle this long since it was claimed).
    recovery: RecoverySchedule = field(default_factory=RecoverySchedule)
    concurrency: int = 50  # recoveries, and polls, in flight at once (each kind)
    lease_seconds: float = 30.0
    psp_budget_seconds: float = 10.0
    first_poll_seconds: float = 1.0
    max_poll_interval_seconds: float = 300.0
    poll_window_seconds: float = 7 * 86400  # then an in-progress resource needs reconciliation
    return_window_seconds: float = 14 * 86400  # SEPA returns come within days; paid payouts are watched this long
    max_return_poll_interval_seconds: float = 3600.0  # a paid payout is looked at hourly at most for a return
    reply_retention_seconds: float = 30 * 86400  # stored reply bodies are pruned after this long
    prune_every_seconds: float = 60.0
    measure_backlog_every_seconds: float = 15.0  # the backlog gauges: a Prometheus scrape interval
    # PSPs whose webhooks reach us (a webhook makes its resource due at once): their resources are polled
    # at most every `webhook_poll_seconds`, polling being only the safety net for a lost event.
    webhook_psps: frozenset[str] = frozenset()
    webhook_poll_seconds: float = 60.0
    webhook_event_retention_seconds: float = 30 * 86400  # Stripe redelivers an event for up to 3 days
    event_retention_seconds: float = 30 * 86400  # outbox events (the feed, Debezium) are deleted after this long
    # A payment the customer never finished (3-D Secure) is cancelled at the PSP after this long.
    requires_action_timeout_seconds: float = 86400.0
    # This long before the PSP releases an uncaptured authorization: CAPTURE_EXPIRING, and a cancel
    # when `auto_cancel_uncaptured`.
    capture_warning_seconds: float = 86400.0
    auto_cancel_uncaptured: bool = False

    def poll_interval(self, psp: str, polls: int, *, paid: bool) -> float:
        """Seconds until the next status poll of a resource polled `polls` times: backoff from
        `first_poll_seconds`, capped (hourly for a paid payout watched for a return), and no shorter than
        `webhook_poll_seconds` for a PSP whose webhooks reach us."""
        cap = self.max_return_poll_interval_seconds if paid else self.max_poll_interval_seconds
        interval = min(cap, self.first_poll_seconds * 2.0 ** min(polls, 32))
        return max(interval, self.webhook_poll_seconds) if psp in self.webhook_psps else interval


ReconciliationHook = Callable[[str, str], None]  # (resource id, psp)
# A job the worker runs once per round, given the loop's time: it decides itself whether it is due (the
# bank statement fetch, server/app/bank_statements.py).
PeriodicJob = Callable[[float], Awaitable[None]]


class BackgroundWorker:
    def __init__(
        self,
        operations: Operations,
        store: WorkerStore,
        reader: ResourceReader,
        providers: ProviderDirectory,
        policy: WorkerPolicy,
        now: Callable[[], datetime],
        on_reconciliation: list[ReconciliationHook] | None = None,
        periodic: Sequence[PeriodicJob] = (),
    ) -> None:
        self._ops = operations
        self._store = store
        self._reader = reader
        self._providers = providers
        self._policy = policy
        self._now = now
        self._hooks = on_reconciliation or []
        self._periodic = list(periodic)
        self._next_prune = 0.0
        self._next_measure = 0.0
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Claims at once rather than at the next interval: a webhook made a resource due. Called from
        the event loop the worker runs in."""
        self._woken.set()

    async def run(self, stop: asyncio.Event, grace_seconds: float = 0.0) -> None:
        """Claims work every `interval_seconds` until `stop` is set, then gives the jobs still running
        `grace_seconds` to finish. Recoveries and polls run as separate jobs (see TaskLane): a PSP that
        holds one call delays only that resource."""
        recoveries = TaskLane("recovery", self._policy.concurrency)
        polls = TaskLane("status poll", self._policy.concurrency)
        try:
            while not stop.is_set():
                try:
                    await self._claim(recoveries, polls)
                    await self._prune()
                    await self._measure_backlog()
                    await self._run_periodic()
                except StorageUnavailable as exc:  # the database is away: try again next round
                    log.warning("worker round skipped: %s", exc.message)
                except Exception:
                    log.exception("worker round failed")
                await self._pause(stop)
        except asyncio.CancelledError:
            grace_seconds = 0.0  # cancelled, not asked to stop: cut the jobs short at once
            raise
        finally:
            cancelled = sum(await asyncio.gather(recoveries.stop(grace_seconds), polls.stop(grace_seconds)))
            if cancelled:
                log.info("worker stopped with %d jobs cut short; their leases let another worker resume them",
                         cancelled)  # fmt: skip

    async def _pause(self, stop: asyncio.Event) -> None:
        """Waits `interval_seconds`, or less if stopped or woken."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._woken.wait())]
        try:
            await asyncio.wait(waits, timeout=self._policy.interval_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        self._woken.clear()

    async def _claim(self, recoveries: TaskLane, polls: TaskLane) -> None:
        """Claims as many stalled executions and due polls as the lanes have free slots, and starts them."""
        policy = self._policy
        if recoveries.free > 0:
            stalled = await self._store.claim_stalled(
                idle_seconds=policy.recovery.idle_seconds, limit=recoveries.free, lease_seconds=policy.lease_seconds
            )
            for execution in stalled:
                recoveries.start(self._recover(execution))
        if polls.free > 0:
            targets = await self._store.claim_due_polls(limit=polls.free, lease_seconds=policy.lease_seconds)
            for target in targets:
                polls.start(self._poll(target))

    async def _measure_backlog(self) -> None:
        now = asyncio.get_running_loop().time()
        if now < self._next_measure:
            return
        self._next_measure = now + self._policy.measure_backlog_every_seconds
        backlog = await self._store.measure_backlog()
        telemetry.observe_backlog(backlog.oldest_unfinished_seconds, backlog.requires_reconciliation)

    async def _run_periodic(self) -> None:
        """Each periodic job on its own: a bank gateway that is down delays its statements only."""
        now = asyncio.get_running_loop().time()
        for job in self._periodic:
            try:
                await job(now)
            except StorageUnavailable:
                raise
            except Exception as exc:
                log.warning("periodic worker job failed: %s: %s", type(exc).__name__, exc)

    async def _prune(self) -> None:
        now = asyncio.get_running_loop().time()
        if now < self._next_prune:
            return
        self._next_prune = now + self._policy.prune_every_seconds
        pruned = await self._store.prune_replies(older_than_seconds=self._policy.reply_retention_seconds, limit=5000)
        if pruned:
            log.info("pruned %d stored replies past the retention period", pruned)
        forgotten = await self._store.prune_webhook_events(
            older_than_seconds=self._policy.webhook_event_retention_seconds, limit=5000
        )
        if forgotten:
            log.info("forgot %d webhook event ids past the redelivery period", forgotten)
        # Outbox events come with every transition (two per charge: ~770 a second at a process's ~385
        # charges/s), more than one batch a minute: full batches are repeated, up to 100 (500,000) a round.
        deleted, batch_size = 0, 5000
        for _ in range(100):
            batch = await self._store.prune_events(
                older_than_seconds=self._policy.event_retention_seconds, limit=batch_size
            )
            deleted += batch
            if batch < batch_size:
                break
        if deleted:
            log.info("deleted %d outbox events past the retention period", deleted)

    # -- recovery -----------------------------------------------------------------------------

    async def _recover(self, stalled: StalledExecution) -> None:
        attributes: dict[str, str | bool | int] = {
            "resource.id": _public_id(stalled.started.resource), "psp": stalled.started.resource.psp,
            "recovery.execution": stalled.started.executions,
        }  # fmt: skip
        with telemetry.span("worker.recover", attributes, links=telemetry.links_to(stalled.trace_context)):
            await self._recover_traced(stalled)

    async def _recover_traced(self, stalled: StalledExecution) -> None:
        ctx = CallContext(
            client_id=stalled.started.lease.client_id,
            deadline=Deadline.after(self._policy.psp_budget_seconds),
            trace_context=stalled.trace_context,
            acting=RECOVERY_ACTOR,
        )
        started = stalled.started
        window = self._providers.by_name(started.resource.psp).lookup_window_seconds
        if not still_looking(started.key_age_seconds, window):
            await self._ops.settle(started, stalled.key, ctx)
            if await self._current_status(started.resource) == "REQUIRES_RECONCILIATION":
                self._alert(started.resource)
            return
        try:
            await self._ops.resume(started, stalled.key, ctx)
        except RetryLater as exc:  # still no answer: the key went back with its next recovery time
            log.info("recovery execution %d of %s: %s", started.executions, _public_id(started.resource), exc.message)

    async def _current_status(self, resource: Payment | Refund | Payout) -> str | None:
        current = await spec_of(resource).load(self._reader, resource.client_id, resource.id)
        return str(current.status) if current else None

    def _alert(self, resource: Payment | Refund | Payout) -> None:
        public_id = _public_id(resource)
        reconciliation_required(public_id, resource.psp, type(resource).__name__.lower())
        for hook in self._hooks:
            hook(public_id, resource.psp)

    # -- polling ------------------------------------------------------------------------------

    async def _poll(self, target: PollTarget) -> None:
        attributes: dict[str, str | bool | int] = {
            "resource.id": _public_id(target.resource), "psp": target.resource.psp, "poll.number": target.polls,
        }  # fmt: skip
        with telemetry.span("worker.poll", attributes, links=telemetry.links_to(target.trace_context)):
            await self._poll_traced(target)

    async def _poll_traced(self, target: PollTarget) -> None:
        resource = target.resource
        rtype = _resource_type(resource)
        try:
            outcome = await self._ops.look_up(resource, target.key, Deadline.after(self._policy.psp_budget_seconds))
        except PspRejectedError as exc:
            if exc.rejection is Rejection.CREDENTIALS:
                credentials_refused(resource.psp, exc.code, _public_id(resource))
            log.info("status poll of %s: %s", _public_id(resource), exc)
            outcome = PspOutcome(OutcomeKind.UNKNOWN)
        except PspUnavailableError as exc:
            log.info("status poll of %s: %s", _public_id(resource), exc)
            outcome = PspOutcome(OutcomeKind.UNKNOWN)
        at = self._now()
        transition = self._decide(resource, outcome, at)
        status = transition.to_status if transition else str(resource.status)
        next_poll: float | None = None
        paid = rtype is ResourceType.PAYOUT and status == PayoutStatus.PAID
        # Only some PSPs' payouts come back after being paid (SEPA returns); the PSP says which.
        watch_returns = paid and self._providers.by_name(resource.psp).payouts_can_return
        if status == "REQUIRES_RECONCILIATION":
            next_poll = self._policy.recovery.reconciliation_recheck_seconds  # looked at again, forever
        elif awaits_psp(rtype, status) and (watch_returns or not paid):
            window = self._policy.return_window_seconds if paid else self._policy.poll_window_seconds
            if isinstance(resource, Payment) and status == PaymentStatus.REQUIRES_CAPTURE:
                window = _authorization_window(resource, transition, at, window)
            if target.age_seconds < window:
                next_poll = self._policy.poll_interval(resource.psp, target.polls, paid=paid)
            elif not paid:
                transition = _reconcile(resource, at)
                if transition is not None:
                    self._alert(resource)
                    next_poll = self._policy.recovery.reconciliation_recheck_seconds
        await self._store.record_poll(target, transition, next_poll)
        if isinstance(resource, Payment):
            current = spec_of(resource).flow.apply(resource, transition) if transition else resource
            await self._act_on_deadlines(current, target, at)

    async def _act_on_deadlines(self, payment: Payment, target: PollTarget, at: datetime) -> None:
        """What nobody else will do in time: a payment the customer abandoned (REQUIRES_ACTION past
        `requires_action_timeout_seconds`) is cancelled at the PSP; an authorization close to its release
        raises CAPTURE_EXPIRING once, and is cancelled when `auto_cancel_uncaptured`. Cancels go through
        the same engine as a caller's CancelPayment (key, finality rule, recovery, event log)."""
        policy = self._policy
        if (
            payment.status is PaymentStatus.REQUIRES_ACTION
            and target.age_seconds >= policy.requires_action_timeout_seconds
        ):
            await self._cancel(payment, target, "abandoned")
            return
        until = payment.capturable_until
        if payment.status is not PaymentStatus.REQUIRES_CAPTURE or until is None:
            return
        if (until - at).total_seconds() > policy.capture_warning_seconds:
            return
        if await self._store.warn_capture_once(payment.id):
            capture_expiring(
                _public_id(payment), payment.psp, until.isoformat(), canceling=policy.auto_cancel_uncaptured
            )
        if policy.auto_cancel_uncaptured:
            await self._cancel(payment, target, "abandoned")

    async def _cancel(self, payment: Payment, target: PollTarget, reason: str) -> None:
        public_id = _public_id(payment)
        # One key per payment, outside what callers can send (their keys are printable ASCII): a retry on
        # the next poll resumes the same cancel.
        key = f"\u00a7worker-cancel:{public_id}"
        ctx = CallContext(
            client_id=payment.client_id, deadline=Deadline.after(self._policy.psp_budget_seconds),
            trace_context=target.trace_context, acting=POLLER_ACTOR,
        )  # fmt: skip
        command = CancelCommand(
            idempotency_key=key, fingerprint=fingerprint("CancelPayment", f"{public_id}|{reason}".encode()),
            payment_id_text=public_id, reason=reason,
        )  # fmt: skip
        try:
            await self._ops.cancel(command, ctx)
        except (PaymentNotCancelable, RetryLater) as exc:  # moved on meanwhile, or tried again at the next poll
            log.info("cancel of %s by the worker: %s", public_id, exc)
        else:
            log.info("cancelled %s at the PSP (%s)", public_id, reason, extra={"resource_id": public_id})

    def _decide(self, resource: Payment | Refund | Payout, outcome: PspOutcome, at: datetime) -> Transition | None:
        if outcome.kind is OutcomeKind.UNKNOWN:
            return None
        transition: Transition | None = spec_of(resource).flow.decide(resource, outcome, POLLER_ACTOR, at)
        return transition


def _reconcile(resource: Payment | Refund | Payout, at: datetime) -> Transition | None:
    transition: Transition | None = spec_of(resource).flow.reconcile(resource, POLLER_ACTOR, at)
    return transition


def _resource_type(resource: Payment | Refund | Payout) -> ResourceType:
    rtype: ResourceType = spec_of(resource).resource_type
    return rtype


def _public_id(resource: Payment | Refund | Payout) -> str:
    public: str = spec_of(resource).public_id(resource)
    return public


def _authorization_window(payment: Payment, transition: Transition | None, at: datetime, default: float) -> float:
    """An authorized payment is watched until a day past the PSP's release of it (then the PSP has
    cancelled it, and the look-up says so), not reconciled after the usual poll window."""
    until = transition.capturable_until if transition and transition.capturable_until else payment.capturable_until
    if until is None:
        return default
    return (until - payment.created_at).total_seconds() + 86400.0
