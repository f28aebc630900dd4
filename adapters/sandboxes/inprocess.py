"""An instant, deterministic PSP living in the server process.

It behaves like an idempotent PSP — the same PSP key always gets the same result and executes once —
declines Stripe's test payment methods the way Stripe does, and can be told to be unavailable or to
lose answers. Used by unit/integration tests and the benchmark (as the "instant PSP" floor), and by
`payments serve` only when configured with PAYMENTS_PSP=inprocess.

Its ledger is two mappings, so tests can hand it mappings shared between processes (a
multiprocessing manager's dicts) and count PSP calls across several server processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import Callable, MutableMapping

from adapters.bank.payee_check import answer_of
from adapters.sandboxes.bank_payees import payee_answer
from adapters.sandboxes.faults import ScriptedFaults
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
from server.domain.model import Failure, PayoutDestination
from server.domain.money import Money

DECLINES: dict[str, Failure] = {
    "pm_card_visa_chargeDeclined": Failure("card_declined", "Your card was declined.", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": Failure(
        "card_declined", "Your card has insufficient funds.", "insufficient_funds"
    ),
    "pm_card_chargeDeclinedExpiredCard": Failure("expired_card", "Your card has expired.", "expired_card"),
}
SUCCEEDING = frozenset({"pm_card_visa", "pm_card_mastercard", "pm_card_amex"})
IN_PROCESS_KEY_TTL_SECONDS = 30 * 86400.0  # it keeps every key as long as it lives; reported like a PSP's
REQUIRING_ACTION = frozenset({"pm_card_authenticationRequired", "pm_card_threeDSecure2Required"})


class FaultKind:
    """The in-process PSP's faults, named for what the service sees: it has no connection to break.

    ``LOSE_ANSWER`` is the HTTP sandboxes' ``drop_after_work``; ``UNAVAILABLE`` (a refusal the caller
    knows executed nothing) has no HTTP twin, which is why this is not :class:`.faults.FaultKind`.
    The queue of scripted faults is the shared one.
    """

    UNAVAILABLE = "unavailable"  # refused before doing anything
    LOSE_ANSWER = "lose_answer"  # does the work, then the answer is lost


class InProcessSandbox:
    """Single-attempt adapter (wrap it with adapters.retry.RetryingProvider)."""

    # PaymentProvider facts that never change for this PSP.
    key_ttl_seconds = IN_PROCESS_KEY_TTL_SECONDS
    payouts_can_return = False  # a payout it paid stays paid

    def __init__(
        self,
        name: str = "sandbox",
        *,
        calls: MutableMapping[str, int] | None = None,
        results: MutableMapping[str, tuple[str, str, str, str, str]] | None = None,
        latency_seconds: float = 0.0,
        lookup_window_seconds: float = IN_PROCESS_KEY_TTL_SECONDS,
    ) -> None:
        self._name = name
        self._lookup_window_seconds = lookup_window_seconds
        # Calls are counted under this instance's own keys: several processes sharing the mapping never
        # race on one counter, so a shared total is exact.
        self._instance = uuid.uuid4().hex[:8]
        self.calls: MutableMapping[str, int] = calls if calls is not None else {}
        self._results: MutableMapping[str, tuple[str, str, str, str, str]] = results if results is not None else {}
        self._latency = latency_seconds
        self._lock = threading.Lock()
        self._faults: ScriptedFaults[str] = ScriptedFaults()
        self._down = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def lookup_window_seconds(self) -> float:
        return self._lookup_window_seconds

    # -- control, for tests -------------------------------------------------------------------

    def fail_next(self, count: int, kind: str = FaultKind.UNAVAILABLE) -> None:
        with self._lock:
            self._faults.add(kind, count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_latency(self, seconds: float) -> None:
        """Makes every call take this long, e.g. to keep an execution in flight during a storm."""
        self._latency = seconds

    def set_down(self, down: bool) -> None:
        """While down, every request is refused (connection refused, nothing executed)."""
        self._down = down

    def total_calls(self) -> int:
        """PSP requests received, retries and replays included, by every process sharing the ledger."""
        return sum(self.calls.values())

    def calls_for(self, psp_key: str) -> int:
        return sum(n for counter, n in self.calls.items() if counter.endswith(f":{psp_key}"))

    def executions(self) -> int:
        return len(self._results)

    # -- the PSP ------------------------------------------------------------------------------

    def prepare_payout(self, order: PayoutOrder) -> dict[str, str]:
        return {}

    def amount_problem(self, amount: Money, operation: Operation) -> str | None:
        return None  # it takes any amount the service accepts

    def destination_problem(self, destination: PayoutDestination) -> str | None:
        return None

    async def charge(self, order: ChargeOrder, deadline: Deadline) -> PspOutcome:
        return await self._execute(order.psp_key, "ch", lambda: self._charge_result(order))

    async def refund(self, order: RefundOrder, deadline: Deadline) -> PspOutcome:
        if not order.payment_psp_reference:
            raise PspRejectedError("refund of a charge this PSP does not know", code="resource_missing")
        return await self._execute(order.psp_key, "re", lambda: PspOutcome(OutcomeKind.SUCCEEDED))

    async def payout(self, order: PayoutOrder, deadline: Deadline) -> PspOutcome:
        return await self._execute(order.psp_key, "po", lambda: PspOutcome(OutcomeKind.SUCCEEDED))

    async def capture(self, order: CaptureOrder, deadline: Deadline) -> PspOutcome:
        """Takes the amount; the charge keeps its reference. What remains capturable is the payment's to
        work out (this PSP keeps no ledger of authorizations)."""
        kind = OutcomeKind.SUCCEEDED if order.final else OutcomeKind.AUTHORIZED
        return await self._execute(
            order.psp_key, "cp", lambda: PspOutcome(kind), reference=order.payment_psp_reference or None
        )

    async def cancel(self, order: CancelOrder, deadline: Deadline) -> PspOutcome:
        return await self._execute(
            order.psp_key, "cn", lambda: PspOutcome(OutcomeKind.CANCELED), reference=order.payment_psp_reference or None
        )

    async def verify_payee(self, order: PayeeCheckOrder, deadline: Deadline) -> PayeeAnswer:
        """The bank sandbox's test accounts answer the same here (adapters/sandboxes/bank_payees.py).

        Not counted in `calls` and not subject to scripted faults: those describe the payout's transfer,
        which tests count per PSP key; only `set_down` (nothing reachable) stops the question too.
        """
        if self._down:
            raise PspUnavailableError("sandbox is down (connection refused)", possibly_executed=False)
        code, holder = payee_answer(order.iban, order.name)
        answer = answer_of(code, holder)
        if answer is None:  # the register answers in the scheme's codes only
            raise PspUnavailableError(f"sandbox: unknown payee answer {code!r}", possibly_executed=False)
        return answer

    async def lookup(self, order: Order, psp_reference: str | None, deadline: Deadline) -> PspOutcome:
        if self._down:
            raise PspUnavailableError("sandbox is down (connection refused)", possibly_executed=False)
        stored = self._results.get(order.psp_key)
        return _decode(stored) if stored else PspOutcome(OutcomeKind.UNKNOWN)

    def _charge_result(self, order: ChargeOrder) -> PspOutcome:
        method = order.payment_method
        if method in DECLINES:
            return PspOutcome(OutcomeKind.FAILED, failure=DECLINES[method])
        if method in REQUIRING_ACTION:
            return PspOutcome(OutcomeKind.REQUIRES_ACTION)
        if method in SUCCEEDING:
            return PspOutcome(OutcomeKind.AUTHORIZED if order.capture_manually else OutcomeKind.SUCCEEDED)
        raise PspRejectedError(f"No such PaymentMethod: '{method[:40]}'", code="resource_missing")

    async def _execute(
        self, psp_key: str, prefix: str, decide: Callable[[], PspOutcome], *, reference: str | None = None
    ) -> PspOutcome:
        counter = f"{self._instance}:{psp_key}"
        self.calls[counter] = self.calls.get(counter, 0) + 1
        if self._latency:
            await asyncio.sleep(self._latency)
        if self._down:
            raise PspUnavailableError("sandbox is down (connection refused)", possibly_executed=False)
        fault = self._take_fault()
        if fault == FaultKind.UNAVAILABLE:
            raise PspUnavailableError("sandbox: 503 service unavailable", possibly_executed=False)
        stored = self._results.get(psp_key)
        if stored is None:
            outcome = decide()
            reference = reference or f"sbx_{prefix}_{hashlib.sha256(psp_key.encode()).hexdigest()[:24]}"
            outcome = PspOutcome(outcome.kind, reference, outcome.failure, {"psp_request_id": f"req_{reference}"})
            self._results[psp_key] = _encode(outcome)
        else:
            outcome = _decode(stored)
        if fault == FaultKind.LOSE_ANSWER:
            raise PspUnavailableError("sandbox: connection reset after the work", possibly_executed=True)
        return outcome

    def _take_fault(self) -> str | None:
        with self._lock:
            return self._faults.take()


def _encode(outcome: PspOutcome) -> tuple[str, str, str, str, str]:
    failure = outcome.failure or Failure("")
    return (
        str(outcome.kind),
        outcome.psp_reference or "",
        failure.code,
        failure.message,
        failure.decline_code,
    )


def _decode(stored: tuple[str, str, str, str, str]) -> PspOutcome:
    kind, reference, code, message, decline = stored
    failure = Failure(code, message, decline) if code else None
    return PspOutcome(OutcomeKind(kind), reference or None, failure, {"psp_request_id": f"req_{reference}"})
