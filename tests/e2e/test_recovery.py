"""The recovery worker (docs/contract.md, Recovery) through the real server and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc
import pytest

from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider
from adapters.sandboxes.inprocess import FaultKind, InProcessSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.domain.idempotency import Operation, psp_idempotency_key
from tests.support.harness import FAST_RETRIES, FAST_WORKER, ServerHarness
from tests.support.requests import charge


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def status_of(server: ServerHarness, payment_id: str) -> int:
    payment: res.Payment = server.stub.GetPayment(svc.GetPaymentRequest(id=payment_id), timeout=5).payment
    return int(payment.status)


def only_payment(server: ServerHarness) -> res.Payment:
    (payment,) = server.stub.ListPayments(svc.ListPaymentsRequest(), timeout=5).payments
    assert isinstance(payment, res.Payment)
    return payment


def test_abandoned_charge_is_finished_by_the_worker(database_url: str) -> None:
    server = ServerHarness(database_url, worker=FAST_WORKER)
    try:
        server.sandbox.fail_next(3, FaultKind.LOSE_ANSWER)  # every attempt of the RPC loses its answer
        with pytest.raises(grpc.RpcError) as caught:
            server.stub.Charge(charge("abandoned"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        started = time.monotonic()
        payment = only_payment(server)
        assert wait_until(lambda: status_of(server, payment.id) == res.PAYMENT_STATUS_SUCCEEDED)
        assert time.monotonic() - started < FAST_WORKER.recovery.idle_seconds + 2.0
        assert server.sandbox.executions() == 1
        # The client's late retry gets the outcome the worker recorded.
        again = server.stub.Charge(charge("abandoned"), timeout=10).payment
        assert again.status == res.PAYMENT_STATUS_SUCCEEDED
        assert again.id == payment.id
    finally:
        server.close()


def test_unconfirmable_operation_ends_in_reconciliation(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # A PSP that can be asked about an operation for 2 s only: recovery gives up asking after that.
    server = ServerHarness(database_url, sandbox=InProcessSandbox("sandbox", lookup_window_seconds=2.0),
                           worker=FAST_WORKER)  # fmt: skip
    try:
        server.sandbox.fail_next(3, FaultKind.LOSE_ANSWER)
        with pytest.raises(grpc.RpcError):
            server.stub.Charge(charge("lost-forever"), timeout=10)
        server.sandbox.set_down(True)  # from now on the PSP can confirm nothing either way
        payment = only_payment(server)
        with caplog.at_level(logging.ERROR, logger="server.app.alerts"):
            reached = wait_until(
                lambda: status_of(server, payment.id) == res.PAYMENT_STATUS_REQUIRES_RECONCILIATION, timeout=15
            )
        assert reached
        alerts = [r for r in caplog.records if getattr(r, "alert", "") == "REQUIRES_RECONCILIATION"]
        assert alerts
        assert alerts[0].resource_id == payment.id  # type: ignore[attr-defined]
        # Never FAILED without evidence, and the key now answers with that state.
        reply = server.stub.Charge(charge("lost-forever"), timeout=10).payment
        assert reply.status == res.PAYMENT_STATUS_REQUIRES_RECONCILIATION
    finally:
        server.close()


def test_two_workers_never_process_the_same_operation_twice(database_url: str) -> None:
    sandbox = InProcessSandbox("sandbox")
    providers = ProviderSet(cards=RetryingProvider(sandbox, FAST_RETRIES))
    client = ServerHarness(database_url, sandbox=sandbox, providers=providers)
    sandbox.set_down(True)
    keys = [f"stalled-{i}" for i in range(30)]
    for key in keys:
        with pytest.raises(grpc.RpcError):
            client.stub.Charge(charge(key), timeout=10)
    before = {key: sandbox.calls_for(psp_idempotency_key("default", key, Operation.CHARGE)) for key in keys}
    sandbox.set_down(False)
    workers = [ServerHarness(database_url, sandbox=sandbox, providers=providers, worker=FAST_WORKER)
               for _ in range(2)]  # fmt: skip
    try:

        def all_succeeded() -> bool:
            listed = client.stub.ListPayments(svc.ListPaymentsRequest(page_size=100), timeout=5).payments
            return len(listed) == len(keys) and all(p.status == res.PAYMENT_STATUS_SUCCEEDED for p in listed)

        assert wait_until(all_succeeded, timeout=15)
        for key in keys:
            calls = sandbox.calls_for(psp_idempotency_key("default", key, Operation.CHARGE))
            assert calls - before[key] == 1, f"{key} was driven {calls - before[key]} times by the workers"
    finally:
        for worker in workers:
            worker.close()
        client.close()
