"""1,000 operations through 30 % mixed PSP faults on both sandboxes: all final, each exactly once.

A real `payments serve` subprocess charges, refunds and pays out (to Stripe connected accounts) through
the Stripe sandbox, and pays SEPA payouts through the bank sandbox; both sandboxes live in the test
process and fail 30 % of all API requests with a seeded mix of HTTP 500, 429 (Retry-After), stalls
(held 1.5 s, then the connection is closed without an answer) and "do the work, then drop the
response". The client retries every operation on its own key until it gets a final answer; the
worker's status poller finishes the SEPA payouts. Afterwards every operation executed exactly once at
its PSP (the sandboxes' counters per PSP idempotency key and per SEPA EndToEndId), and what the
client was told is what PostgreSQL holds. A table of outcomes and retries is printed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import stripe as stripe_sdk

from adapters.bank.adapter import BankTransferAdapter
from adapters.bank.pain001 import DebtorAccount
from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider
from adapters.sandboxes.bank_sandbox import TEST_IBAN_AC01, TEST_IBAN_ACCEPT, BankSandbox
from adapters.sandboxes.stripe_objects import CREATE_PAYMENT_INTENT, CREATE_REFUND, CREATE_TRANSFER
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from adapters.stripe_psp import StripeAdapter, close_http_client, stripe_client
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub, payment_stub
from server.app.worker import WorkerPolicy
from server.domain.idempotency import Operation, psp_idempotency_key
from tests.support.chaos import (
    PSP_FAULT_RETRYABLE,
    Attempts,
    ServeProcess,
    client_channel,
    in_progress,
    payment_amounts,
    poll_counts,
    rows_by_key,
    unfinished_keys,
    until_final,
    wait_for,
)
from tests.support.harness import FAST_RETRIES, ServerHarness
from tests.support.requests import charge, refund, sepa_payout

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")]

FAULT_RATE = 0.3
STALL_SECONDS = 1.5
CHARGES, REFUNDED, DOUBLE_REFUNDED, SEPA_PAYOUTS, STRIPE_PAYOUTS = 450, 180, 10, 200, 150
OPERATIONS = CHARGES + REFUNDED + 2 * DOUBLE_REFUNDED + SEPA_PAYOUTS + STRIPE_PAYOUTS
CLIENTS = 32
RPC_TIMEOUT = 15.0

FINAL_PAYMENT = {res.PAYMENT_STATUS_SUCCEEDED, res.PAYMENT_STATUS_FAILED}
FINAL_REFUND = {res.REFUND_STATUS_SUCCEEDED, res.REFUND_STATUS_FAILED}
FINAL_PAYOUT = {res.PAYOUT_STATUS_PAID, res.PAYOUT_STATUS_FAILED, res.PAYOUT_STATUS_RETURNED}


@dataclass(frozen=True)
class Outcome:
    kind: str  # charge, refund, sepa payout, stripe payout
    key: str
    resource_id: str
    status: str  # the final status, as the API names it
    retries: int


def _declined(charge_number: int) -> bool:
    """Every tenth charge beyond the refunded ones is declined."""
    return charge_number >= REFUNDED + DOUBLE_REFUNDED and charge_number % 10 == 9


def _psp_key(key: str, operation: Operation) -> str:
    return psp_idempotency_key("default", key, operation)


class Soak:
    def __init__(self, stub: PaymentStub) -> None:
        self.stub = stub
        self.outcomes: list[Outcome] = []
        self.errors: Counter[str] = Counter()
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()

    def record(self, kind: str, key: str, resource_id: str, status: str, attempts: Attempts) -> None:
        with self._lock:
            self.outcomes.append(Outcome(kind, key, resource_id, status, attempts.retries))
            self.errors.update(attempts.errors)

    def guarded(self, work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if self.failures:
                return  # the test has failed already: do not keep the PSPs busy
            try:
                work()
            except BaseException as exc:  # recorded; the test fails after cleaning up
                with self._lock:
                    self.failures.append(exc)

        return run

    # -- operations ---------------------------------------------------------------------------

    def charge_then_refund(self, number: int) -> None:
        key = f"soak-charge-{number}"
        method = "pm_card_visa_chargeDeclined" if _declined(number) else "pm_card_visa"
        request = charge(key, amount=1250, method=method)
        reply, attempts = until_final(
            lambda: self.stub.Charge(request, timeout=RPC_TIMEOUT), allowed=PSP_FAULT_RETRYABLE,
            is_final=lambda r: r.payment.status in FINAL_PAYMENT, what=key,
        )  # fmt: skip
        payment = reply.payment
        self.record("charge", key, payment.id, res.PaymentStatus.Name(payment.status), attempts)
        if payment.status != res.PAYMENT_STATUS_SUCCEEDED:
            return
        refunds = 2 if number < DOUBLE_REFUNDED else 1 if number < DOUBLE_REFUNDED + REFUNDED else 0
        for part in range(refunds):
            # A partial refund, then (for some) a second one of everything that remains.
            self.refund(f"soak-refund-{number}-{part}", payment.id, 400 if part == 0 else None)

    def refund(self, key: str, payment_id: str, amount: int | None) -> None:
        request = refund(key, payment_id, amount)
        reply, attempts = until_final(
            lambda: self.stub.Refund(request, timeout=RPC_TIMEOUT), allowed=PSP_FAULT_RETRYABLE,
            is_final=lambda r: r.refund.status in FINAL_REFUND, what=key,
        )  # fmt: skip
        self.record("refund", key, reply.refund.id, res.RefundStatus.Name(reply.refund.status), attempts)

    def sepa_payout(self, number: int) -> None:
        key = f"soak-sepa-{number}"
        iban = TEST_IBAN_AC01 if number % 10 == 3 else TEST_IBAN_ACCEPT
        request = sepa_payout(key, amount=5000 + number, iban=iban, instant=number % 5 == 0)
        reply, attempts = until_final(
            lambda: self.stub.Payout(request, timeout=RPC_TIMEOUT), allowed=PSP_FAULT_RETRYABLE, what=key
        )
        # The bank accepted the file (PROCESSING); the worker's poller reads the pain.002 reports and
        # finishes it. The final status is read once the load is over (see `finish_sepa`).
        self.record("sepa payout", key, reply.payout.id, res.PayoutStatus.Name(reply.payout.status), attempts)

    def finish_sepa(self, budget_seconds: float) -> None:
        """Waits for the poller to finish every SEPA payout, then takes the final statuses as the API
        reports them."""
        with self._lock:
            sepa = [o for o in self.outcomes if o.kind == "sepa payout"]
        deadline = time.monotonic() + budget_seconds
        finished: dict[str, Outcome] = {}
        while len(finished) < len(sepa) and time.monotonic() < deadline:
            for o in sepa:
                if o.key in finished:
                    continue
                payout = self.stub.GetPayout(svc.GetPayoutRequest(id=o.resource_id), timeout=RPC_TIMEOUT).payout
                if payout.status in FINAL_PAYOUT:
                    finished[o.key] = Outcome(o.kind, o.key, o.resource_id, res.PayoutStatus.Name(payout.status),
                                              o.retries)  # fmt: skip
            time.sleep(0.2)
        with self._lock:
            self.outcomes = [finished.get(o.key, o) for o in self.outcomes]

    def stripe_payout(self, number: int) -> None:
        key = f"soak-transfer-{number}"
        request = svc.PayoutRequest(
            idempotency_key=key, amount=res.Money(amount_minor=700 + number, currency="EUR"),
            stripe_account_id=f"acct_soak{number % 7}", reference=f"Payout {number}",
        )  # fmt: skip
        reply, attempts = until_final(
            lambda: self.stub.Payout(request, timeout=RPC_TIMEOUT), allowed=PSP_FAULT_RETRYABLE,
            is_final=lambda r: r.payout.status in FINAL_PAYOUT, what=key,
        )  # fmt: skip
        self.record("stripe payout", key, reply.payout.id, res.PayoutStatus.Name(reply.payout.status), attempts)


def _table(outcomes: list[Outcome], psp_attempts: Counter[str]) -> str:
    """Final statuses per operation, the client's retries, and the requests the PSP received."""
    kinds = ["charge", "refund", "sepa payout", "stripe payout"]
    statuses = sorted({o.status.split("_STATUS_")[1] for o in outcomes})
    header = (f"{'operation':<14}" + "".join(f"{s:>11}" for s in statuses) + f"{'total':>7}"
              f"{'client retries':>16}{'max':>5}{'PSP requests':>14}{'max':>5}")  # fmt: skip
    lines = [header, "-" * len(header)]
    for kind in kinds:
        mine = [o for o in outcomes if o.kind == kind]
        counts = Counter(o.status.split("_STATUS_")[1] for o in mine)
        retries = [o.retries for o in mine]
        sent = [psp_attempts[o.key] for o in mine]
        lines.append(
            f"{kind:<14}" + "".join(f"{counts.get(s, 0):>11}" for s in statuses) + f"{len(mine):>7}"
            + f"{sum(retries):>16}{max(retries, default=0):>5}{sum(sent):>14}{max(sent, default=0):>5}"
        )  # fmt: skip
    return "\n".join(lines)


