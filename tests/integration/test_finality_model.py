"""A model-based test of "finality needs evidence" (docs/contract.md, Finality), with hypothesis.stateful.

The real engine drives a scripted PSP: `Operations` and `BackgroundWorker` as wired by
`server.bootstrap.wire`, on the session's PostgreSQL, the PSP behind `adapters.retry.RetryingProvider`
(fast policy, no-op sleep). The scripted PSP keeps its own ledger (what it executed, under which PSP
idempotency key, with which outcome) and rules put it into modes, or script the next calls for one
operation: declines, 5xx, 429, timeouts before and after the work, lost answers, 401, idempotency_error
for a key it holds, 400, an outage, pending answers it settles later, and our process crashing before
the call or after the PSP executed. It forgets idempotency keys past its key lifetime, as Stripe does
after 24 h: a resend under a forgotten key executes again, which the service must never do.

Time is simulated in the database: the service reads a key's age as `now() - created_at`, so "time
passes" moves this example's stored instants back (key ages, recovery times, leases, poll times) and the
PSP's clock ahead. Client calls, worker rounds (`BackgroundWorker.run` for exactly one claim round),
client retries racing a worker round, and restarts (a new engine on the same database) are the rules.

After every step, reading PostgreSQL and the PSP's ledger:
- at most one PSP execution per PSP idempotency key and per operation of ours;
- FAILED only with evidence: the PSP holds a failed execution, or it refused the request (400) and
  holds none; SUCCEEDED/PAID only if the PSP executed it, with that outcome and reference; the same for
  every reply a client receives;
- refunded <= captured, in our database (refunded and reserved match the refunds) and at the PSP;
- the PSP saw no request a correct service never sends; the worker swallowed no error.
At the end of every example the faults stop and, with every backoff elapsed, a few worker rounds must
give every resource the PSP's answer (in progress only while the PSP says so, or, never executed, past
the key lifetime); then the PSP settles what it had pending and a few more rounds must end those too.

The examples share one database (the event log refuses TRUNCATE): each is a client of its own, and its
leftover work is retired at its end. Bounded for `make test` (PAYMENTS_MODEL_EXAMPLES, default 30, and
PAYMENTS_MODEL_STEPS, default 50, make a longer run); the steps explored are printed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from adapters.bank.payee_check import answer_of
from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider, RetryPolicy
from adapters.sandboxes.bank_payees import payee_answer
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.app.commands import ChargeCommand, PayoutCommand, RefundCommand
from server.app.context import CallContext
from server.app.deadline import Deadline
from server.app.execution import ExecutionPolicy
from server.app.operations import Operations
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
from server.app.replies import Reply
from server.app.worker import BackgroundWorker, WorkerPolicy
from server.bootstrap import wire
from server.config import Settings
from server.domain.errors import IdempotencyKeyInUse, PspUnavailable
from server.domain.finality import RecoverySchedule, Rejection
from server.domain.idempotency import Operation, psp_idempotency_key
from server.domain.ids import IdKind, format_id
from server.domain.model import Failure, PayeeMatch, PayoutDestination, SepaDestination, StripeAccountDestination
from server.domain.money import Money
from storage.database import Database, create_pool

T = TypeVar("T")

PSP_NAME = "scripted"
# The scripted PSP's key lifetime and look-up window, in simulated seconds: short enough that a few time
# jumps cross both, long against the real seconds a run takes.
KEY_TTL_SECONDS = 900.0
LOOKUP_WINDOW_SECONDS = 2700.0
SCHEDULE = RecoverySchedule(idle_seconds=5.0, first_seconds=1.0, early_cap_seconds=30.0, late_cap_seconds=300.0)
# Past every backoff of the schedule and of the status poller (whose cap is 300 s).
PAST_EVERY_BACKOFF = 301.0
FINAL_ROUNDS = 3
# How far simulated time jumps: not at all, past the idle time, the early cap, every backoff, the PSP's
# key lifetime, its look-up window.
TIME_STEPS = [0.0, 6.0, 31.0, PAST_EVERY_BACKOFF, KEY_TTL_SECONDS + 1.0, LOOKUP_WINDOW_SECONDS + 1.0]

EXAMPLES = int(os.environ.get("PAYMENTS_MODEL_EXAMPLES", "30"))
STEPS = int(os.environ.get("PAYMENTS_MODEL_STEPS", "50"))
# A refund the PSP answers "pending" must be polled to its end (PENDING -> PENDING kept no poll schedule
# until the model found it); PAYMENTS_MODEL_PENDING_REFUNDS=0 answers refunds finally in "slow" mode.
PENDING_REFUNDS = os.environ.get("PAYMENTS_MODEL_PENDING_REFUNDS", "1") == "1"


# -- the scripted PSP ---------------------------------------------------------------------------------


class Fault(StrEnum):
    """How the PSP answers a call: its persistent mode, or a one-shot fault scripted for one PSP key."""

    HEALTHY = "healthy"
    DECLINE = "decline"  # executes with a FAILED outcome (card declined, account closed, ...)
    SLOW = "slow"  # executes, answers PENDING; settles later (psp_finishes, a minute, or the end)
    HTTP_5XX = "5xx"  # nothing executed, possibly_executed=True
    HTTP_429 = "429"  # nothing executed, possibly_executed=False
    TIMEOUT_BEFORE_WORK = "timeout_before_work"  # the attempt times out; nothing executed
    TIMEOUT_AFTER_WORK = "timeout_after_work"  # executed, then the attempt times out
    LOSE_ANSWER = "lose_answer"  # executed, then the connection resets
    CREDENTIALS = "401"  # our API key refused; nothing executed
    KEY_USED = "idempotency_error"  # 400 idempotency_error for a key it holds; healthy for others
    BAD_REQUEST = "400"  # the request is refused; nothing executed
    DOWN = "down"  # connection refused, every call
    CRASH_BEFORE_CALL = "crash_before_call"  # our process dies before the request leaves
    CRASH_AFTER_WORK = "crash_after_work"  # executed, then our process dies before recording it


PERSISTENT_MODES = [f for f in Fault if f not in (Fault.CRASH_BEFORE_CALL, Fault.CRASH_AFTER_WORK)]
# What the first calls of a new operation meet (then the PSP's mode applies).
FIRST_CALLS = st.lists(st.sampled_from(list(Fault)), max_size=3)


class SimulatedCrash(Exception):
    """Our process died in the middle of a call: nothing after it runs (no release, no record)."""


@dataclass
class Execution:
    """One execution at the PSP: money moved (or a decline was recorded) under `psp_key`."""

    operation: Operation
    psp_key: str
    our_id: str  # the public id of our payment, refund or payout
    payment_id: str  # refunds: the refunded payment; charges: their own id
    amount: int
    reference: str
    first_answer: OutcomeKind  # what a replay of the key answers (Stripe replays the first response)
    outcome: OutcomeKind  # its current state, as a lookup shows it
    failure: Failure | None
    first_seen: float  # the PSP's clock when it executed (simulated seconds)


@dataclass
class SimulatedClock:
    """Wall-clock seconds plus the simulated time that passed; the PSP's notion of a key's age."""

    shift: float = 0.0

    def now(self) -> float:
        return time.time() + self.shift


DECLINED = Failure("card_declined", "Your card was declined.", "generic_decline")
_ANSWERS = {Fault.DECLINE: OutcomeKind.FAILED, Fault.SLOW: OutcomeKind.PENDING}  # otherwise SUCCEEDED


class ScriptedPsp:
    """A single-attempt PSP adapter (wrapped in RetryingProvider) with its own ledger and fault modes."""

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock = clock
        self.mode = Fault.HEALTHY
        self.settles_later = False  # a healthy call is answered "pending" and finishes later
        self.settle_after: float | None = None  # ...this many simulated seconds later; None: when told
        # One-shot faults for the next calls under a PSP key (creates and lookups), before the mode applies.
        # Per key, so that concurrent worker jobs meet the same faults whatever order they run in.
        self.script: dict[str, list[Fault]] = {}
        self.executions: list[Execution] = []
        self.memory: dict[str, Execution] = {}  # idempotency keys it still honours
        self.refused: set[str] = set()  # PSP keys it answered 400 (parameter) to: evidence of no execution
        self.violations: list[str] = []  # requests a correct service never sends
        self.calls = 0
        self.crashes = 0

    @property
    def name(self) -> str:
        return PSP_NAME

    @property
    def key_ttl_seconds(self) -> float:
        return KEY_TTL_SECONDS

    @property
    def lookup_window_seconds(self) -> float:
        return LOOKUP_WINDOW_SECONDS

    @property
    def payouts_can_return(self) -> bool:
        return True  # paid payouts are watched (polled); it never returns one, so they must stay PAID

    def prepare_payout(self, order: PayoutOrder) -> dict[str, str]:
        return {}

    def amount_problem(self, amount: Money, operation: Operation) -> str | None:
        return None  # it takes any amount the service accepts

    def destination_problem(self, destination: PayoutDestination) -> str | None:
        return None  # and pays out to Stripe accounts and SEPA accounts alike

    # -- the ledger, for the invariants -------------------------------------------------------

    def executed(self, psp_key: str) -> list[Execution]:
        return [e for e in self.executions if e.psp_key == psp_key]

    def forgettable(self) -> list[str]:
        """Keys past the PSP's key lifetime: it may forget them (its contract says it will)."""
        now = self.clock.now()
        return [k for k, e in self.memory.items() if now - e.first_seen >= KEY_TTL_SECONDS + 1.0]

    def forget(self, keys: list[str]) -> None:
        for key in keys:
            del self.memory[key]

    def finish_pending(self, outcome: OutcomeKind, *, older_than: float = 0.0) -> None:
        now = self.clock.now()
        for execution in self.executions:
            if execution.outcome is OutcomeKind.PENDING and now - execution.first_seen >= older_than:
                execution.outcome = outcome
                execution.failure = DECLINED if outcome is OutcomeKind.FAILED else None

    # -- the port -----------------------------------------------------------------------------

    async def charge(self, order: ChargeOrder, deadline: Deadline) -> PspOutcome:
        return self._create(Operation.CHARGE, order.psp_key, order.payment_id, order.payment_id, order.amount)

    async def refund(self, order: RefundOrder, deadline: Deadline) -> PspOutcome:
        charges = [e for e in self.executions if e.operation is Operation.CHARGE and e.our_id == order.payment_id]
        if not charges or charges[0].outcome is not OutcomeKind.SUCCEEDED:
            self.violations.append(f"refund {order.refund_id} of a charge the PSP holds no success for")
        elif charges[0].reference != order.payment_psp_reference:
            self.violations.append(f"refund {order.refund_id} names charge {order.payment_psp_reference!r}")
        return self._create(Operation.REFUND, order.psp_key, order.refund_id, order.payment_id, order.amount)

    async def payout(self, order: PayoutOrder, deadline: Deadline) -> PspOutcome:
        return self._create(Operation.PAYOUT, order.psp_key, order.payout_id, order.payout_id, order.amount)

    async def capture(self, order: CaptureOrder, deadline: Deadline) -> PspOutcome:
        raise PspRejectedError("the model charges with automatic capture only", code="unsupported_operation")

    async def cancel(self, order: CancelOrder, deadline: Deadline) -> PspOutcome:
        raise PspRejectedError("the model charges with automatic capture only", code="unsupported_operation")

    async def verify_payee(self, order: PayeeCheckOrder, deadline: Deadline) -> PayeeAnswer:
        """The bank sandbox's test accounts (adapters/sandboxes/bank_payees.py): the model's SEPA account is
        Müller GmbH's, named as its holder, so every check lets the payout on to the transfer this model
        is about (the policy on the other answers: tests/e2e/test_payee_verification.py)."""
        code, holder = payee_answer(order.iban, order.name)
        answer = answer_of(code, holder)
        if answer is None or answer.result is not PayeeMatch.MATCH:
            self.violations.append(f"payee check of {order.payout_id} answered {code}: the model expects a match")
            raise PspUnavailableError("unexpected payee answer", possibly_executed=False)
        return answer

    async def lookup(self, order: Order, psp_reference: str | None, deadline: Deadline) -> PspOutcome:
        fault = self._next_fault(order.psp_key)
        self._fail_before_work(fault, lookup=True)
        if fault in (Fault.LOSE_ANSWER, Fault.TIMEOUT_AFTER_WORK, Fault.CRASH_AFTER_WORK):
            self._fail_after_work(fault)
        found = self.executed(order.psp_key)
        if not found:
            return PspOutcome(OutcomeKind.UNKNOWN)
        execution = found[0]
        if psp_reference is not None and psp_reference != execution.reference:
            self.violations.append(f"lookup of {order.psp_key} by a reference it never issued: {psp_reference}")
        return PspOutcome(execution.outcome, execution.reference, execution.failure)

    # -- behaviour ----------------------------------------------------------------------------

    def _next_fault(self, psp_key: str) -> Fault:
        self.calls += 1
        script = self.script.get(psp_key)
        fault = script.pop(0) if script else self.mode
        STATS.faults[fault] += 1
        return fault

    def _fail_before_work(self, fault: Fault, *, lookup: bool = False, psp_key: str = "") -> None:
        if fault is Fault.DOWN:
            raise PspUnavailableError("scripted: connection refused", possibly_executed=False)
        if fault is Fault.HTTP_429:
            raise PspUnavailableError("scripted: HTTP 429", possibly_executed=False, retry_after=0.0)
        if fault is Fault.HTTP_5XX:
            raise PspUnavailableError("scripted: HTTP 503", possibly_executed=True)
        if fault is Fault.TIMEOUT_BEFORE_WORK:
            raise TimeoutError  # what asyncio.timeout raises when the attempt's budget runs out
        if fault is Fault.CRASH_BEFORE_CALL:
            self.crashes += 1
            raise SimulatedCrash("our process died before the request left")
        if fault is Fault.CREDENTIALS:
            raise PspRejectedError("scripted: invalid API key", code="authentication_error",
                                   rejection=Rejection.CREDENTIALS)  # fmt: skip
        if lookup:
            return
        if fault is Fault.BAD_REQUEST:
            self.refused.add(psp_key)
            raise PspRejectedError("scripted: parameter_invalid", code="parameter_invalid")
        if fault is Fault.KEY_USED and psp_key in self.memory:
            raise PspRejectedError("scripted: idempotency_error", code="idempotency_error",
                                   rejection=Rejection.KEY_USED)  # fmt: skip

    def _fail_after_work(self, fault: Fault) -> None:
        if fault is Fault.LOSE_ANSWER:
            raise PspUnavailableError("scripted: connection reset after the work", possibly_executed=True)
        if fault is Fault.TIMEOUT_AFTER_WORK:
            raise TimeoutError
        if fault is Fault.CRASH_AFTER_WORK:
            self.crashes += 1
            raise SimulatedCrash("our process died after the PSP executed")

    def _create(self, operation: Operation, psp_key: str, our_id: str, payment_id: str, amount: Money) -> PspOutcome:
        fault = self._next_fault(psp_key)
        self._fail_before_work(fault, psp_key=psp_key)
        held = self.memory.get(psp_key)
        if held is None:
            # A key it does not hold (never seen, or forgotten past its lifetime) executes, again if need be.
            answer = _ANSWERS.get(fault, OutcomeKind.PENDING if self.settles_later else OutcomeKind.SUCCEEDED)
            if answer is OutcomeKind.PENDING and operation is Operation.REFUND and not PENDING_REFUNDS:
                answer = OutcomeKind.SUCCEEDED  # see PENDING_REFUNDS
            held = Execution(
                operation=operation, psp_key=psp_key, our_id=our_id, payment_id=payment_id,
                amount=amount.amount_minor, reference=f"{operation.value}_{len(self.executions) + 1}",
                first_answer=answer, outcome=answer, failure=DECLINED if answer is OutcomeKind.FAILED else None,
                first_seen=self.clock.now(),
            )  # fmt: skip
            self.executions.append(held)
            self.memory[psp_key] = held
        elif (held.our_id, held.amount) != (our_id, amount.amount_minor):
            self.violations.append(f"{psp_key} re-sent with other parameters")
        self._fail_after_work(fault)
        failure = DECLINED if held.first_answer is OutcomeKind.FAILED else None
        return PspOutcome(held.first_answer, held.reference, failure)


