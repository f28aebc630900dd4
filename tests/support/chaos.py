"""Tools for the fault and crash suite.

- `ServeProcess`: a `payments serve` subprocess that can be SIGKILLed, restarted on the same port and
  SIGTERMed; its output goes to a log file (an unread pipe would fill up and freeze the server).
- `until_final`: a client that retries one operation on its own idempotency key until it gets a
  final answer, refusing every error the contract does not allow while retrying.
- `StoppablePostgres`: a PostgreSQL cluster of the test's own (never the session's) that can be
  stopped and started again on the same socket.
- `rows_by_key`: what the database really holds, read directly with asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from adapters.sandboxes.stripe_sandbox import StripeSandbox
from server.api.client import PaymentStub, payment_stub
from server.domain.idempotency import Operation, psp_idempotency_key
from server.domain.ids import IdKind, format_id
from tests.support.processes import REPO, free_port, wait_serving
from tests.support.requests import charge

T = TypeVar("T")

# Reconnect quickly after a restart: gRPC's default backoff grows to minutes after repeated failures.
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 250),
]


def client_channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=FAST_RECONNECT)


# ------------------------------------------------------------------------------------ server process


class ServeProcess:
    """`python -m server.cli serve` on a fixed loopback port, restartable after a kill."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        code: Path = REPO,
        **more_env: str,
    ) -> None:
        """`code` is the source tree the server runs from: this one, or another release's (its modules
        are imported first: they come first on the path)."""
        self.port = port or free_port()
        self.code = code
        self.target = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = {
            **os.environ,
            "PAYMENTS_DATABASE_URL": database_url,
            "PAYMENTS_LISTEN": self.target,
            **(env or {}),
            **more_env,
        }
        if code != REPO:
            self._env["PYTHONPATH"] = f"{code}{os.pathsep}{code / 'generated'}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        assert self.process is None or self.process.poll() is not None, "the server is still running"
        with self.log_path.open("ab") as log:
            log.write(f"---- start {self.starts + 1}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server.cli", "serve"], cwd=self.code, env=self._env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.starts += 1
        if wait:
            self.wait_serving(timeout)

    def wait_serving(self, timeout: float = 30.0) -> None:
        try:
            wait_serving(self.target, timeout)
        except TimeoutError:
            raise AssertionError(f"{self.target} never became SERVING; log tail:\n{self.log_tail()}") from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, in-flight work is cut wherever it stands."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)

    def error_lines(self) -> list[str]:
        """ERROR log lines (the edge logs every INTERNAL at ERROR) and tracebacks printed outside the
        JSON log (an uncaught exception), over all the server's lives."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line[:2000] for line in text.splitlines() if '"level": "ERROR"' in line or line.startswith("Traceback")]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"


# --------------------------------------------------------------------------------------- the client


def reason_of(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of a service error; "" for a transport error (no rich status)."""
    if not isinstance(error, grpc.Call):
        return ""
    status = rpc_status.from_call(error)
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return "?"


def retry_delay_of(error: grpc.RpcError) -> float | None:
    if not isinstance(error, grpc.Call):
        return None
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToTimedelta().total_seconds())
    return None


def label(error: grpc.RpcError) -> str:
    code = error.code() if isinstance(error, grpc.Call) else None
    name = code.name if code is not None else type(error).__name__
    return f"{name}/{reason_of(error) or '-'}"


# What a client may see while retrying through crashes and outages: code → allowed ErrorInfo reasons
# ("" = a transport-level error without a rich status, e.g. the connection died with the server).
CRASH_RETRYABLE: Mapping[grpc.StatusCode, frozenset[str]] = {
    grpc.StatusCode.UNAVAILABLE: frozenset({"", "PSP_UNAVAILABLE", "DATABASE_UNAVAILABLE"}),
    grpc.StatusCode.ABORTED: frozenset({"IDEMPOTENCY_KEY_IN_USE"}),
    grpc.StatusCode.DEADLINE_EXCEEDED: frozenset({""}),
    # A connection cut mid-stream by SIGKILL can surface as UNKNOWN/CANCELLED without a rich status.
    grpc.StatusCode.UNKNOWN: frozenset({""}),
    grpc.StatusCode.CANCELLED: frozenset({""}),
}
PSP_FAULT_RETRYABLE: Mapping[grpc.StatusCode, frozenset[str]] = {
    grpc.StatusCode.UNAVAILABLE: frozenset({"PSP_UNAVAILABLE"}),
    grpc.StatusCode.ABORTED: frozenset({"IDEMPOTENCY_KEY_IN_USE"}),
}


