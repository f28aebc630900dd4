"""A `payments serve` process SIGKILLed again and again under load never charges twice nor loses a charge.

A real server subprocess charges through the Stripe sandbox (which lives in the test process, so it
survives the kills and counts what really executed). A concurrent client drives 500 charges, each
retried on its own idempotency key until it gets a final answer, while the server is SIGKILLed at
random moments — some of them chosen while a PaymentIntent request is held at the sandbox, so the
PSP executes for a process that no longer exists — and restarted on the same port. Short leases
(PSP budget 2 s + 2 s) let a restarted server take the stopped executions over.

Afterwards: one PaymentIntent per key (sandbox counters, and the request log cross-checked against
the database's payment ids), every charge the client saw succeed is SUCCEEDED in PostgreSQL, nothing
is left PENDING, PROCESSING or at a recovery point.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from adapters.sandboxes.stripe_objects import CREATE_PAYMENT_INTENT
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import resources_pb2 as res
from server.api.client import payment_stub
from server.domain.idempotency import Operation, psp_idempotency_key
from tests.support.chaos import (
    CRASH_RETRYABLE,
    InFlight,
    ServeProcess,
    client_channel,
    finishers,
    in_progress,
    rows_by_key,
    unfinished_keys,
    until_final,
    wait_for,
    worker_resuming_a_charge,
)
from tests.support.requests import charge

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")]

CHARGES = 500
KILLS = 22
CLIENTS = 24
DECLINED_EVERY = 10  # every tenth charge uses a card that is declined
FINAL = {res.PAYMENT_STATUS_SUCCEEDED, res.PAYMENT_STATUS_FAILED}


def _psp_key(key: str) -> str:
    return psp_idempotency_key("default", key, Operation.CHARGE)


class Gate:
    """Hands out charge numbers, at most `allowed` of them: each server life gets its share, so the
    500 charges spread over all the kills instead of finishing before the third one."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._next = 0
        self._allowed = 0
        self._cond = threading.Condition()

    def allow(self, count: int) -> None:
        with self._cond:
            self._allowed = min(self._total, self._allowed + count)
            self._cond.notify_all()

    def close(self) -> None:
        """No more numbers: clients stop after their current charge."""
        with self._cond:
            self._total = self._next
            self._cond.notify_all()

    def take(self) -> int | None:
        with self._cond:
            while self._next >= self._allowed and self._next < self._total:
                self._cond.wait(0.1)
            if self._next >= self._total:
                return None
            number = self._next
            self._next += 1
            return number


