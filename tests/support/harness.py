"""A real payments server for end-to-end tests: real gRPC on a free loopback port, real PostgreSQL,
running on its own event loop in a background thread so tests can use plain (sync) gRPC stubs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc

from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider, RetryPolicy
from adapters.sandboxes.inprocess import InProcessSandbox
from server.api.client import PaymentStub, payment_stub
from server.api.servicer import ClientIdentifier
from server.app.execution import ExecutionPolicy
from server.app.worker import WorkerPolicy
from server.bootstrap import Service, start_service
from server.config import Settings
from server.domain.finality import RecoverySchedule

T = TypeVar("T")

FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05, attempt_timeout=2.0)
# A worker that acts within a test's patience: resumes after 0.3 s of silence, polls from 0.1 s on.
FAST_WORKER = WorkerPolicy(
    interval_seconds=0.1,
    recovery=RecoverySchedule(idle_seconds=0.3, first_seconds=0.1, early_cap_seconds=1.0),
    first_poll_seconds=0.1,
    max_poll_interval_seconds=0.3,
    lease_seconds=5.0,
    psp_budget_seconds=2.0,
)


class ServerHarness:
    def __init__(
        self,
        dsn: str,
        *,
        sandbox: InProcessSandbox | None = None,
        providers: ProviderSet | None = None,
        policy: ExecutionPolicy | None = None,
        identifier: ClientIdentifier | None = None,
        worker: WorkerPolicy | None = None,
        admin_clients: tuple[str, ...] = (),
    ) -> None:
        self.sandbox = sandbox or InProcessSandbox("sandbox")
        retrying = RetryingProvider(self.sandbox, FAST_RETRIES)
        self.providers = providers or ProviderSet(cards=retrying, bank=retrying)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        settings = Settings(
            listen="127.0.0.1:0", shutdown_grace_seconds=2.0, worker=worker is not None, admin_clients=admin_clients
        )
        self.service: Service = self.run(
            start_service(
                settings,
                dsn=dsn,
                providers=self.providers,
                policy=policy,
                identifier=identifier,
                worker_policy=worker,
                migrate=False,
            )
        )
        self.target = f"127.0.0.1:{self.service.port}"
        self.channel = grpc.insecure_channel(self.target)
        self.stub: PaymentStub = payment_stub(self.channel)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def close(self) -> None:
        self.channel.close()
        self.run(self.service.close(grace_seconds=1.0))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