def test_thousand_operations_through_psp_faults_are_final_and_exactly_once(database_url: str, tmp_path: Path) -> None:
    stripe = StripeSandbox().start()
    bank = BankSandbox(step_delay=0.05, stall_seconds=STALL_SECONDS).start()
    kinds = ["http_500", "http_429", "stall", "drop_after_work"]
    stripe.set_fault_rate(FAULT_RATE, kinds, seed=1234, retry_after=1, stall_seconds=STALL_SECONDS)
    bank.set_fault_rate(FAULT_RATE, dict.fromkeys(kinds, 1.0), seed=4321)
    server = ServeProcess(
        database_url,
        tmp_path / "serve.log",
        PAYMENTS_STRIPE_API_BASE=stripe.url,
        PAYMENTS_STRIPE_API_KEY="sk_test_soak",
        PAYMENTS_BANK_API_BASE=bank.url,
        PAYMENTS_BANK_API_TOKEN="soak-token",
        PAYMENTS_PSP_BUDGET_SECONDS="4",  # room for a 1.5 s stall and a retry within one RPC
        PAYMENTS_RECOVERY_IDLE_SECONDS="1",
    )
    channel = client_channel(server.target)
    soak = Soak(payment_stub(channel))
    others = [lambda n=n: soak.charge_then_refund(n) for n in range(CHARGES)] + [
        lambda n=n: soak.stripe_payout(n) for n in range(STRIPE_PAYOUTS)
    ]
    others = [others[i] for i in sorted(range(len(others)), key=lambda i: (i * 7919) % len(others))]
    sepa = [lambda n=n: soak.sepa_payout(n) for n in range(SEPA_PAYOUTS)]
    # All kinds run together; the SEPA payouts alternate with the others in the first part of the run,
    # so the status poller finishes them while the load goes on.
    work = [task for pair in zip(sepa, others, strict=False) for task in pair] + others[len(sepa) :]
    started = time.monotonic()
    try:
        server.start()
        with ThreadPoolExecutor(CLIENTS, thread_name_prefix="soak-client") as pool:
            for task in work:
                pool.submit(soak.guarded(task))
        assert not soak.failures, soak.failures[0]
        load_seconds = time.monotonic() - started
        soak.finish_sepa(budget_seconds=60)
        elapsed = time.monotonic() - started
        settled = wait_for(lambda: sum(in_progress(database_url).values()) == 0, timeout=15, interval=0.2)
        assert settled, in_progress(database_url)
        polls = poll_counts(database_url)
        exit_code = server.terminate()
    finally:
        channel.close()
        server.close()
        stripe.stop()
        bank.stop()

    outcomes = soak.outcomes
    operation_of = {"charge": Operation.CHARGE, "refund": Operation.REFUND, "stripe payout": Operation.PAYOUT,
                    "sepa payout": Operation.PAYOUT}  # fmt: skip
    key_of = {_psp_key(o.key, operation_of[o.kind]): o.key for o in outcomes}
    posted = [(r.method, r.idempotency_key) for r in stripe.requests()]
    posted += [(r.method, r.idempotency_key) for r in bank.requests()]
    psp_attempts = Counter(key_of[key] for method, key in posted if method == "POST" and key in key_of)
    stripe_faults = Counter(r.fault for r in stripe.requests() if r.fault)
    bank_faults = Counter(r.fault for r in bank.requests() if r.fault)
    print(
        f"\nfault soak: {len(outcomes)} operations in {elapsed:.1f}s ({load_seconds:.1f}s of RPCs, then "
        f"{elapsed - load_seconds:.1f}s until the poller had finished the SEPA payouts), {CLIENTS} clients"
    )
    print(_table(outcomes, psp_attempts))
    print(f"client errors retried: {dict(soak.errors)}")
    print(f"faults injected: stripe {dict(stripe_faults)} of {len(stripe.requests())} requests; "
          f"bank {dict(bank_faults)} of {len(bank.requests())} requests")  # fmt: skip
    print(
        f"status polls: {sum(1 for r in bank.requests() if r.method == 'GET')} at the bank, "
        f"{sum(1 for r in stripe.requests() if r.method == 'GET')} at Stripe; {polls}"
    )

    assert exit_code == 0, server.log_tail()
    assert server.error_lines() == []
    assert len(outcomes) == OPERATIONS == 1000
    by_kind = Counter(o.kind for o in outcomes)
    assert by_kind == {"charge": CHARGES, "refund": REFUNDED + 2 * DOUBLE_REFUNDED, "sepa payout": SEPA_PAYOUTS,
                       "stripe payout": STRIPE_PAYOUTS}  # fmt: skip
    assert set(stripe_faults) == set(kinds), stripe_faults  # every kind of fault happened, at both PSPs
    assert set(bank_faults) == set(kinds), bank_faults

    # Expected final states: declines fail, AC01 is rejected by the bank, everything else succeeds.
    for o in outcomes:
        number = int(o.key.split("-")[2])
        if o.kind == "charge":
            assert o.status == ("PAYMENT_STATUS_FAILED" if _declined(number) else "PAYMENT_STATUS_SUCCEEDED"), o
        elif o.kind == "refund":
            assert o.status == "REFUND_STATUS_SUCCEEDED", o
        elif o.kind == "sepa payout":
            assert o.status == ("PAYOUT_STATUS_FAILED" if number % 10 == 3 else "PAYOUT_STATUS_PAID"), o
        else:
            assert o.status == "PAYOUT_STATUS_PAID", o

    # Exactly once at the PSP, per key.
    for o in outcomes:
        if o.kind == "sepa payout":
            assert bank.executions_for_key(_psp_key(o.key, Operation.PAYOUT)) == 1, o
        else:
            assert stripe.executions_for_key(_psp_key(o.key, operation_of[o.kind])) == 1, o
    assert stripe.executions(CREATE_PAYMENT_INTENT) == by_kind["charge"]
    assert stripe.executions(CREATE_REFUND) == by_kind["refund"]
    assert stripe.executions(CREATE_TRANSFER) == by_kind["stripe payout"]
    counters = bank.counters()
    assert counters.total == SEPA_PAYOUTS
    assert all(count == 1 for count in counters.by_end_to_end_id.values())

    # What the client was told is what PostgreSQL holds; nothing is left half-done.
    assert unfinished_keys(database_url) == []
    tables = {"charge": "payments", "refund": "refunds", "sepa payout": "payouts", "stripe payout": "payouts"}
    rows = {table: rows_by_key(database_url, table) for table in set(tables.values())}
    for o in outcomes:
        row = rows[tables[o.kind]][o.key]
        assert (row.id, row.status) == (o.resource_id, o.status.split("_STATUS_")[1]), o
    # Refunded amounts add up on the payments, and every reservation was settled.
    amounts = payment_amounts(database_url)
    for o in outcomes:
        if o.kind != "charge":
            continue
        number = int(o.key.split("-")[2])
        succeeded = o.status == "PAYMENT_STATUS_SUCCEEDED"
        refunds = 0 if not succeeded or number >= DOUBLE_REFUNDED + REFUNDED else 1 if number >= DOUBLE_REFUNDED else 2
        expected = {0: 0, 1: 400, 2: 1250}[refunds]
        assert amounts[o.key] == ((1250 if succeeded else 0), expected, 0), o