async def _no_sleep(_seconds: float) -> None:
    return None


FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.002, attempt_timeout=5.0)


# -- what the database holds ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One payment, refund or payout with its key, as the invariants read it."""

    operation: Operation
    id: uuid.UUID
    public_id: str
    key: str
    psp_key: str
    status: str
    amount: int
    psp_reference: str | None
    key_age: float
    key_finished: bool
    payment_id: uuid.UUID | None = None  # refunds
    captured: int = 0  # payments
    refunded: int = 0
    reserved: int = 0


_KINDS = {Operation.CHARGE: IdKind.PAYMENT, Operation.REFUND: IdKind.REFUND, Operation.PAYOUT: IdKind.PAYOUT}
_SUCCESS = {Operation.CHARGE: "SUCCEEDED", Operation.REFUND: "SUCCEEDED", Operation.PAYOUT: "PAID"}
_IN_PROGRESS = {Operation.CHARGE: "PROCESSING", Operation.REFUND: "PENDING", Operation.PAYOUT: "PROCESSING"}

_TABLES = ((Operation.CHARGE, "payments"), (Operation.REFUND, "refunds"), (Operation.PAYOUT, "payouts"))

# Every statement below is scoped to one example's client: the database is shared by all the examples of a
# run (the event log refuses TRUNCATE, rightly), and each example is a client of its own.
_SELECT = """
    SELECT r.*, k.recovery_point, EXTRACT(EPOCH FROM now() - k.created_at)::float8 AS key_age
    FROM {table} r JOIN idempotency_keys k ON k.client_id = r.client_id AND k.idempotency_key = r.idempotency_key
    WHERE r.client_id = $1
    ORDER BY r.idempotency_key
"""


