"""The one retry policy for every PSP call.

An adapter implements the PaymentProvider port with single attempts; `RetryingProvider` wraps it into the
same port with retries: exponential backoff with full jitter, the PSP's Retry-After honoured, bounded by
a number of attempts AND by the caller's remaining deadline (a wait that would outlive the deadline is not taken). Every
attempt of one logical call carries the same PSP idempotency key, because the key is in the order.
When retries run out, PspUnavailableError says whether any attempt may have executed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from server.app import telemetry
from server.app.deadline import Deadline
from server.app.psp import (
    CancelOrder,
    CaptureOrder,
    ChargeOrder,
    Order,
    PayeeAnswer,
    PayeeCheckOrder,
    PaymentProvider,
    PayoutOrder,
    PspOutcome,
    PspRejectedError,
    PspUnavailableError,
    RefundOrder,
)
from server.domain.idempotency import Operation
from server.domain.model import PayoutDestination
from server.domain.money import Money

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """What one attempt did, for tracing and metrics."""

    psp: str
    operation: str
    attempt: int
    outcome: str  # an OutcomeKind value, or "unavailable" / "possibly_executed" / "rejected"
    psp_request_id: str | None
    elapsed_seconds: float


AttemptObserver = Callable[[AttemptReport], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff: float = 0.05
    max_backoff: float = 2.0
    attempt_timeout: float = 10.0  # one request; clamped by the caller's deadline
    min_useful_attempt: float = 0.02  # do not start an attempt with less time than this left


def _outcome_report(outcome: PspOutcome) -> tuple[str, str | None]:
    return str(outcome.kind), outcome.data.get("psp_request_id")


def _payee_report(answer: PayeeAnswer) -> tuple[str, str | None]:
    """A payee answer's label is the scheme's result (never the name)."""
    return f"payee_{answer.result.lower()}", answer.psp_request_id


class RetryingProvider:
    """Implements PaymentProvider around a single-attempt adapter."""

    def __init__(
        self,
        inner: PaymentProvider,
        policy: RetryPolicy | None = None,
        observers: list[AttemptObserver] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._inner = inner
        self._policy = policy or RetryPolicy()
        self._observers = observers if observers is not None else []
        self._sleep = sleep

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def key_ttl_seconds(self) -> float:
        return self._inner.key_ttl_seconds

    @property
    def lookup_window_seconds(self) -> float:
        return self._inner.lookup_window_seconds

    @property
    def payouts_can_return(self) -> bool:
        return self._inner.payouts_can_return

    def prepare_payout(self, order: PayoutOrder) -> dict[str, str]:
        return self._inner.prepare_payout(order)

    def amount_problem(self, amount: Money, operation: Operation) -> str | None:
        return self._inner.amount_problem(amount, operation)

    def destination_problem(self, destination: PayoutDestination) -> str | None:
        return self._inner.destination_problem(destination)

    async def charge(self, order: ChargeOrder, deadline: Deadline) -> PspOutcome:
        return await self._run("charge", lambda d: self._inner.charge(order, d), deadline, _outcome_report)

    async def refund(self, order: RefundOrder, deadline: Deadline) -> PspOutcome:
        return await self._run("refund", lambda d: self._inner.refund(order, d), deadline, _outcome_report)

    async def payout(self, order: PayoutOrder, deadline: Deadline) -> PspOutcome:
        return await self._run("payout", lambda d: self._inner.payout(order, d), deadline, _outcome_report)

    async def capture(self, order: CaptureOrder, deadline: Deadline) -> PspOutcome:
        return await self._run("capture", lambda d: self._inner.capture(order, d), deadline, _outcome_report)

    async def cancel(self, order: CancelOrder, deadline: Deadline) -> PspOutcome:
        return await self._run("cancel", lambda d: self._inner.cancel(order, d), deadline, _outcome_report)

    async def lookup(self, order: Order, psp_reference: str | None, deadline: Deadline) -> PspOutcome:
        return await self._run(
            "lookup", lambda d: self._inner.lookup(order, psp_reference, d), deadline, _outcome_report
        )

    async def verify_payee(self, order: PayeeCheckOrder, deadline: Deadline) -> PayeeAnswer:
        """The payee check retried like any call (a question: asking again never executes anything)."""
        return await self._run("verify_payee", lambda d: self._inner.verify_payee(order, d), deadline, _payee_report)

    def _delay(self, failed_attempts: int, error: PspUnavailableError) -> float:
        """Full-jitter exponential backoff after `failed_attempts`, or the PSP's Retry-After if longer."""
        policy = self._policy
        backoff = min(policy.max_backoff, policy.initial_backoff * 2 ** (failed_attempts - 1))
        # Full jitter spreads the retries of many callers (not for security).
        wait = random.uniform(0.0, backoff)  # noqa: S311 - jitter, not security
        if error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait

    def _out_of_time(self, attempts_made: int, upcoming_wait: float, deadline: Deadline) -> bool:
        """Stop when the attempts are used up or the wait would leave no useful time before the deadline."""
        if attempts_made >= self._policy.max_attempts:
            return True
        left = deadline.remaining()
        return left is not None and left - upcoming_wait < self._policy.min_useful_attempt

    async def _run(
        self,
        operation: str,
        attempt: Callable[[Deadline], Awaitable[T]],
        deadline: Deadline,
        report: Callable[[T], tuple[str, str | None]],
    ) -> T:
        """One logical call: its span, metrics and retries. `report` names an answer for both: (outcome
        label, PSP request id)."""
        labels = {"psp": self.name, "psp.operation": operation}
        started = time.monotonic()
        outcome_label = "unavailable"
        with telemetry.span(f"psp.{operation}", {**labels}) as call_span:
            try:
                outcome = await self._with_retries(operation, attempt, deadline, labels, report)
                outcome_label = report(outcome)[0]
                return outcome
            except PspUnavailableError as exc:
                outcome_label = "possibly_executed" if exc.possibly_executed else "unavailable"
                raise
            except Exception:
                outcome_label = "rejected"
                raise
            finally:
                call_span.set_attribute("psp.outcome", outcome_label)
                recorded = {**labels, "psp.outcome": outcome_label}
                telemetry.psp_calls.add(1, recorded)
                telemetry.psp_call_duration.record((time.monotonic() - started) * 1000, recorded)

    async def _with_retries(
        self,
        operation: str,
        attempt: Callable[[Deadline], Awaitable[T]],
        deadline: Deadline,
        labels: dict[str, str],
        report: Callable[[T], tuple[str, str | None]],
    ) -> T:
        """Attempts until one answers, the attempts run out, or the next wait would outlive the deadline.

        A plain loop rather than a retry library: the first attempt, the common case, then costs nothing
        but the call (docs/performance.md), and the rule stays readable in one place."""
        possibly_executed = False
        number = 1
        while True:
            if number > 1:
                telemetry.psp_retries.add(1, labels)
            try:
                return await self._attempt(operation, number, attempt, deadline, report)
            except PspUnavailableError as exc:
                possibly_executed = possibly_executed or exc.possibly_executed
                delay = self._delay(number, exc)
                if self._out_of_time(number, delay, deadline):
                    raise self._exhausted(operation, exc, possibly_executed) from exc
            except PspRejectedError as exc:
                # A refusal after an attempt that may have executed proves nothing about that one.
                if possibly_executed and not exc.possibly_executed:
                    raise exc.after_possible_execution() from exc
                raise
            await self._sleep(delay)
            number += 1

    def _exhausted(self, operation: str, last: PspUnavailableError, possibly_executed: bool) -> PspUnavailableError:
        return PspUnavailableError(
            f"{self.name} {operation}: no final answer after retries ({last})",
            possibly_executed=possibly_executed,
            retry_after=last.retry_after,
            request_id=last.request_id,
        )

    async def _attempt(
        self,
        operation: str,
        number: int,
        attempt: Callable[[Deadline], Awaitable[T]],
        deadline: Deadline,
        report_of: Callable[[T], tuple[str, str | None]],
    ) -> T:
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = deadline.clamp(self._policy.attempt_timeout)
        attempt_deadline = Deadline.after(budget)
        report = "unavailable"
        request_id: str | None = None
        with telemetry.span("psp.attempt", {"psp": self.name, "psp.attempt": number}) as attempt_span:
            try:
                async with asyncio.timeout(budget):
                    outcome = await attempt(attempt_deadline)
                report, request_id = report_of(outcome)
                return outcome
            except TimeoutError as exc:
                report = "possibly_executed"
                raise PspUnavailableError(
                    f"{self.name} {operation}: attempt timed out after {budget:.3f}s", possibly_executed=True
                ) from exc
            except PspUnavailableError as exc:
                report = "possibly_executed" if exc.possibly_executed else "unavailable"
                request_id = exc.request_id
                raise
            except Exception:
                report = "rejected"
                raise
            finally:
                elapsed = loop.time() - started
                attempt_span.set_attribute("psp.outcome", report)
                if request_id:
                    attempt_span.set_attribute("psp.request_id", request_id)
                for observer in self._observers:
                    observer(AttemptReport(self.name, operation, number, report, request_id, elapsed))