def test_sigkill_storm_keeps_every_charge_exactly_once(database_url: str, tmp_path: Path) -> None:
    rng = random.Random(20260611)
    sandbox = StripeSandbox().start()
    # A third of the PaymentIntent requests are held 0.3 s at the PSP (key claimed, then executed and
    # answered): the window in which a kill loses an answer the PSP did produce.
    sandbox.set_fault_rate(0.35, ["delay"], seed=7, stall_seconds=0.3)
    server = ServeProcess(
        database_url,
        tmp_path / "serve.log",
        PAYMENTS_STRIPE_API_BASE=sandbox.url,
        PAYMENTS_STRIPE_API_KEY="sk_test_crash",
        PAYMENTS_PSP_BUDGET_SECONDS="2",
        PAYMENTS_RECOVERY_IDLE_SECONDS="0.5",
        PAYMENTS_SHUTDOWN_GRACE_SECONDS="2",
    )
    channel = client_channel(server.target)
    stub = payment_stub(channel)
    gate = Gate(CHARGES)
    in_flight = InFlight()
    seen: dict[str, res.Payment] = {}
    retries: Counter[str] = Counter()
    durations: dict[str, float] = {}
    errors: Counter[str] = Counter()
    failures: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        while (number := gate.take()) is not None:
            key = f"crash-{number}"
            method = "pm_card_visa_chargeDeclined" if number % DECLINED_EVERY == 7 else "pm_card_visa"
            request = charge(key, amount=1000 + number, method=method)
            call = in_flight.wrap(key, functools.partial(stub.Charge, request, timeout=5, wait_for_ready=True))
            began = time.monotonic()
            try:
                reply, attempts = until_final(
                    call, allowed=CRASH_RETRYABLE, is_final=lambda r: r.payment.status in FINAL,
                    budget_seconds=75, what=key,
                )  # fmt: skip
            except BaseException as exc:  # recorded; the test fails after cleaning up
                with lock:
                    failures.append(exc)
                gate.close()
                return
            with lock:
                seen[key] = reply.payment
                retries[key] = attempts.retries
                durations[key] = time.monotonic() - began
                errors.update(attempts.errors)

    def held_at_psp() -> bool:
        return any(sandbox.is_in_flight(_psp_key(k)) for k in in_flight.keys_now())

    kills = kills_mid_psp = 0
    started = time.monotonic()
    pool = ThreadPoolExecutor(CLIENTS, thread_name_prefix="crash-client")
    try:
        server.start()
        for _ in range(CLIENTS):
            pool.submit(client)
        share = -(-CHARGES // KILLS)
        while kills < KILLS and not failures:
            gate.allow(share)
            time.sleep(rng.uniform(0.02, 0.4))
            # Most kills wait (briefly) for a PaymentIntent request held at the PSP by a charge under way.
            if rng.random() < 0.7 and wait_for(held_at_psp, timeout=1.0, interval=0.005):
                kills_mid_psp += 1
            else:
                wait_for(lambda: bool(in_flight.keys_now()), timeout=1.0, interval=0.005)
            server.kill()
            kills += 1
            server.start()
        gate.allow(CHARGES)  # the last life finishes whatever is left
        pool.shutdown(wait=True)
        assert not failures, failures[0]
        # One recovery pass: nothing may be left in progress or at a recovery point.
        settled = wait_for(lambda: sum(in_progress(database_url).values()) == 0, timeout=15, interval=0.2)
        assert settled, f"still in progress: {in_progress(database_url)}"
        exit_code = server.terminate()
    finally:
        gate.close()
        pool.shutdown(wait=False, cancel_futures=True)
        channel.close()
        server.close()
        sandbox.stop()
    elapsed = time.monotonic() - started

    payments = rows_by_key(database_url, "payments")
    executed = [r for r in sandbox.requests() if r.operation == CREATE_PAYMENT_INTENT and r.executed]
    replayed = {r.idempotency_key for r in sandbox.requests() if r.operation is None and r.replayed}
    redriven = sum(1 for k in seen if _psp_key(k) in replayed)
    statuses = Counter(res.PaymentStatus.Name(p.status) for p in seen.values())
    slowest = max(durations.values(), default=0.0)
    finished_by = dict(finishers(database_url, "payment"))
    print(
        f"\ncrash test: {kills} SIGKILLs ({kills_mid_psp} while a PaymentIntent request was held at the PSP), "
        f"{server.starts} server starts, {len(seen)} charges in {elapsed:.1f}s; final statuses {dict(statuses)}; "
        f"retries: total {sum(retries.values())}, max per key {max(retries.values(), default=0)}; "
        f"errors seen: {dict(errors)}; answers the PSP replayed after a kill lost them: {redriven}; "
        f"outcomes recorded by {finished_by}; slowest charge took {slowest:.1f}s"
    )

    assert kills >= 20
    assert exit_code == 0, server.log_tail()
    assert server.error_lines() == []
    assert len(seen) == CHARGES
    assert unfinished_keys(database_url) == []
    assert set(payments) == set(seen), "exactly one payment per key"
    for key, payment in seen.items():
        row = payments[key]
        assert row.id == payment.id, f"{key}: the client was told {payment.id}, the database has {row.id}"
        expected = "FAILED" if int(key.split("-")[1]) % DECLINED_EVERY == 7 else "SUCCEEDED"
        assert res.PaymentStatus.Name(payment.status) == f"PAYMENT_STATUS_{expected}", key
        assert row.status == expected, f"{key}: the client saw {expected}, the database says {row.status}"
    # Exactly one PaymentIntent per key, by the sandbox's counters and by its request log.
    assert sandbox.executions(CREATE_PAYMENT_INTENT) == CHARGES
    assert all(sandbox.executions_for_key(_psp_key(key)) == 1 for key in seen)
    per_payment = Counter(dict(parse_qsl(r.body)).get("metadata[payments.payment_id]") for r in executed)
    assert per_payment == Counter({payment.id: 1 for payment in seen.values()})
    # The kills did hit PSP calls: some answers were lost with the process and replayed to a retry.
    assert kills_mid_psp >= 5
    assert redriven >= 1
    # Sanity: the whole storm stays well inside its budget on two shared cores (~35 s here; CI machines
    # have run the suite three times slower).
    assert elapsed < 300


def test_a_key_the_killed_servers_worker_held_is_resumable_after_the_psp_budget(
    database_url: str, tmp_path: Path
) -> None:
    with worker_resuming_a_charge(
        database_url, tmp_path / "serve.log", "worker-held", resume_seconds=1.5, PAYMENTS_PSP_BUDGET_SECONDS="2"
    ) as resuming:
        resuming.server.kill()  # while the worker's PSP call is under way
        killed = time.monotonic()
        resuming.server.start()
        # The worker's lease should run out like any execution's: PSP budget (2 s) + 2 s.
        reply, _ = until_final(
            functools.partial(resuming.stub.Charge, charge("worker-held"), timeout=5, wait_for_ready=True),
            allowed=CRASH_RETRYABLE, is_final=lambda r: r.payment.status in FINAL, budget_seconds=10,
            what="worker-held",
        )  # fmt: skip
        assert reply.payment.status == res.PAYMENT_STATUS_SUCCEEDED
        assert time.monotonic() - killed < 10
        assert resuming.sandbox.executions_for_key(resuming.psp_key) == 1