async def read_rows(conn: Any, client: str) -> list[Row]:
    rows: list[Row] = []
    for operation, table in _TABLES:
        for r in await conn.fetch(_SELECT.format(table=table), client):
            rows.append(Row(
                operation=operation, id=r["id"], public_id=format_id(_KINDS[operation], r["id"]),
                key=r["idempotency_key"], psp_key=psp_idempotency_key(client, r["idempotency_key"], operation),
                status=r["status"], amount=r["amount_minor"], psp_reference=r["psp_reference"], key_age=r["key_age"],
                key_finished=r["recovery_point"] == "finished",
                payment_id=r["payment_id"] if operation is Operation.REFUND else None,
                captured=r["amount_captured"] if operation is Operation.CHARGE else 0,
                refunded=r["amount_refunded"] if operation is Operation.CHARGE else 0,
                reserved=r["amount_reserved"] if operation is Operation.CHARGE else 0,
            ))  # fmt: skip
    return rows


_BY = "make_interval(secs => $2::float8)"
# Simulated time passing ($2 seconds): every stored instant moves back.
_SHIFT = [
    f"UPDATE idempotency_keys SET created_at = created_at - {_BY}, updated_at = updated_at - {_BY},"
    f" recover_after = recover_after - {_BY}, locked_until = locked_until - {_BY},"
    f" reply_stored_at = reply_stored_at - {_BY} WHERE client_id = $1",
    *(f"UPDATE {t} SET created_at = created_at - {_BY}, next_poll_at = next_poll_at - {_BY} WHERE client_id = $1"
      for _, t in _TABLES),
]  # fmt: skip

