"""SIGTERM while RPCs are in flight: drain, refuse, finish, exit 0.

A `payments serve` subprocess with PAYMENTS_SHUTDOWN_GRACE_SECONDS=6 charges through the Stripe
sandbox, which holds the first PaymentIntent requests for 2 s (a slow PSP). While those charges are
held at the PSP, the server gets SIGTERM. A client watching grpc.health.v1 sees NOT_SERVING; new RPCs
are refused with UNAVAILABLE (and never reach the PSP); every in-flight charge finishes OK within the
grace period; the process exits 0.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.sandboxes.stripe_objects import CREATE_PAYMENT_INTENT
from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import resources_pb2 as res
from server.api.client import payment_stub
from server.domain.idempotency import Operation, psp_idempotency_key
from tests.support.chaos import ServeProcess, client_channel, wait_for, worker_resuming_a_charge
from tests.support.processes import free_port
from tests.support.requests import charge

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

GRACE_SECONDS = 6.0
PSP_DELAY_SECONDS = 2.0
IN_FLIGHT = 8


class HealthWatch:
    """Streams grpc.health.v1 Watch for the whole server and records every status with its time."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stream = health_pb2_grpc.HealthStub(self._channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
        self.seen: list[tuple[float, int]] = []
        self.ended: str | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for answer in self._stream:
                with self._lock:
                    self.seen.append((time.monotonic(), answer.status))
        except grpc.RpcError as error:
            self.ended = error.code().name if isinstance(error, grpc.Call) else str(error)

    def first(self, status: int) -> float | None:
        with self._lock:
            return next((at for at, s in self.seen if s == status), None)

    def close(self) -> None:
        self._stream.cancel()  # a client that saw NOT_SERVING goes elsewhere
        self._thread.join(timeout=5)
        self._channel.close()


def test_sigterm_drains_in_flight_rpcs_and_refuses_new_ones(database_url: str, tmp_path: Path) -> None:
    health_port = free_port()  # the plaintext health listener the kubelet's probes use
    sandbox = StripeSandbox().start()
    sandbox.inject("delay", count=IN_FLIGHT, method="POST", path_prefix="/v1/payment_intents",
                   stall_seconds=PSP_DELAY_SECONDS)  # fmt: skip
    server = ServeProcess(
        database_url,
        tmp_path / "serve.log",
        PAYMENTS_STRIPE_API_BASE=sandbox.url,
        PAYMENTS_STRIPE_API_KEY="sk_test_shutdown",
        PAYMENTS_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
        PAYMENTS_HEALTH_LISTEN=f"127.0.0.1:{health_port}",
    )
    channel = client_channel(server.target)
    stub = payment_stub(channel)
    watch: HealthWatch | None = None
    try:
        server.start()
        watch = HealthWatch(server.target)
        assert wait_for(lambda: watch is not None and watch.first(health_pb2.HealthCheckResponse.SERVING) is not None,
                        timeout=5)  # fmt: skip
        keys = [f"drain-{i}" for i in range(IN_FLIGHT)]
        futures = [stub.Charge.future(charge(key), timeout=30) for key in keys]
        held = wait_for(
            lambda: all(sandbox.is_in_flight(psp_idempotency_key("default", k, Operation.CHARGE)) for k in keys),
            timeout=5,
        )
        assert held, "the charges never reached the (slow) PSP"

        assert server.process is not None
        terminated = time.monotonic()
        server.process.send_signal(signal.SIGTERM)

        # Health turns NOT_SERVING for whoever watches it.
        assert wait_for(lambda: watch is not None and watch.first(health_pb2.HealthCheckResponse.NOT_SERVING)
                        is not None, timeout=3), f"health never turned NOT_SERVING: {watch.seen}"  # fmt: skip
        not_serving_after = (watch.first(health_pb2.HealthCheckResponse.NOT_SERVING) or 0) - terminated
        watch.close()
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe_channel:  # a readiness probe, draining
            probe = health_pb2_grpc.HealthStub(probe_channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status

        # New RPCs are refused while the old ones drain: on the existing channel and on a new one.
        refused: list[grpc.StatusCode | None] = []
        for attempt, target_channel in enumerate([channel, client_channel(server.target), channel]):
            try:
                payment_stub(target_channel).Charge(charge(f"late-{attempt}"), timeout=2)
            except grpc.RpcError as error:
                refused.append(error.code() if isinstance(error, grpc.Call) else None)
            else:
                refused.append(None)
            if target_channel is not channel:
                target_channel.close()
        draining = server.running

        # Every in-flight RPC finishes OK within the grace period.
        payments = [future.result(timeout=GRACE_SECONDS + 5).payment for future in futures]
        finished_after = time.monotonic() - terminated
        exit_code = server.process.wait(timeout=GRACE_SECONDS + 10)
        exited_after = time.monotonic() - terminated
    finally:
        if watch is not None:
            watch.close()
        channel.close()
        server.close()
        sandbox.stop()

    print(
        f"\nshutdown: NOT_SERVING {not_serving_after:.2f}s after SIGTERM, in-flight charges done after "
        f"{finished_after:.2f}s, exit {exit_code} after {exited_after:.2f}s (grace {GRACE_SECONDS}s)"
    )
    assert refused == [grpc.StatusCode.UNAVAILABLE] * 3
    assert probe == health_pb2.HealthCheckResponse.NOT_SERVING, "readiness must take a draining pod out"
    assert draining, "the new RPCs were refused while the server was still draining"
    assert all(p.status == res.PAYMENT_STATUS_SUCCEEDED for p in payments)
    assert finished_after < GRACE_SECONDS
    assert exit_code == 0, server.log_tail()
    assert server.error_lines() == []
    assert exited_after < GRACE_SECONDS + 5
    # The refused RPCs never reached the PSP; the drained ones executed once each.
    assert sandbox.executions(CREATE_PAYMENT_INTENT) == IN_FLIGHT
    for key in keys:
        assert sandbox.executions_for_key(psp_idempotency_key("default", key, Operation.CHARGE)) == 1
    assert "drain" in server.log_tail() or "shutting down" in server.log_tail()


def test_sigterm_while_the_worker_waits_on_the_psp_stops_serving_at_once(database_url: str, tmp_path: Path) -> None:
    with worker_resuming_a_charge(
        database_url, tmp_path / "serve.log", "left-to-the-worker", resume_seconds=5,
        PAYMENTS_SHUTDOWN_GRACE_SECONDS="2", PAYMENTS_PSP_BUDGET_SECONDS="8",
    ) as resuming:  # fmt: skip
        assert resuming.server.process is not None
        resuming.server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # Draining has begun: health says so, and a new charge is refused instead of executed.
        try:
            health = health_pb2_grpc.HealthStub(resuming.channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        except grpc.RpcError:
            pass  # already refusing: fine too
        with pytest.raises(grpc.RpcError) as refused:
            resuming.stub.Charge(charge("after-sigterm"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