def test_status_polls_back_off_while_nothing_changes(database_url: str) -> None:
    """Paid Stripe transfers are watched for a reversal with exponential backoff, not re-polled on every
    pass; a paid SEPA payout is not polled at all, since its return comes as a camt.054 booking, never
    as a status (tests/e2e/test_bank_statements.py).

    (Found by the soak: every lookup's fresh PSP data made a same-status "transition" that restarted
    the poll schedule, so each paid payout was looked up every 2 s for its whole 14-day return window.)
    """
    stripe_sandbox = StripeSandbox().start()
    bank_sandbox = BankSandbox(step_delay=0).start()
    http_client = stripe_sdk.HTTPXClient(timeout=10)
    bank_http = httpx.AsyncClient()
    cards = RetryingProvider(
        StripeAdapter(stripe_client("sk_test_polls", stripe_sandbox.url, http_client)), FAST_RETRIES
    )
    debtor = DebtorAccount("Payments Service GmbH", "DE89370400440532013000", "COBADEFFXXX")
    bank = RetryingProvider(BankTransferAdapter(bank_sandbox.url, "tok", debtor, http=bank_http), FAST_RETRIES)
    policy = WorkerPolicy(interval_seconds=0.05, first_poll_seconds=0.1, max_poll_interval_seconds=60)
    harness = ServerHarness(database_url, providers=ProviderSet(cards=cards, bank=bank), worker=policy)
    try:
        transfer = svc.PayoutRequest(
            idempotency_key="polled", amount=res.Money(amount_minor=700, currency="EUR"), stripe_account_id="acct_poll"
        )
        assert harness.stub.Payout(transfer, timeout=10).payout.status == res.PAYOUT_STATUS_PAID
        sepa = harness.stub.Payout(sepa_payout("polled-sepa"), timeout=10).payout

        def sepa_lookups() -> int:
            return sum(1 for r in bank_sandbox.requests() if r.method == "GET")

        def paid() -> bool:
            got = harness.stub.GetPayout(svc.GetPayoutRequest(id=sepa.id), timeout=5).payout
            return bool(got.status == res.PAYOUT_STATUS_PAID)

        assert wait_for(paid, timeout=10)
        first = sepa_lookups()
        time.sleep(3.0)
        later = sepa_lookups() - first
        transfer_lookups = sum(1 for r in stripe_sandbox.requests() if r.method == "GET")
    finally:
        harness.run(close_http_client(http_client))
        harness.run(bank_http.aclose())
        harness.close()
        stripe_sandbox.stop()
        bank_sandbox.stop()
    # After PAID no status report can tell anything new: not one more look-up in 3 s.
    assert later == 0, later
    # A paid Stripe transfer can be reversed: it is watched on the same backoff, a handful of looks in 3 s.
    assert 1 <= transfer_lookups <= 8, transfer_lookups
