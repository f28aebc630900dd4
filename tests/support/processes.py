"""Server processes for tests: `payments serve` subprocesses, and spawned server processes whose
in-process PSP sandbox shares its ledger across processes (so PSP calls can be counted globally)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import MutableMapping
from multiprocessing.synchronize import Event
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_serving(target: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(target) as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{target} did not become SERVING")


def start_cli_server(database_url: str, port: int, **env: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "PAYMENTS_DATABASE_URL": database_url,
        "PAYMENTS_LISTEN": f"127.0.0.1:{port}",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"], cwd=REPO, env=environment,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,  # stderr: warnings and errors only (server/logs.py)
    )  # fmt: skip


def run_cli(*args: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args, "--target", f"127.0.0.1:{port}"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _serve_with_shared_sandbox(
    database_url: str, port: int, calls: MutableMapping[str, int], results: MutableMapping[str, tuple[str, ...]],
    latency: float, stop: Event,
) -> None:  # fmt: skip
    from adapters.directory import ProviderSet
    from adapters.retry import RetryingProvider
    from adapters.sandboxes.inprocess import InProcessSandbox
    from server.bootstrap import start_service
    from server.config import Settings

    async def main() -> None:
        sandbox = InProcessSandbox("sandbox", calls=calls, results=results, latency_seconds=latency)  # type: ignore[arg-type]
        providers = ProviderSet(cards=RetryingProvider(sandbox))
        service = await start_service(
            Settings(listen=f"127.0.0.1:{port}"), dsn=database_url, providers=providers, migrate=False
        )
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await service.close(grace_seconds=1.0)

    asyncio.run(main())


class SharedSandboxServers:
    """N server processes on one database whose PSP sandbox ledger is shared through a manager."""

    def __init__(self, database_url: str, count: int, latency: float = 0.05) -> None:
        context = multiprocessing.get_context("spawn")
        self._manager = context.Manager()
        self.calls: MutableMapping[str, int] = self._manager.dict()
        self.results: MutableMapping[str, tuple[str, ...]] = self._manager.dict()
        self._stop = context.Event()
        self.ports = [free_port() for _ in range(count)]
        self._processes = [
            context.Process(
                target=_serve_with_shared_sandbox,
                args=(database_url, port, self.calls, self.results, latency, self._stop),
                daemon=True,
            )
            for port in self.ports
        ]
        for process in self._processes:
            process.start()
        for port in self.ports:
            wait_serving(f"127.0.0.1:{port}")

    def total_calls(self) -> int:
        return sum(self.calls.values())

    def close(self) -> None:
        self._stop.set()
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        self._manager.shutdown()
