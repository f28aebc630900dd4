"""The one retry policy for every PSP call (tenacity).

An adapter implements single attempts; `RetryingProvider` turns it into the PaymentProvider port:
exponential backoff with full jitter, the PSP's Retry-After honoured, bounded by a number of attempts
AND by the caller's remaining deadline (a wait that would outlive the deadline is not taken). Every
attempt of one logical call carries the same PSP idempotency key, because the key is in the order.
When retries run out, PspUnavailableError says whether any attempt may have executed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from opentelemetry import trace
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from server.app import telemetry
from server.app.deadline import Deadline
from server.app.psp import (
    ChargeOrder,
    Order,
    PaymentProvider,
    PayoutOrder,
    PspOutcome,
    PspUnavailableError,
    RefundOrder,
)

T = TypeVar("T")


class AttemptProvider(Protocol):
    """A PSP adapter: each call is exactly one request to the PSP, honouring `deadline` as its timeout."""

    @property
    def name(self) -> str: ...

    async def charge(self, order: ChargeOrder, deadline: Deadline) -> PspOutcome: ...

    async def refund(self, order: RefundOrder, deadline: Deadline) -> PspOutcome: ...

    async def payout(self, order: PayoutOrder, deadline: Deadline) -> PspOutcome: ...

    async def lookup(self, order: Order, psp_reference: str | None, deadline: Deadline) -> PspOutcome: ...

    def prepare_payout(self, order: PayoutOrder) -> dict[str, str]: ...


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


class RetryingProvider:
    """Implements PaymentProvider around a single-attempt adapter."""

    def __init__(
        self,
        inner: AttemptProvider,
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

    def add_observer(self, observer: AttemptObserver) -> None:
        self._observers.append(observer)

    def prepare_payout(self, order: PayoutOrder) -> dict[str, str]:
        return self._inner.prepare_payout(order)

    async def charge(self, order: ChargeOrder, deadline: Deadline) -> PspOutcome:
        return await self._run("charge", lambda d: self._inner.charge(order, d), deadline)

    async def refund(self, order: RefundOrder, deadline: Deadline) -> PspOutcome:
        return await self._run("refund", lambda d: self._inner.refund(order, d), deadline)

    async def payout(self, order: PayoutOrder, deadline: Deadline) -> PspOutcome:
        return await self._run("payout", lambda d: self._inner.payout(order, d), deadline)

    async def lookup(self, order: Order, psp_reference: str | None, deadline: Deadline) -> PspOutcome:
        return await self._run("lookup", lambda d: self._inner.lookup(order, psp_reference, d), deadline)

    def _wait(self, state: RetryCallState) -> float:
        backoff = min(self._policy.max_backoff, self._policy.initial_backoff * 2 ** (state.attempt_number - 1))
        # Full jitter spreads the retries of many callers (not for security).
        wait = random.uniform(0.0, backoff)  # noqa: S311 - jitter, not security
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, PspUnavailableError) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return wait

    async def _run(
        self, operation: str, attempt: Callable[[Deadline], Awaitable[PspOutcome]], deadline: Deadline
    ) -> PspOutcome:
        policy = self._policy
        possibly_executed = False
        last: PspUnavailableError | None = None

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= policy.max_attempts:
                return True
            left = deadline.remaining()
            upcoming = state.upcoming_sleep or 0.0
            return left is not None and left - upcoming < policy.min_useful_attempt

        retrying = AsyncRetrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception_type(PspUnavailableError),
            sleep=self._sleep,
            reraise=True,
        )
        labels = {"psp": self.name, "psp.operation": operation}
        started = time.monotonic()
        outcome_label = "unavailable"
        with telemetry.span(f"psp.{operation}", {**labels}) as call_span:
            try:
                async for attempt_state in retrying:
                    with attempt_state:
                        number = attempt_state.retry_state.attempt_number
                        if number > 1:
                            telemetry.psp_retries.add(1, labels)
                        try:
                            outcome = await self._attempt(operation, number, attempt, deadline)
                            outcome_label = str(outcome.kind)
                            return outcome
                        except PspUnavailableError as exc:
                            possibly_executed = possibly_executed or exc.possibly_executed
                            last = exc
                            raise
            except PspUnavailableError as exc:
                outcome_label = "possibly_executed" if possibly_executed else "unavailable"
                raise PspUnavailableError(
                    f"{self.name} {operation}: no final answer after retries ({exc})",
                    possibly_executed=possibly_executed,
                    retry_after=exc.retry_after,
                    request_id=exc.request_id,
                ) from exc
            except Exception:
                outcome_label = "rejected"
                raise
            finally:
                call_span.set_attribute("psp.outcome", outcome_label)
                recorded = {**labels, "psp.outcome": outcome_label}
                telemetry.psp_calls.add(1, recorded)
                telemetry.psp_call_duration.record((time.monotonic() - started) * 1000, recorded)
        raise AssertionError(f"unreachable: {last}")

    async def _attempt(
        self,
        operation: str,
        number: int,
        attempt: Callable[[Deadline], Awaitable[PspOutcome]],
        deadline: Deadline,
    ) -> PspOutcome:
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = deadline.clamp(self._policy.attempt_timeout)
        attempt_deadline = Deadline.after(budget)
        report = "unavailable"
        request_id: str | None = None
        attempt_span = telemetry.tracer.start_span("psp.attempt", attributes={"psp": self.name, "psp.attempt": number})
        try:
            with trace.use_span(attempt_span, end_on_exit=False):
                async with asyncio.timeout(budget):
                    outcome = await attempt(attempt_deadline)
            report = str(outcome.kind)
            request_id = outcome.data.get("psp_request_id")
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
            attempt_span.end()
            for observer in self._observers:
                observer(AttemptReport(self.name, operation, number, report, request_id, elapsed))


def wrap(inner: AttemptProvider, policy: RetryPolicy | None = None) -> PaymentProvider:
    return RetryingProvider(inner, policy)