# Every backoff has elapsed and every lease has run out (as after a crash); key ages are untouched.
_ALL_DUE = [
    "UPDATE idempotency_keys SET recover_after = now() - interval '1 second',"
    " locked_until = LEAST(locked_until, now() - interval '1 second')"
    " WHERE client_id = $1 AND recovery_point = 'started'",
    # LEAST keeps a row that is already due ahead of the rest, as in production, where a row the last claim
    # left out (the claim takes 50) keeps its older due time and is first in line next round.
    *(f"UPDATE {t} SET next_poll_at = LEAST(next_poll_at, now() - interval '1 second')"
      " WHERE client_id = $1 AND next_poll_at IS NOT NULL" for _, t in _TABLES),
]  # fmt: skip

_EXPIRE_LEASES = (
    "UPDATE idempotency_keys SET locked_until = now() - interval '1 second'"
    " WHERE client_id = $1 AND locked_until > now()"
)

# The end of an example: nothing of this client is left for the next example's worker to pick up.
_RETIRE = [
    "UPDATE idempotency_keys SET recovery_point = 'finished', reply_code = 14, reply_body = NULL,"
    " locked_until = NULL, lock_token = NULL, recover_after = NULL"
    " WHERE client_id = $1 AND recovery_point = 'started'",
    *(f"UPDATE {t} SET next_poll_at = NULL WHERE client_id = $1 AND next_poll_at IS NOT NULL" for _, t in _TABLES),
]


