"""The one retry policy: backoff, Retry-After, attempt and deadline bounds, the same PSP key."""

from __future__ import annotations

import asyncio

import pytest

from adapters.retry import AttemptReport, RetryingProvider, RetryPolicy
from server.app.deadline import Deadline
from server.app.psp import (
    CancelOrder,
    CaptureOrder,
    ChargeOrder,
    Order,
    OutcomeKind,
    PayeeAnswer,
    PayeeCheckOrder,
    PayoutOrder,
    PspOutcome,
    PspRejectedError,
    PspUnavailableError,
    RefundOrder,
)
from server.domain.idempotency import Operation
from server.domain.model import PayeeMatch, PayoutDestination
from server.domain.money import Money

ORDER = ChargeOrder("pay_1", "c", "k", "charge-abc", Money(100, "EUR"), "pm_card_visa", "", "", {})


class ScriptedPsp:
    """Fails with the scripted errors, then succeeds; records the PSP key of every attempt."""

    name = "scripted"
    key_ttl_seconds = 3600.0
    lookup_window_seconds = 86400.0
    payouts_can_return = False

    def __init__(self, failures: list[PspUnavailableError | PspRejectedError], stall: float = 0.0) -> None:
        self.failures = list(failures)
        self.keys: list[str] = []
        self.stall = stall

    async def charge(self, order: ChargeOrder, deadline: Deadline) -> PspOutcome:
        self.keys.append(order.psp_key)
        if self.stall:
            await asyncio.sleep(self.stall)
        if self.failures:
            raise self.failures.pop(0)
        return PspOutcome(OutcomeKind.SUCCEEDED, "ref")

    async def refund(self, order: RefundOrder, deadline: Deadline) -> PspOutcome:
        raise NotImplementedError

    async def payout(self, order: PayoutOrder, deadline: Deadline) -> PspOutcome:
        raise NotImplementedError

    async def capture(self, order: CaptureOrder, deadline: Deadline) -> PspOutcome:
        raise NotImplementedError

    async def cancel(self, order: CancelOrder, deadline: Deadline) -> PspOutcome:
        raise NotImplementedError

    async def lookup(self, order: Order, psp_reference: str | None, deadline: Deadline) -> PspOutcome:
        raise NotImplementedError

    async def verify_payee(self, order: PayeeCheckOrder, deadline: Deadline) -> PayeeAnswer:
        self.keys.append(f"payee:{order.payout_id}")
        if self.failures:
            raise self.failures.pop(0)
        return PayeeAnswer(PayeeMatch.CLOSE_MATCH, "Müller GmbH", "req_1")

    def prepare_payout(self, order: PayoutOrder) -> dict[str, str]:
        return {}

    def amount_problem(self, amount: Money, operation: Operation) -> str | None:
        return None

    def destination_problem(self, destination: PayoutDestination) -> str | None:
        return None


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def unavailable(possibly: bool = False, retry_after: float | None = None) -> PspUnavailableError:
    return PspUnavailableError("503", possibly_executed=possibly, retry_after=retry_after)


async def test_retries_until_success_with_the_same_key() -> None:
    psp = ScriptedPsp([unavailable(), unavailable(), unavailable()])
    reports: list[AttemptReport] = []
    provider = RetryingProvider(psp, RetryPolicy(max_attempts=5), observers=[reports.append], sleep=RecordingSleep())
    outcome = await provider.charge(ORDER, Deadline.none())
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert psp.keys == ["charge-abc"] * 4
    assert [r.attempt for r in reports] == [1, 2, 3, 4]
    assert [r.outcome for r in reports] == ["unavailable"] * 3 + ["succeeded"]


async def test_retry_after_is_honoured() -> None:
    sleep = RecordingSleep()
    provider = RetryingProvider(ScriptedPsp([unavailable(retry_after=1.5)]), RetryPolicy(), sleep=sleep)
    await provider.charge(ORDER, Deadline.none())
    assert sleep.waits == [1.5]


