"""PostgreSQL stopped and started again under load: UNAVAILABLE while it is away, back by itself.

The test runs its own PostgreSQL cluster (never the session cluster other tests share) and a real
`payments serve` subprocess charging through the Stripe sandbox, under a steady load of fresh charges
and reads. PostgreSQL is stopped twice — `pg_ctl -m fast` (sessions terminated) and `-m immediate`
(like a crash: no checkpoint, WAL replay at the next start) — and started again. While it is away,
every failing RPC is UNAVAILABLE with reason DATABASE_UNAVAILABLE and RetryInfo, never INTERNAL or
UNKNOWN; once it is back the same server process answers again within 5 s, without a restart; every
charge that was acknowledged is still there with the status the client was told; and every charge
that failed reaches its final state on a retry with its key, charged exactly once at the PSP.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest

from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub, payment_stub
from server.domain.errors import StorageUnavailable
from server.domain.idempotency import Operation, psp_idempotency_key
from storage.database import Database, create_pool
from storage.migrator import migrate_dsn
from tests.support.chaos import (
    CRASH_RETRYABLE,
    ServeProcess,
    StoppablePostgres,
    client_channel,
    label,
    retry_delay_of,
    rows_by_key,
    unfinished_keys,
    until_final,
    wait_for,
)
from tests.support.requests import charge

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

LOAD_THREADS = 6
RECOVERY_LIMIT_SECONDS = 5.0
FINAL = {res.PAYMENT_STATUS_SUCCEEDED, res.PAYMENT_STATUS_FAILED}


@dataclass(frozen=True)
class Event:
    at: float
    rpc: str
    key: str
    outcome: str  # "OK" or CODE/REASON
    retry_info: bool = False
    payment: res.Payment | None = None


@pytest.fixture
def own_postgres() -> Iterator[StoppablePostgres]:
    cluster = StoppablePostgres()
    yield cluster
    cluster.close()


def _create_database(cluster: StoppablePostgres) -> str:
    async def create() -> None:
        conn = await asyncpg.connect(cluster.admin_url)
        try:
            await conn.execute('CREATE DATABASE "outage"')
        finally:
            await conn.close()
        await migrate_dsn(cluster.url("outage"))

    asyncio.run(create())
    return cluster.url("outage")


class Load:
    """Fresh charges, each tried once, and reads of acknowledged payments, from a few threads."""

    def __init__(self, stub: PaymentStub) -> None:
        self._stub = stub
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.events: list[Event] = []
        self.acked: dict[str, res.Payment] = {}
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(LOAD_THREADS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _record(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)
            if event.rpc == "Charge" and event.payment is not None:
                self.acked[event.key] = event.payment

    def _run(self) -> None:
        while not self._stop.is_set():
            key = f"outage-{next(self._numbers)}"
            method = "pm_card_visa_chargeDeclined" if key.endswith("7") else "pm_card_visa"
            try:
                reply = self._stub.Charge(charge(key, amount=990, method=method), timeout=3)
                self._record(Event(time.monotonic(), "Charge", key, "OK", payment=reply.payment))
            except grpc.RpcError as error:
                self._record(Event(time.monotonic(), "Charge", key, label(error), retry_delay_of(error) is not None))
            with self._lock:
                acked = list(self.acked.values())
            if acked:
                payment_id = acked[len(acked) // 2].id
                try:
                    self._stub.GetPayment(svc.GetPaymentRequest(id=payment_id), timeout=3)
                    self._record(Event(time.monotonic(), "GetPayment", payment_id, "OK"))
                except grpc.RpcError as error:
                    retry_info = retry_delay_of(error) is not None
                    self._record(Event(time.monotonic(), "GetPayment", payment_id, label(error), retry_info))
            time.sleep(0.02)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def unavailable_since(self, since: float, at_least: int) -> bool:
        return sum(1 for e in self.snapshot() if e.at > since and "DATABASE_UNAVAILABLE" in e.outcome) >= at_least

    def charged_since(self, since: float) -> bool:
        return any(e.at > since and e.rpc == "Charge" and e.outcome == "OK" for e in self.snapshot())


def test_postgres_stopped_and_restarted_mid_load(own_postgres: StoppablePostgres, tmp_path: Path) -> None:
    dsn = _create_database(own_postgres)
    sandbox = StripeSandbox().start()
    server = ServeProcess(
        dsn,
        tmp_path / "serve.log",
        PAYMENTS_STRIPE_API_BASE=sandbox.url,
        PAYMENTS_STRIPE_API_KEY="sk_test_outage",
        PAYMENTS_PSP_BUDGET_SECONDS="2",
        PAYMENTS_RECOVERY_IDLE_SECONDS="0.5",
    )
    channel = client_channel(server.target)
    stub = payment_stub(channel)
    load = Load(stub)
    outages: list[tuple[str, float, float]] = []  # (mode, stopped at, back at)
    recovered_after: list[float] = []
    try:
        server.start()
        load.start()
        for mode in ("fast", "immediate"):
            time.sleep(1.0)  # under load with the database up
            stopping = time.monotonic()
            own_postgres.stop(mode)
            # Load keeps running against the missing database.
            assert wait_for(functools.partial(load.unavailable_since, stopping, 10), timeout=10), (
                "the outage was never reported to a client"
            )
            time.sleep(1.0)
            own_postgres.start()
            back = time.monotonic()
            outages.append((mode, stopping, back))
            ok_again = wait_for(functools.partial(load.charged_since, back), timeout=15)
            assert ok_again, "the service did not recover after PostgreSQL came back"
            first_ok = min(e.at for e in load.snapshot() if e.at > back and e.rpc == "Charge" and e.outcome == "OK")
            recovered_after.append(first_ok - back)
        time.sleep(0.5)
        load.stop()
        # Every charge that failed is retried with its key until it has a final answer.
        events = load.snapshot()
        failed_keys = {e.key for e in events if e.rpc == "Charge" and e.outcome != "OK"} - set(load.acked)
        # Those the outage cut after their key was claimed: PENDING (or PROCESSING) until retried.
        interrupted = failed_keys & set(rows_by_key(dsn, "payments"))
        retried: dict[str, res.Payment] = {}
        for key in sorted(failed_keys):
            method = "pm_card_visa_chargeDeclined" if key.endswith("7") else "pm_card_visa"
            reply, _ = until_final(
                functools.partial(stub.Charge, charge(key, amount=990, method=method), timeout=5),
                allowed=CRASH_RETRYABLE, is_final=lambda r: r.payment.status in FINAL, budget_seconds=30, what=key,
            )  # fmt: skip
            retried[key] = reply.payment
        # Acknowledged payments are all still there, as acknowledged, through the API...
        for key, payment in load.acked.items():
            read = stub.GetPayment(svc.GetPaymentRequest(id=payment.id), timeout=5).payment
            assert (read.id, read.status, read.amount) == (payment.id, payment.status, payment.amount), key
        exit_code = server.terminate()
    finally:
        load.stop()
        channel.close()
        server.close()
        sandbox.stop()

    events = load.snapshot()
    outcomes = Counter((e.rpc, e.outcome) for e in events)
    print(
        f"\ndatabase outage: {len(load.acked)} charges acknowledged, {len(retried)} finished on a retry "
        f"({len(interrupted)} of them cut after their key was claimed); "
        f"recovered {', '.join(f'{t:.2f}s' for t in recovered_after)} after PostgreSQL was back; "
        f"outcomes {dict(outcomes)}"
    )
    assert exit_code == 0, server.log_tail()
    assert server.error_lines() == []
    assert server.starts == 1, "recovered without a restart"
    # Nothing but OK or UNAVAILABLE/DATABASE_UNAVAILABLE (with RetryInfo), ever: no INTERNAL, no UNKNOWN.
    for event in events:
        assert event.outcome in ("OK", "UNAVAILABLE/DATABASE_UNAVAILABLE"), event
        assert event.outcome == "OK" or event.retry_info, event
    during = [e for e in events if any(stop < e.at < back for _, stop, back in outages)]
    assert sum(1 for e in during if e.outcome != "OK") >= 20
    assert all(t <= RECOVERY_LIMIT_SECONDS for t in recovered_after), recovered_after
    # ...and in PostgreSQL, which also holds the retried ones; nothing is left half-done.
    rows = rows_by_key(dsn, "payments")
    for key, payment in {**load.acked, **retried}.items():
        assert rows[key].id == payment.id, key
        assert f"PAYMENT_STATUS_{rows[key].status}" == res.PaymentStatus.Name(payment.status), key
    assert set(rows) <= set(load.acked) | set(retried), "a payment nobody was told about"
    assert unfinished_keys(dsn) == []
    # Exactly once at the PSP, acknowledged or retried.
    for key in {**load.acked, **retried}:
        assert sandbox.executions_for_key(psp_idempotency_key("default", key, Operation.CHARGE)) == 1, key


async def test_a_session_the_server_terminates_is_unavailable_never_an_internal_error(database_url: str) -> None:
    """When PostgreSQL ends a pooled session (shutdown, pg_terminate_backend), the next query on it can
    race the termination inside asyncpg (InternalClientError, MagicStack/asyncpg#1069): that too is a
    retryable StorageUnavailable, and the broken connection is never handed out again."""
    db = Database(await create_pool(database_url, min_size=1, max_size=1))
    admin = await asyncpg.connect(database_url)
    outcomes: Counter[str] = Counter()
    try:
        for _ in range(200):
            async with db.connection() as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            try:
                async with db.connection() as conn:
                    await conn.fetchval("SELECT 1")
                outcomes["ok"] += 1
            except StorageUnavailable:
                outcomes["unavailable"] += 1
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1  # the pool recovered by itself
    finally:
        await admin.close()
        await db.close()
    assert set(outcomes) <= {"ok", "unavailable"}, outcomes