class UnexpectedError(AssertionError):
    """An RPC error the contract does not allow in this situation."""


@dataclass
class Attempts:
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def retries(self) -> int:
        return self.calls - 1


def until_final(
    call: Callable[[], T],
    *,
    allowed: Mapping[grpc.StatusCode, Collection[str]],
    is_final: Callable[[T], bool] = lambda _: True,
    budget_seconds: float = 60.0,
    pause: float = 0.05,
    what: str = "",
) -> tuple[T, Attempts]:
    """Repeat `call` (same request, same key) until it answers with a final result.

    Errors listed in `allowed` are retried (honouring RetryInfo, capped at 1 s); any other error, or
    running out of `budget_seconds`, fails the test with the errors seen so far.
    """
    attempts = Attempts()
    deadline = time.monotonic() + budget_seconds
    while True:
        attempts.calls += 1
        try:
            result = call()
        except grpc.RpcError as error:
            seen = label(error)
            attempts.errors[seen] += 1
            code = error.code() if isinstance(error, grpc.Call) else None
            if code is None or code not in allowed or reason_of(error) not in allowed[code]:
                details = error.details() if isinstance(error, grpc.Call) else str(error)
                raise UnexpectedError(f"{what}: {seen} ({details}); before: {dict(attempts.errors)}") from error
            delay = min(retry_delay_of(error) or pause, 1.0)
        else:
            if is_final(result):
                return result, attempts
            delay = pause
        if time.monotonic() + delay > deadline:
            raise UnexpectedError(f"{what}: no final answer in {budget_seconds}s; errors: {dict(attempts.errors)}")
        time.sleep(delay)