# -- the engine, as a process would run it -------------------------------------------------------------


class _OneRound(asyncio.Event):
    """A stop signal that lets `BackgroundWorker.run` make exactly one claim round: it reads "not set"
    once, then is set, so run() finishes that round's jobs (within its grace) and returns."""

    def __init__(self) -> None:
        super().__init__()
        self._asked = False

    def is_set(self) -> bool:
        if not self._asked:
            self._asked = True
            self.set()
            return False
        return super().is_set()


@dataclass
class Engine:
    db: Database
    operations: Operations
    worker: BackgroundWorker


async def start_engine(url: str, providers: ProviderSet) -> Engine:
    """What `payments serve` builds: Operations and the worker from bootstrap.wire, on a new pool."""
    settings = Settings(psp_budget_seconds=5.0)
    db = Database(await create_pool(url, min_size=1, max_size=4))
    policy = ExecutionPolicy(in_flight_wait_seconds=0.0, psp_budget_seconds=5.0, recovery=SCHEDULE)
    core = wire(settings, db, providers, policy)
    worker_policy = WorkerPolicy(
        interval_seconds=0.0, recovery=SCHEDULE, lease_seconds=30.0, psp_budget_seconds=5.0,
        first_poll_seconds=1.0, max_poll_interval_seconds=300.0,
    )  # fmt: skip
    return Engine(db, core.operations, core.worker(settings, worker_policy))


