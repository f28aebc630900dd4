"""Three independent `payments serve` replicas behind one name, sharing one PostgreSQL (design.md §11).

Each replica is its own process with its own worker, on its own port, all against one database and one
Stripe sandbox (in the test process, so it counts what really executed and survives the replicas). A
client balances over the three addresses with gRPC's round_robin policy, as a headless Kubernetes
Service is used (deploy/), while 1,000 charges, refunds and payouts run; a fifth of them are also sent
at the same time, on the same key, through a second balanced channel, so the two copies usually reach
different replicas. Mid-run one replica is SIGKILLed for good, and another is SIGTERMed and restarted.

Afterwards: one PSP execution per key; every result a caller was given is what PostgreSQL holds; the
copies of a duplicated call got the same resource; nothing is left in progress (the surviving workers
took over what the killed replica had started); and the callers saw no error beyond those a retry on
the same key absorbs: they call through the client library (payments_client, with `balanced()`), whose
retries must absorb every failover.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from adapters.sandboxes.stripe_objects import CREATE_PAYMENT_INTENT, CREATE_REFUND, CREATE_TRANSFER
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import resources_pb2 as res
from payments_client import Money, PaymentsClient, Result, balanced
from server.domain.idempotency import Operation, psp_idempotency_key
from tests.support.chaos import (
    FAST_RECONNECT,
    ServeProcess,
    in_progress,
    rows_by_key,
    unfinished_keys,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")]

REPLICAS = 3
OPERATIONS = 1000
CALLERS = 24
DUPLICATED_EVERY = 5  # every fifth operation is also sent, on its key, through the second channel
KILL_AT, RESTART_AT = 300, 600  # operations answered when replica 0 is SIGKILLed / replica 1 SIGTERMed

FINAL: dict[str, set[int]] = {
    "charge": {res.PAYMENT_STATUS_SUCCEEDED, res.PAYMENT_STATUS_FAILED},
    "refund": {res.REFUND_STATUS_SUCCEEDED, res.REFUND_STATUS_FAILED},
    "payout": {res.PAYOUT_STATUS_PAID, res.PAYOUT_STATUS_FAILED},
}
STATUS_NAMES = {"charge": res.PaymentStatus, "refund": res.RefundStatus, "payout": res.PayoutStatus}
TABLES = {"charge": "payments", "refund": "refunds", "payout": "payouts"}
_PREFIX = {"charge": "PAYMENT_STATUS", "refund": "REFUND_STATUS", "payout": "PAYOUT_STATUS"}
PSP_OPERATIONS = {
    "charge": (Operation.CHARGE, CREATE_PAYMENT_INTENT),
    "refund": (Operation.REFUND, CREATE_REFUND),
    "payout": (Operation.PAYOUT, CREATE_TRANSFER),
}


def balanced_client(servers: list[ServeProcess]) -> PaymentsClient:
    """The client library over one name for the replicas, as a caller of a headless Service would use
    it: every address, round_robin over the healthy ones (payments_client.balanced), its own retries."""
    addresses = ",".join(server.target for server in servers)
    return PaymentsClient(f"ipv4:{addresses}", options=[*FAST_RECONNECT, *balanced()], timeout=60)


def test_three_replicas_behind_round_robin_execute_every_operation_once(database_url: str, tmp_path: Path) -> None:
    sandbox = StripeSandbox().start()
    settings = {
        "PAYMENTS_STRIPE_API_BASE": sandbox.url, "PAYMENTS_STRIPE_API_KEY": "sk_test_replicas",
        "PAYMENTS_PSP_BUDGET_SECONDS": "2", "PAYMENTS_RECOVERY_IDLE_SECONDS": "0.5",
        "PAYMENTS_SHUTDOWN_GRACE_SECONDS": "5", "PAYMENTS_SHUTDOWN_DRAIN_SECONDS": "1",
    }  # fmt: skip
    servers = [ServeProcess(database_url, tmp_path / f"replica-{n}.log", env=settings) for n in range(REPLICAS)]
    first, second = balanced_client(servers), balanced_client(servers)
    numbers = itertools.count()
    paid: list[str] = []  # succeeded payments, for the refunds
    answers: dict[str, tuple[str, str, str]] = {}  # key -> (kind, resource id, status name)
    copies: dict[str, tuple[str, str]] = {}  # key -> (resource id, status name) of the duplicate copy
    retries: Counter[str] = Counter()  # attempts beyond the first, per kind: what the library absorbed
    failures: list[BaseException] = []
    answered = 0
    lock = threading.Lock()

    def plan(n: int) -> tuple[str, str, Callable[[PaymentsClient], Result[Any]]]:
        """Operation n: six charges, two refunds and two payouts in every ten."""
        slot = n % 10
        with lock:
            payment = paid[n % len(paid)] if paid else None
        if slot in (6, 7) and payment is not None:
            key = f"rep-refund-{n}"
            ten = Money(amount_minor=10, currency="EUR")
            return "refund", key, lambda c: c.refund(payment, ten, idempotency_key=key)
        if slot in (8, 9):
            key = f"rep-payout-{n}"
            amount = Money(amount_minor=2000 + n, currency="EUR")
            return (
                "payout",
                key,
                lambda c: c.payout(
                    amount, stripe_account_id=f"acct_seller{n % 17}", reference="Replica payout", idempotency_key=key
                ),
            )
        key = f"rep-charge-{n}"
        amount = Money(amount_minor=1000 + n, currency="EUR")
        return "charge", key, lambda c: c.charge(amount, "pm_card_visa", idempotency_key=key)

    def send(
        kind: str, key: str, call: Callable[[PaymentsClient], Result[Any]], client: PaymentsClient
    ) -> tuple[str, str]:
        """The caller's side: one library call; asked again (same key) only if the answer is not final."""
        deadline = time.monotonic() + 60
        while True:
            result = call(client)
            with lock:
                retries[kind] += result.attempts - 1
            if result.resource.status in FINAL[kind] or time.monotonic() > deadline:
                return result.resource.id, STATUS_NAMES[kind].Name(result.resource.status)
            time.sleep(0.2)

    def duplicate(kind: str, key: str, call: Callable[[PaymentsClient], Result[Any]]) -> None:
        try:
            answer = send(kind, key, call, second)
        except BaseException as exc:
            with lock:
                failures.append(exc)
            return
        with lock:
            copies[key] = answer

    def caller() -> None:
        nonlocal answered
        while not failures and (n := next(numbers)) < OPERATIONS:
            kind, key, call = plan(n)
            try:
                copy = None
                if n % DUPLICATED_EVERY == 0:
                    copy = threading.Thread(target=duplicate, args=(kind, key, call))
                    copy.start()
                resource_id, status = send(kind, key, call, first)
                if copy is not None:
                    copy.join()
            except BaseException as exc:  # recorded; the test fails after cleaning up
                with lock:
                    failures.append(exc)
                return
            with lock:
                answers[key] = (kind, resource_id, status)
                if kind == "charge" and status == "PAYMENT_STATUS_SUCCEEDED":
                    paid.append(resource_id)
                answered += 1

    pool = ThreadPoolExecutor(CALLERS, thread_name_prefix="replica-caller")
    started = time.monotonic()
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.wait_serving()
        futures = [pool.submit(caller) for _ in range(CALLERS)]
        assert wait_for(lambda: answered >= KILL_AT or bool(failures), timeout=120)
        servers[0].kill()  # for good: the others' workers take over what it had started
        assert wait_for(lambda: answered >= RESTART_AT or bool(failures), timeout=120)
        drained = servers[1].terminate()  # a rolling restart: drain, exit, start again
        servers[1].start()
        for future in futures:
            future.result()
        assert not failures, failures[0]
        settled = wait_for(lambda: sum(in_progress(database_url).values()) == 0 and not unfinished_keys(database_url),
                           timeout=30, interval=0.2)  # fmt: skip
        assert settled, (
            f"still in progress: {in_progress(database_url)}, unfinished keys: {unfinished_keys(database_url)}"
        )
        exits = [servers[1].terminate(), servers[2].terminate()]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        first.close()
        second.close()
        for server in servers:
            server.close()
        sandbox.stop()
    elapsed = time.monotonic() - started

    kinds = Counter(kind for kind, _, _ in answers.values())
    executed = Counter(
        (r.operation, r.idempotency_key) for r in sandbox.requests() if r.executed and r.operation is not None
    )
    print(
        f"\nreplicas: {REPLICAS} served {len(answers)} operations {dict(kinds)} in {elapsed:.1f}s,"
        f" {len(copies)} of them sent twice; attempts the client library retried: {dict(retries)}"
    )
    assert drained == 0, servers[1].log_tail()
    assert exits == [0, 0], [server.log_tail() for server in servers]
    assert len(answers) == OPERATIONS
    assert kinds["refund"] > 100
    assert kinds["payout"] > 100
    assert all(copies[key] == answers[key][1:] for key in copies), "a duplicate got another answer"
    assert len(copies) == OPERATIONS // DUPLICATED_EVERY
    for kind, table in TABLES.items():
        held = rows_by_key(database_url, table)
        given = {key: (rid, status) for key, (k, rid, status) in answers.items() if k == kind}
        assert set(held) == set(given), f"{table}: one row per key, and only for keys that were sent"
        for key, (resource_id, status) in given.items():
            assert held[key].id == resource_id
            assert f"{_PREFIX[kind]}_{held[key].status}" == status
        operation, psp_call = PSP_OPERATIONS[kind]
        for key in given:
            assert executed[(psp_call, psp_idempotency_key("default", key, operation))] == 1, f"{key}: PSP executions"
    for server in servers[1:]:
        assert server.error_lines() == [], server.log_tail()