class InFlight:
    """Counts the client's RPCs under way (the crash test kills only while some are)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: Counter[str] = Counter()

    def wrap(self, key: str, call: Callable[[], T]) -> Callable[[], T]:
        def tracked() -> T:
            with self._lock:
                self._keys[key] += 1
            try:
                return call()
            finally:
                with self._lock:
                    self._keys[key] -= 1
                    if self._keys[key] <= 0:
                        del self._keys[key]

        return tracked

    def keys_now(self) -> list[str]:
        with self._lock:
            return list(self._keys)


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


# -------------------------------------------------------------------------------------- the database


@dataclass(frozen=True)
class Row:
    id: str  # the public id (pay_…, re_…, po_…)
    status: str


_KINDS = {"payments": IdKind.PAYMENT, "refunds": IdKind.REFUND, "payouts": IdKind.PAYOUT}


def rows_by_key(dsn: str, table: str) -> dict[str, Row]:
    """{idempotency key: (public id, status)} of one resource table, read straight from PostgreSQL."""
    assert table in _KINDS

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(f"SELECT idempotency_key, id, status FROM {table}"))
        finally:
            await conn.close()

    rows = asyncio.run(fetch())
    return {r["idempotency_key"]: Row(format_id(_KINDS[table], r["id"]), r["status"]) for r in rows}


def payment_amounts(dsn: str) -> dict[str, tuple[int, int, int]]:
    """{idempotency key: (amount captured, refunded, reserved)} of every payment."""

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            sql = "SELECT idempotency_key, amount_captured, amount_refunded, amount_reserved FROM payments"
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return {r[0]: (r[1], r[2], r[3]) for r in asyncio.run(fetch())}


def poll_counts(dsn: str) -> str:
    """How often the status poller looked up payouts since their last transition, per status."""

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            sql = "SELECT status, count(*) AS n, sum(polls) AS polls FROM payouts GROUP BY status ORDER BY status"
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return ", ".join(f"{r['status']} payouts: {r['polls']} polls of {r['n']}" for r in asyncio.run(fetch()))


def finishers(dsn: str, resource_type: str) -> Counter[str]:
    """Who recorded the final outcome of each resource of a type (a client's RPC, the worker, …)."""

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            sql = (
                "SELECT DISTINCT ON (resource_id) actor FROM resource_events WHERE resource_type = $1"
                " ORDER BY resource_id, id DESC"
            )
            return list(await conn.fetch(sql, resource_type))
        finally:
            await conn.close()

    return Counter(r["actor"] for r in asyncio.run(fetch()))


def unfinished_keys(dsn: str) -> list[str]:
    """Idempotency keys still at the 'started' recovery point."""

    async def fetch() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT idempotency_key FROM idempotency_keys WHERE recovery_point <> 'finished'")
            return [r["idempotency_key"] for r in rows]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def in_progress(dsn: str) -> dict[str, int]:
    """How many resources still wait for an answer (payments/payouts PENDING or PROCESSING, refunds
    PENDING)."""

    async def fetch() -> dict[str, int]:
        conn = await asyncpg.connect(dsn)
        try:
            counts = {}
            for table in _KINDS:
                counts[table] = int(
                    await conn.fetchval(f"SELECT count(*) FROM {table} WHERE status IN ('PENDING', 'PROCESSING')")
                )
            return counts
        finally:
            await conn.close()

    return asyncio.run(fetch())


class StoppablePostgres:
    """A PostgreSQL cluster of this test's own, in a temporary folder, that can be stopped (as an
    operator or a crash would) and started again on the same unix socket, so clients reconnect with
    the same URL. Never the session cluster other tests share."""

    def __init__(self) -> None:
        import pgserver
        from pgserver import _commands

        self._pg_ctl: Callable[..., str] = _commands.pg_ctl
        # A short path: the unix socket lives in it and socket paths are limited to ~100 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="pgo", dir="/tmp"))
        self._server: Any = pgserver.get_server(self._dir / "pg", cleanup_mode="delete")
        info = self._server.get_postmaster_info()
        self.pgdata: Path = self._server.pgdata
        self._socket_dir = str(info.socket_dir)
        self._user: str | None = self._server.system_user
        self.admin_url = str(self._server.get_uri())
        self.running = True

    def url(self, database: str) -> str:
        return str(self._server.get_uri(database))

    def stop(self, mode: str = "immediate") -> None:
        """`pg_ctl stop -m fast` (sessions terminated, clean) or `immediate` (like a crash: no
        checkpoint, WAL replay at the next start)."""
        self._pg_ctl(["-w", "-t", "30", "-m", mode, "stop"], pgdata=self.pgdata, user=self._user, timeout=40)
        self.running = False

    def start(self) -> None:
        self._pg_ctl(
            ["-w", "-t", "30", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self.pgdata / "log"), "start"],
            pgdata=self.pgdata, user=self._user, timeout=40,
        )  # fmt: skip
        self.running = True

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("fast")
        # pgserver only knows the first postmaster; it is gone, so this just deletes the data folder.
        self._server.cleanup()
        shutil.rmtree(self._dir, ignore_errors=True)


@dataclass
class WorkerResuming:
    """A server whose background worker is resuming a charge at the PSP right now."""

    sandbox: StripeSandbox
    server: ServeProcess
    channel: grpc.Channel
    stub: PaymentStub
    psp_key: str


@contextlib.contextmanager
def worker_resuming_a_charge(
    database_url: str, log: Path, key: str, *, resume_seconds: float, **env: str
) -> Iterator[WorkerResuming]:
    """`payments serve` whose client gave up on a charge (every attempt got a 500) and whose worker is now
    resuming it, slowly: the PSP holds the worker's request for `resume_seconds`."""
    sandbox = StripeSandbox().start()
    sandbox.inject("http_500", count=5, method="POST")  # the client's charge runs out of attempts...
    sandbox.inject("delay", count=1, method="POST", stall_seconds=resume_seconds)  # ...the worker's resume is slow
    settings = {
        "PAYMENTS_STRIPE_API_BASE": sandbox.url,
        "PAYMENTS_STRIPE_API_KEY": "sk_test_worker",
        "PAYMENTS_RECOVERY_IDLE_SECONDS": "0.2",
        **env,
    }
    server = ServeProcess(database_url, log, env=settings)
    channel = client_channel(server.target)
    stub = payment_stub(channel)
    try:
        server.start()
        with pytest.raises(grpc.RpcError) as caught:
            stub.Charge(charge(key), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        held = psp_idempotency_key("default", key, Operation.CHARGE)
        assert wait_for(lambda: sandbox.is_in_flight(held), timeout=5), "the worker never resumed the charge"
        yield WorkerResuming(sandbox, server, channel, stub, held)
    finally:
        channel.close()
        server.close()
        sandbox.stop()