async def test_backoff_is_bounded_and_jittered() -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=6, initial_backoff=0.1, max_backoff=0.3)
    await RetryingProvider(ScriptedPsp([unavailable()] * 5), policy, sleep=sleep).charge(ORDER, Deadline.none())
    assert len(sleep.waits) == 5
    assert all(0 <= w <= 0.3 for w in sleep.waits)


async def test_attempts_are_bounded_and_ambiguity_is_reported() -> None:
    psp = ScriptedPsp([unavailable(), unavailable(possibly=True), unavailable()] * 3)
    provider = RetryingProvider(psp, RetryPolicy(max_attempts=3), sleep=RecordingSleep())
    with pytest.raises(PspUnavailableError) as caught:
        await provider.charge(ORDER, Deadline.none())
    assert caught.value.possibly_executed
    assert len(psp.keys) == 3


async def test_a_wait_past_the_deadline_is_not_taken() -> None:
    psp = ScriptedPsp([unavailable(retry_after=5.0)])
    provider = RetryingProvider(psp, RetryPolicy(max_attempts=5), sleep=RecordingSleep())
    with pytest.raises(PspUnavailableError) as caught:
        await provider.charge(ORDER, Deadline.after(1.0))
    assert len(psp.keys) == 1
    assert not caught.value.possibly_executed


async def test_a_stalled_attempt_is_cut_at_the_deadline_and_counts_as_possibly_executed() -> None:
    psp = ScriptedPsp([], stall=5.0)
    provider = RetryingProvider(psp, RetryPolicy(max_attempts=5))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PspUnavailableError) as caught:
        await provider.charge(ORDER, Deadline.after(0.3))
    assert loop.time() - started < 1.0
    assert caught.value.possibly_executed


async def test_a_rejection_after_a_possibly_executed_attempt_says_so() -> None:
    """The finality rule needs to know that an earlier attempt of the call may have reached the PSP."""
    psp = ScriptedPsp([unavailable(possibly=True), PspRejectedError("401", code="api_key_invalid")])
    provider = RetryingProvider(psp, RetryPolicy(max_attempts=5), sleep=RecordingSleep())
    with pytest.raises(PspRejectedError) as caught:
        await provider.charge(ORDER, Deadline.after(5))
    assert caught.value.possibly_executed
    assert caught.value.code == "api_key_invalid"


async def test_a_first_attempt_rejection_is_not_marked_possibly_executed() -> None:
    psp = ScriptedPsp([unavailable(possibly=False), PspRejectedError("400", code="parameter_invalid")])
    provider = RetryingProvider(psp, RetryPolicy(max_attempts=5), sleep=RecordingSleep())
    with pytest.raises(PspRejectedError) as caught:
        await provider.charge(ORDER, Deadline.after(5))
    assert not caught.value.possibly_executed


async def test_the_payee_check_is_retried_and_reported_by_its_result() -> None:
    """Verification of Payee goes through the same retries as every PSP call; attempts are labelled by
    the scheme's result, never by the name."""
    psp = ScriptedPsp([unavailable(), unavailable(retry_after=0.5)])
    reports: list[AttemptReport] = []
    sleep = RecordingSleep()
    provider = RetryingProvider(psp, RetryPolicy(max_attempts=5), observers=[reports.append], sleep=sleep)
    order = PayeeCheckOrder("po_1", "c", iban="DE89370400440532013000", name="Mueller GmbH")
    answer = await provider.verify_payee(order, Deadline.none())
    assert answer == PayeeAnswer(PayeeMatch.CLOSE_MATCH, "Müller GmbH", "req_1")
    assert psp.keys == ["payee:po_1"] * 3
    assert sleep.waits[1] == 0.5
    assert [(r.operation, r.outcome, r.psp_request_id) for r in reports][-1] == (
        "verify_payee",
        "payee_close_match",
        "req_1",
    )
    assert "Müller" not in repr(order) + repr(answer)
    assert "DE89" not in repr(order)