class ErrorLog(logging.Handler):
    """Errors the worker swallows (a failed round, a failed job): each is a bug, except a simulated crash."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and isinstance(record.exc_info[1], SimulatedCrash):
            return
        self.records.append(self.format(record))

    @contextlib.contextmanager
    def watching(self, *loggers: str) -> Iterator[None]:
        for name in loggers:
            logging.getLogger(name).addHandler(self)
        try:
            yield
        finally:
            for name in loggers:
                logging.getLogger(name).removeHandler(self)


@dataclass
class Environment:
    """What outlives one example: the event loop, the database and a connection for the invariants."""

    loop: asyncio.AbstractEventLoop
    url: str
    conn: Any
    errors: ErrorLog


@dataclass
class Stats:
    examples: int = 0
    final_checks: int = 0
    first_failure: int | None = None  # the example in which a check first failed (before shrinking)
    steps: Counter[str] = field(default_factory=Counter)  # per rule
    faults: Counter[str] = field(default_factory=Counter)  # what the PSP's calls met
    ends: Counter[str] = field(default_factory=Counter)  # resources by status at the final checks

    def summary(self) -> str:
        def listed(counter: Counter[str]) -> str:
            return ", ".join(f"{name} {count}" for name, count in sorted(counter.items()))

        total = sum(self.steps.values())
        failed = "" if self.first_failure is None else f"; first failure in example {self.first_failure}"
        return (
            f"{self.examples} examples, {total} steps, {self.final_checks} final checks{failed}\n"
            f"  steps: {listed(self.steps)}\n  PSP calls: {listed(self.faults)}\n  ends: {listed(self.ends)}"
        )


STATS = Stats()


# -- the requests of one client ------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    operation: Operation
    key: str
    command: ChargeCommand | RefundCommand | PayoutCommand


SEPA_ACCOUNT = SepaDestination(
    iban="DE89370400440532013000", bic="COBADEFFXXX", name="Müller GmbH", country="DE", town="Berlin"
)


def _fingerprint(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def _reply_status(operation: Operation, reply: Reply) -> tuple[str, str] | None:
    """(public id, status) a reply shows, or None for a stored business error."""
    if reply.code != 0:
        return None
    if operation is Operation.CHARGE:
        payment = svc.ChargeResponse.FromString(reply.body).payment
        return payment.id, res.PaymentStatus.Name(payment.status).removeprefix("PAYMENT_STATUS_")
    if operation is Operation.REFUND:
        refund = svc.RefundResponse.FromString(reply.body).refund
        return refund.id, res.RefundStatus.Name(refund.status).removeprefix("REFUND_STATUS_")
    payout = svc.PayoutResponse.FromString(reply.body).payout
    return payout.id, res.PayoutStatus.Name(payout.status).removeprefix("PAYOUT_STATUS_")


# -- the machine ---------------------------------------------------------------------------------------


class FinalityModel(RuleBasedStateMachine):
    env: ClassVar[Environment]

    charges = Bundle("charges")
    refunds = Bundle("refunds")
    payouts = Bundle("payouts")

    def __init__(self) -> None:
        super().__init__()
        STATS.examples += 1
        self.client = f"model-{STATS.examples}-{uuid.uuid4().hex[:8]}"  # a client of its own, see _SELECT
        self.clock = SimulatedClock()
        self.psp = ScriptedPsp(self.clock)
        self.providers = ProviderSet(cards=RetryingProvider(self.psp, FAST_RETRIES, sleep=_no_sleep))
        self.serial = 0
        self.rows: list[Row] = []
        self.clean = True  # false while a step runs, and for good if one raised
        self.engine = self._run(start_engine(self.env.url, self.providers))
        self.env.errors.records.clear()

    # -- plumbing -----------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.env.loop.run_until_complete(coro)

    async def _execute_all(self, statements: list[str], *args: object) -> None:
        for statement in statements:
            await self.env.conn.execute(statement, self.client, *args)

    @contextlib.contextmanager
    def _step(self, name: str) -> Iterator[None]:
        STATS.steps[name] += 1
        self.clean = False
        yield
        self.clean = True

    def _ctx(self) -> CallContext:
        return CallContext(client_id=self.client, deadline=Deadline.after(10.0))

    def _restart(self, *, expire_leases: bool) -> None:
        """A new process on the same database: nothing survives in memory."""
        self._run(self.engine.db.close())
        if expire_leases:
            self._run(self.env.conn.execute(_EXPIRE_LEASES, self.client))
        self.engine = self._run(start_engine(self.env.url, self.providers))

    def _send(self, request: Request) -> None:
        """One client call; a crash of our process inside it restarts the engine."""
        ops = self.engine.operations
        command = request.command
        try:
            if isinstance(command, ChargeCommand):
                reply = self._run(ops.charge(command, self._ctx()))
            elif isinstance(command, RefundCommand):
                reply = self._run(ops.refund(command, self._ctx()))
            else:
                reply = self._run(ops.payout(command, self._ctx()))
        except (PspUnavailable, IdempotencyKeyInUse):
            return
        except SimulatedCrash:
            self._restart(expire_leases=False)
            return
        self._check_reply(request, reply)

    def _check_reply(self, request: Request, reply: Reply) -> None:
        """What the client is told is the truth: a final status only with the PSP's evidence."""
        shown = _reply_status(request.operation, reply)
        if shown is None:
            return
        public_id, status = shown
        psp_key = psp_idempotency_key(self.client, request.key, request.operation)
        self._check_evidence(request.operation, public_id, psp_key, status, None, "reply")

    def _worker_round(self) -> None:
        """One claim round of `BackgroundWorker.run`, its jobs run to completion; if a job's process
        "died" (a simulated crash), a new process takes over."""
        crashes = self.psp.crashes
        self._run(self.engine.worker.run(_OneRound(), grace_seconds=30.0))
        if self.psp.crashes != crashes:
            self._restart(expire_leases=False)

    def _advance(self, seconds: float) -> None:
        """Simulated time passes: stored instants move back, the PSP's clock ahead, and the PSP forgets
        the idempotency keys past its key lifetime (as Stripe does after 24 h)."""

        self._run(self._execute_all(_SHIFT, seconds))
        self.clock.shift += seconds
        self.psp.forget(self.psp.forgettable())
        if self.psp.settle_after is not None:
            self.psp.finish_pending(OutcomeKind.SUCCEEDED, older_than=self.psp.settle_after)

    def _script(self, request: Request, faults: list[Fault]) -> None:
        self.psp.script[psp_idempotency_key(self.client, request.key, request.operation)] = list(faults)

    def _next_key(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    # -- rules: the client ----------------------------------------------------------------------

    @initialize(kind=st.sampled_from(["at_once", "at_once", "settles_within_a_minute", "settles_when_told"]))
    def psp_kind(self, kind: str) -> None:
        """A PSP that answers at once, or one that accepts and settles later (Stripe "processing", a bank):
        by itself a minute later, or only when the psp_finishes rule (or the end of the example) says so."""
        with self._step("psp_kind"):
            self.psp.settles_later = kind != "at_once"
            self.psp.settle_after = 60.0 if kind == "settles_within_a_minute" else None

    @rule(target=charges, amount=st.sampled_from([100, 2500, 99_999]), faults=FIRST_CALLS)
    def charge(self, amount: int, faults: list[Fault]) -> Request:
        with self._step("charge"):
            key = self._next_key("charge")
            command = ChargeCommand(
                idempotency_key=key, fingerprint=_fingerprint("charge", amount), amount=Money(amount, "EUR"),
                payment_method="pm_card_visa", customer_id="cus_model", description="model", metadata={},
            )  # fmt: skip
            request = Request(Operation.CHARGE, key, command)
            self._script(request, faults)
            self._send(request)
            return request

    @rule(request=st.one_of(charges, refunds, payouts))
    def client_retry(self, request: Request) -> None:
        """The same request with the same key: replayed, resumed, or refused while another holds it."""
        with self._step("client_retry"):
            self._send(request)

    @rule(target=refunds, charge=charges, share=st.sampled_from(["rest", "one", "half", "all", "too_much"]),
          faults=FIRST_CALLS)  # fmt: skip
    def refund(self, charge: Request, share: str, faults: list[Fault]) -> Request:
        """A refund of a payment, whatever its state: one that has not succeeded is refused by the service
        (PAYMENT_NOT_REFUNDABLE, kept under the key), as is more than what remains."""
        with self._step("refund"):
            (payment,) = [r for r in self.rows if r.operation is Operation.CHARGE and r.key == charge.key]
            amounts = {"rest": None, "one": 1, "half": max(1, payment.amount // 2), "all": payment.amount,
                       "too_much": payment.amount + 1}  # fmt: skip
            requested = amounts[share]
            key = self._next_key("refund")
            command = RefundCommand(
                idempotency_key=key, fingerprint=_fingerprint("refund", payment.public_id, requested),
                payment_id_text=payment.public_id, amount=None if requested is None else Money(requested, "EUR"),
                reason="requested_by_customer",
            )  # fmt: skip
            request = Request(Operation.REFUND, key, command)
            self._script(request, faults)
            self._send(request)
            return request

    @rule(target=payouts, amount=st.sampled_from([100, 5000]), sepa=st.booleans(), faults=FIRST_CALLS)
    def payout(self, amount: int, sepa: bool, faults: list[Fault]) -> Request:
        with self._step("payout"):
            key = self._next_key("payout")
            destination: PayoutDestination = SEPA_ACCOUNT if sepa else StripeAccountDestination("acct_1Model")
            command = PayoutCommand(
                idempotency_key=key, fingerprint=_fingerprint("payout", amount, sepa), amount=Money(amount, "EUR"),
                destination=destination, instant=False, reference="model payout",
            )  # fmt: skip
            request = Request(Operation.PAYOUT, key, command)
            self._script(request, faults)
            self._send(request)
            return request

    # -- rules: the service ---------------------------------------------------------------------

    @rule(advance=st.sampled_from(TIME_STEPS))
    def worker_pass(self, advance: float) -> None:
        """Time passes (or not), then the recovery worker and status poller make one round."""
        with self._step("worker_pass"):
            if advance:
                self._advance(advance)
            self._worker_round()

    @rule(request=st.one_of(charges, refunds, payouts))
    def retry_during_worker_pass(self, request: Request) -> None:
        """A client retry racing the worker for the same keys: leases let exactly one of them drive it.

        Past the look-up window the two would act differently (the worker settles, a client resumes), and
        which one wins the key is timing: there they go one after the other, so that examples replay alike.
        """
        with self._step("retry_during_worker_pass"):
            self._advance(PAST_EVERY_BACKOFF)
            rows = self._run(read_rows(self.env.conn, self.client))
            if any(r.key == request.key and r.key_age >= LOOKUP_WINDOW_SECONDS - 60.0 for r in rows):
                self._send(request)
                self._worker_round()
                return

            async def race() -> None:
                ops = self.engine.operations
                command = request.command
                if isinstance(command, ChargeCommand):
                    client = ops.charge(command, self._ctx())
                elif isinstance(command, RefundCommand):
                    client = ops.refund(command, self._ctx())
                else:
                    client = ops.payout(command, self._ctx())
                outcomes = await asyncio.gather(
                    client, self.engine.worker.run(_OneRound(), grace_seconds=30.0), return_exceptions=True
                )
                for outcome in outcomes:
                    if isinstance(outcome, Reply):
                        self._check_reply(request, outcome)
                    elif isinstance(outcome, BaseException) and not isinstance(
                        outcome, (PspUnavailable, IdempotencyKeyInUse, SimulatedCrash)
                    ):
                        raise outcome

            crashes = self.psp.crashes
            self._run(race())
            if self.psp.crashes != crashes:
                self._restart(expire_leases=False)

    @rule()
    def restart(self) -> None:
        """The process dies and a new one starts: in-memory state is gone; its leases run out."""
        with self._step("restart"):
            self._restart(expire_leases=True)

    @rule(seconds=st.sampled_from(TIME_STEPS[1:]))
    def time_passes(self, seconds: float) -> None:
        with self._step("time_passes"):
            self._advance(seconds)

    # -- rules: the PSP -------------------------------------------------------------------------

    @rule(mode=st.sampled_from(PERSISTENT_MODES))
    def psp_mode(self, mode: Fault) -> None:
        with self._step("psp_mode"):
            self.psp.mode = mode

    @rule(request=st.one_of(charges, refunds, payouts), faults=st.lists(st.sampled_from(list(Fault)), min_size=1,
                                                                         max_size=4))  # fmt: skip
    def psp_next_calls(self, request: Request, faults: list[Fault]) -> None:
        """The next calls to the PSP for this operation (retries and lookups included) meet these faults."""
        with self._step("psp_next_calls"):
            self._script(request, faults)

    @precondition(lambda self: any(e.outcome is OutcomeKind.PENDING for e in self.psp.executions))
    @rule(outcome=st.sampled_from([OutcomeKind.SUCCEEDED, OutcomeKind.FAILED]))
    def psp_finishes(self, outcome: OutcomeKind) -> None:
        """The PSP settles what it had accepted as pending (a charge succeeds or fails later, ...)."""
        with self._step("psp_finishes"):
            self.psp.finish_pending(outcome)

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def read_database(self) -> None:
        self.clean = False
        self.rows = self._run(read_rows(self.env.conn, self.client))
        self.clean = True

    @invariant()
    def one_execution_per_key_and_operation(self) -> None:
        self.clean = False
        by_key = Counter(e.psp_key for e in self.psp.executions)
        by_operation = Counter((e.operation, e.our_id) for e in self.psp.executions)
        twice = [k for k, n in by_key.items() if n > 1] + [str(k) for k, n in by_operation.items() if n > 1]
        assert not twice, f"executed more than once at the PSP: {twice}"
        self.clean = True

    @invariant()
    def final_status_only_with_evidence(self) -> None:
        self.clean = False
        for row in self.rows:
            self._check_evidence(row.operation, row.public_id, row.psp_key, row.status, row.psp_reference, "database")
        self.clean = True

    def _check_evidence(
        self, operation: Operation, public_id: str, psp_key: str, status: str, reference: str | None, where: str
    ) -> None:
        executed = self.psp.executed(psp_key)
        execution = executed[0] if executed else None
        seen = f"{where}: {public_id} is {status}, the PSP holds {execution}"
        if status == _SUCCESS[operation]:
            assert execution is not None, seen
            assert execution.outcome is OutcomeKind.SUCCEEDED, seen
            assert reference in (None, execution.reference), seen
        elif status == "FAILED":
            if execution is None:
                assert psp_key in self.psp.refused, f"{seen}, and never refused it: FAILED without evidence"
            else:
                assert execution.outcome is OutcomeKind.FAILED, seen
        else:
            assert status in ("PENDING", "PROCESSING", "REQUIRES_RECONCILIATION"), seen

    @invariant()
    def refunds_within_captured(self) -> None:
        self.clean = False
        refunds = [r for r in self.rows if r.operation is Operation.REFUND]
        for payment in (r for r in self.rows if r.operation is Operation.CHARGE):
            mine = [r for r in refunds if r.payment_id == payment.id]
            refunded = sum(r.amount for r in mine if r.status == "SUCCEEDED")
            reserved = sum(r.amount for r in mine if r.status in ("PENDING", "REQUIRES_RECONCILIATION"))
            assert payment.refunded + payment.reserved <= payment.captured, payment
            assert (payment.refunded, payment.reserved) == (refunded, reserved), (payment, mine)
            expected_capture = payment.amount if payment.status == "SUCCEEDED" else 0
            assert payment.captured == expected_capture, payment
        for charge in (e for e in self.psp.executions if e.operation is Operation.CHARGE):
            at_psp = [
                e for e in self.psp.executions
                if e.operation is Operation.REFUND and e.payment_id == charge.our_id
                and e.outcome in (OutcomeKind.SUCCEEDED, OutcomeKind.PENDING)
            ]  # fmt: skip
            captured = charge.amount if charge.outcome is OutcomeKind.SUCCEEDED else 0
            assert sum(e.amount for e in at_psp) <= captured, f"the PSP refunded {at_psp} of {charge}"
        self.clean = True

    @invariant()
    def psp_contract_and_worker_health(self) -> None:
        self.clean = False
        assert not self.psp.violations, self.psp.violations
        assert not self.env.errors.records, self.env.errors.records
        self.clean = True

    # -- the end: faults stop ---------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.clean:
                self._converge_and_check()
        except BaseException:
            self.clean = False
            raise
        finally:
            if not self.clean and STATS.first_failure is None:
                STATS.first_failure = STATS.examples
            self._run(self.engine.db.close())
            self._run(self._execute_all(_RETIRE))

    def _converge_and_check(self) -> None:
        """Once the PSP is healthy and every backoff has elapsed, a few worker rounds give every resource
        the PSP's answer: SUCCEEDED/PAID if and only if the PSP executed it, FAILED only with evidence, in
        progress only while the PSP says so or (never executed) can no longer be sent. Then the PSP settles
        what it still had pending, and a few more rounds must bring those to their end as well."""
        STATS.final_checks += 1
        self.psp.mode = Fault.HEALTHY
        self.psp.script.clear()
        self._final_rounds("after the faults stopped")
        self.psp.finish_pending(OutcomeKind.SUCCEEDED)
        self._final_rounds("after the PSP settled what it had pending")
        STATS.ends.update(f"{row.operation}:{row.status}" for row in self.rows)

    def _final_rounds(self, when: str) -> None:
        for _ in range(FINAL_ROUNDS):
            self._run(self._execute_all(_ALL_DUE))
            self._worker_round()
        self.read_database()
        self.one_execution_per_key_and_operation()
        self.final_status_only_with_evidence()
        self.refunds_within_captured()
        self.psp_contract_and_worker_health()
        for row in self.rows:
            executed = self.psp.executed(row.psp_key)
            seen = f"{when}: {row}; the PSP holds {executed}"
            if not executed:
                assert row.status != _SUCCESS[row.operation], seen
                if row.status != "FAILED":
                    # Never executed and still open: only if it may no longer be sent (past the key lifetime)
                    # and the PSP's lookups say it never saw it.
                    assert row.key_age >= KEY_TTL_SECONDS, seen
                continue
            outcome = executed[0].outcome
            if outcome is OutcomeKind.SUCCEEDED:
                assert row.status == _SUCCESS[row.operation], seen
            elif outcome is OutcomeKind.FAILED:
                assert row.status == "FAILED", seen
            else:
                assert row.status == _IN_PROGRESS[row.operation], seen


def model_settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


def run_model(database_url: str, hypothesis_settings: settings) -> None:
    """Runs the machine on `database_url` (freshly migrated), one event loop for the whole run."""
    loop = asyncio.new_event_loop()
    errors = ErrorLog()
    try:
        conn = loop.run_until_complete(asyncpg.connect(database_url))
        try:
            FinalityModel.env = Environment(loop, database_url, conn, errors)
            with errors.watching("server.app.worker", "server.app.task_lane"):
                run_state_machine_as_test(FinalityModel, settings=hypothesis_settings)
        finally:
            loop.run_until_complete(conn.close())
    finally:
        loop.close()


def test_finality_needs_evidence(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    before = (STATS.examples, sum(STATS.steps.values()))
    run_model(database_url, model_settings())
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\nfinality model: {STATS.summary()} in {elapsed:.1f} s")
    assert STATS.examples > before[0]
    assert sum(STATS.steps.values()) > before[1]
