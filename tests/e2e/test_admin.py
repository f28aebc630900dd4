"""The operator's admin service (payments.admin.v1.AdminService) through a real gRPC server, real
PostgreSQL and the real recovery worker: operations the worker could not confirm end in
REQUIRES_RECONCILIATION, an operator lists them, re-checks them at the PSP and resolves them with a
compare-and-set, and the original idempotency keys then replay the resolved state."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.directory import ProviderSet
from adapters.retry import RetryingProvider
from adapters.sandboxes.inprocess import FaultKind, InProcessSandbox
from payments.admin.v1 import admin_service_pb2 as admin_pb
from payments.v1 import resources_pb2 as res
from server.api.client import AdminStub, admin_stub
from server.security.auth import Authenticator, TokenTable, generate_token, hash_token
from tests.support.chaos import wait_for
from tests.support.harness import FAST_RETRIES, FAST_WORKER, ServerHarness
from tests.support.processes import free_port, run_cli, start_cli_server, wait_serving
from tests.support.protofuzz import messages
from tests.support.requests import charge, error_reason, field_violations, refund, rpc_error, sepa_payout, status_of

ADMIN_DOMAIN = "payments.admin.v1.AdminService"
RR = admin_pb.OPERATION_STATUS_REQUIRES_RECONCILIATION
UNKNOWN_PAYMENT = "pay_" + "0" * 32


def sql(database_url: str, query: str, *args: object) -> list[Any]:
    """What the database really holds, read (or, for fixtures, written) directly."""

    async def run() -> list[Any]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    return wait_for(check, timeout, interval=0.1)


def error_domain(error: grpc.RpcError) -> str:
    for detail in status_of(error).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.domain)
    raise AssertionError("no ErrorInfo")


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class Shop:
    """Two clients on one server: `shop` (a payments caller) and `ops` (the only admin client)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.tokens = {"ops": generate_token(), "shop": generate_token()}
        table = TokenTable.parse(json.dumps({client: hash_token(token) for client, token in self.tokens.items()}))
        # A PSP that can be asked about an operation for 2 s only: recovery gives up asking after that.
        self.sandbox = InProcessSandbox("sandbox", lookup_window_seconds=2.0)
        self.providers = ProviderSet(cards=RetryingProvider(self.sandbox, FAST_RETRIES))
        self.server = ServerHarness(
            database_url, sandbox=self.sandbox, providers=self.providers, identifier=Authenticator(tokens=table),
            admin_clients=("ops",),
        )  # fmt: skip
        self.admin: AdminStub = admin_stub(self.server.channel)
        self.as_shop = bearer(self.tokens["shop"])
        self.as_ops = bearer(self.tokens["ops"])

    def lost(self, call: Callable[[], object]) -> None:
        """Runs an RPC whose every PSP attempt executes but loses its answer."""
        self.sandbox.fail_next(FAST_RETRIES.max_attempts, FaultKind.LOSE_ANSWER)
        assert rpc_error(call).code() == grpc.StatusCode.UNAVAILABLE

    def stuck(self, **fields: Any) -> list[admin_pb.Operation]:
        response = self.admin.ListStuckOperations(
            admin_pb.ListStuckOperationsRequest(**fields), metadata=self.as_ops, timeout=10
        )
        return list(response.operations)

    def operation(self, resource_id: str) -> admin_pb.Operation:
        request = admin_pb.GetOperationRequest(id=resource_id)
        operation: admin_pb.Operation = self.admin.GetOperation(request, metadata=self.as_ops, timeout=10).operation
        return operation

    def resolve(
        self, resource_id: str, outcome: admin_pb.ResolveOutcome.ValueType, reason: str, *,
        expected: timestamp_pb2.Timestamp, reference: str = "",
    ) -> admin_pb.Operation:  # fmt: skip
        request = admin_pb.ResolveOperationRequest(
            id=resource_id, outcome=outcome, reason=reason, psp_reference=reference, expected_update_time=expected
        )
        operation: admin_pb.Operation = self.admin.ResolveOperation(request, metadata=self.as_ops, timeout=10).operation
        return operation

    def recheck(self, resource_id: str) -> admin_pb.RecheckOperationResponse:
        request = admin_pb.RecheckOperationRequest(id=resource_id)
        response: admin_pb.RecheckOperationResponse = self.admin.RecheckOperation(
            request, metadata=self.as_ops, timeout=20
        )
        return response

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def shop(database_url: str) -> Iterator[Shop]:
    """A paid payment, and a charge, a second charge, a refund of the paid payment and a SEPA payout whose
    answers were all lost and which the recovery worker, with the PSP down past its look-up window, left
    in REQUIRES_RECONCILIATION."""
    shop = Shop(database_url)
    try:
        stub = shop.server.stub
        paid = stub.Charge(charge("paid"), metadata=shop.as_shop, timeout=10).payment
        assert paid.status == res.PAYMENT_STATUS_SUCCEEDED
        shop.lost(lambda: stub.Charge(charge("lost-a"), metadata=shop.as_shop, timeout=10))
        shop.lost(lambda: stub.Charge(charge("lost-b", amount=990), metadata=shop.as_shop, timeout=10))
        shop.lost(lambda: stub.Refund(refund("lost-refund", paid.id), metadata=shop.as_shop, timeout=10))
        shop.lost(lambda: stub.Payout(sepa_payout("lost-payout"), metadata=shop.as_shop, timeout=10))
        shop.sandbox.set_down(True)  # from now on the PSP can confirm nothing either way
        worker = ServerHarness(database_url, sandbox=shop.sandbox, providers=shop.providers, worker=FAST_WORKER)
        try:
            reconciled = "SELECT count(*) AS n FROM {} WHERE status = 'REQUIRES_RECONCILIATION'"
            assert wait_until(
                lambda: (
                    [sql(database_url, reconciled.format(t))[0]["n"] for t in ("payments", "refunds", "payouts")]
                    == [2, 1, 1]
                )
            )
        finally:
            worker.close()  # no background work from here on: every change below is the operator's
        yield shop
    finally:
        shop.close()


def by_key(shop: Shop, key: str) -> str:
    """The public id of the resource a key of `shop` created."""
    for table, prefix in (("payments", "pay"), ("refunds", "re"), ("payouts", "po")):
        rows = sql(shop.database_url, f"SELECT id FROM {table} WHERE idempotency_key = $1", key)
        if rows:
            return f"{prefix}_{rows[0]['id'].hex}"
    raise AssertionError(f"no resource for {key}")


def last_event(shop: Shop, public_id: str) -> Any:
    rows = sql(
        shop.database_url,
        "SELECT from_status, to_status, actor, reason FROM resource_events WHERE resource_id = $1"
        " ORDER BY id DESC LIMIT 1",
        uuid.UUID(hex=public_id.split("_", 1)[1]),
    )
    return rows[0]


# ---------------------------------------------------------------------------------------------- access


def test_only_admin_clients_may_call_it_and_health_and_reflection_list_it(shop: Shop) -> None:
    denied = rpc_error(lambda: shop.admin.ListStuckOperations(
        admin_pb.ListStuckOperationsRequest(), metadata=shop.as_shop, timeout=10
    ))  # fmt: skip
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(denied) == "ADMIN_ONLY"
    assert error_domain(denied) == ADMIN_DOMAIN
    for rpc, request in (
        (shop.admin.ResolveOperation, admin_pb.ResolveOperationRequest(id=UNKNOWN_PAYMENT)),
        (shop.admin.RecheckOperation, admin_pb.RecheckOperationRequest(id=UNKNOWN_PAYMENT)),
        (shop.admin.GetOperation, admin_pb.GetOperationRequest(id=UNKNOWN_PAYMENT)),
    ):
        error = rpc_error(lambda rpc=rpc, request=request: rpc(request, metadata=shop.as_shop, timeout=10))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, "before looking anything up"
    anonymous = rpc_error(lambda: shop.admin.ListStuckOperations(admin_pb.ListStuckOperationsRequest(), timeout=10))
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(anonymous) == "CREDENTIALS_MISSING"

    channel = shop.server.channel
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=ADMIN_DOMAIN), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert {ADMIN_DOMAIN, "payments.v1.PaymentService"} <= names


# --------------------------------------------------------------------------------------------- listing


def test_stuck_operations_of_every_client_are_listed_with_their_evidence(shop: Shop) -> None:
    operations = shop.stuck()
    assert len(operations) == 4
    assert all(op.status == RR and op.client_id == "shop" for op in operations)
    kinds = sorted(admin_pb.ResourceType.Name(op.resource_type) for op in operations)
    assert kinds == ["RESOURCE_TYPE_PAYMENT", "RESOURCE_TYPE_PAYMENT", "RESOURCE_TYPE_PAYOUT", "RESOURCE_TYPE_REFUND"]
    assert [op.update_time.ToNanoseconds() for op in operations] == sorted(
        op.update_time.ToNanoseconds() for op in operations
    ), "oldest update first"
    assert by_key(shop, "paid") not in {op.id for op in operations}
    for op in operations:
        assert op.last_actor == "worker:recovery"
        assert op.last_reason == "recovery:no_evidence"
        assert op.key.recovery_point == admin_pb.RECOVERY_POINT_FINISHED
        assert op.key.executions >= 2, "the first attempt and at least one recovery"
        assert not op.key.HasField("lease_expire_time"), "no execution holds the key"
        newest = op.recent_events[0]
        assert (newest.to_status, newest.actor, newest.reason) == (RR, "worker:recovery", "recovery:no_evidence")
        assert op.recent_events[-1].from_status == admin_pb.OPERATION_STATUS_UNSPECIFIED, "the creation"
        assert op.recent_events[-1].actor == "client:shop"
        assert op.psp == "sandbox"
    (refund_op,) = [op for op in operations if op.resource_type == admin_pb.RESOURCE_TYPE_REFUND]
    assert refund_op.payment_id == by_key(shop, "paid")
    assert refund_op.key.idempotency_key == "lost-refund"
    assert (refund_op.amount.amount_minor, refund_op.amount.currency) == (1250, "EUR")

    first = shop.admin.ListStuckOperations(
        admin_pb.ListStuckOperationsRequest(page_size=3), metadata=shop.as_ops, timeout=10
    )
    assert len(first.operations) == 3
    assert first.next_page_token
    second = shop.admin.ListStuckOperations(
        admin_pb.ListStuckOperationsRequest(page_size=3, page_token=first.next_page_token), metadata=shop.as_ops,
        timeout=10,
    )  # fmt: skip
    assert len(second.operations) == 1
    assert not second.next_page_token
    assert [op.id for op in [*first.operations, *second.operations]] == [op.id for op in operations]

    for request, reason in (
        (admin_pb.ListStuckOperationsRequest(page_token="garbage"), "INVALID_PAGE_TOKEN"),
        (admin_pb.ListStuckOperationsRequest(page_size=3, page_token=first.next_page_token,
                                             older_than=duration_pb2.Duration(seconds=1)), "INVALID_PAGE_TOKEN"),
        (admin_pb.ListStuckOperationsRequest(older_than=duration_pb2.Duration(seconds=-1)), "INVALID_FIELD"),
        (admin_pb.ListStuckOperationsRequest(older_than=duration_pb2.Duration(seconds=10**11)), "INVALID_FIELD"),
        (admin_pb.ListStuckOperationsRequest(page_size=-1), "INVALID_FIELD"),
    ):  # fmt: skip
        error = rpc_error(lambda r=request: shop.admin.ListStuckOperations(r, metadata=shop.as_ops, timeout=10))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == reason
    assert shop.stuck(client_id="someone-else") == []
    assert len(shop.stuck(client_id="shop")) == 4


def test_in_progress_operations_are_listed_once_old_and_a_recheck_hands_them_to_the_recovery_worker(
    database_url: str,
) -> None:
    sandbox = InProcessSandbox("sandbox")
    providers = ProviderSet(cards=RetryingProvider(sandbox, FAST_RETRIES))
    server = ServerHarness(database_url, sandbox=sandbox, providers=providers, admin_clients=("default",))
    admin = admin_stub(server.channel)
    try:
        sandbox.set_down(True)
        unavailable = rpc_error(lambda: server.stub.Charge(charge("pending"), timeout=10))
        assert unavailable.code() == grpc.StatusCode.UNAVAILABLE
        listed = admin.ListStuckOperations(admin_pb.ListStuckOperationsRequest(), timeout=10).operations
        assert list(listed) == [], "PENDING for less than the default 15 minutes is not stuck yet"
        (pending,) = admin.ListStuckOperations(
            admin_pb.ListStuckOperationsRequest(older_than=duration_pb2.Duration(seconds=0)), timeout=10
        ).operations
        assert pending.status == admin_pb.OPERATION_STATUS_PENDING
        assert pending.client_id == "default"
        assert pending.key.recovery_point == admin_pb.RECOVERY_POINT_STARTED
        assert pending.key.HasField("recover_after_time")
        due = "SELECT recover_after <= now() AS due FROM idempotency_keys WHERE idempotency_key = 'pending'"
        assert sql(database_url, due)[0]["due"] is False, "the recovery worker would wait"

        answer = admin.RecheckOperation(admin_pb.RecheckOperationRequest(id=pending.id), timeout=10)
        assert answer.result == admin_pb.RECHECK_RESULT_RECOVERY_SCHEDULED
        assert answer.operation.status == admin_pb.OPERATION_STATUS_PENDING
        assert sql(database_url, due)[0]["due"] is True, "due for the recovery worker now"

        sandbox.set_down(False)
        worker = ServerHarness(database_url, sandbox=sandbox, providers=providers, worker=FAST_WORKER)
        try:
            assert wait_until(lambda: admin.GetOperation(admin_pb.GetOperationRequest(id=pending.id), timeout=10)
                              .operation.status == admin_pb.OPERATION_STATUS_SUCCEEDED)  # fmt: skip
        finally:
            worker.close()
    finally:
        server.close()


# ------------------------------------------------------------------------------------------- resolving


def test_resolve_is_a_compare_and_set_recorded_in_the_event_log_and_replayed_by_the_key(shop: Shop) -> None:
    lost_b = by_key(shop, "lost-b")
    seen = shop.operation(lost_b)
    assert seen.status == RR

    stale = rpc_error(lambda: shop.resolve(lost_b, admin_pb.RESOLVE_OUTCOME_SUCCEEDED, "found it",
                                           expected=seen.create_time))  # fmt: skip
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(stale) == "RESOURCE_CHANGED"
    assert error_domain(stale) == ADMIN_DOMAIN
    assert shop.operation(lost_b) == seen, "a refused resolution changes nothing"

    for request, fields in (
        (admin_pb.ResolveOperationRequest(id=lost_b, outcome=admin_pb.RESOLVE_OUTCOME_RETURNED, reason="x",
                                          expected_update_time=seen.update_time), ["outcome"]),
        (admin_pb.ResolveOperationRequest(id=lost_b, outcome=admin_pb.RESOLVE_OUTCOME_SUCCEEDED, reason="  ",
                                          expected_update_time=seen.update_time), ["reason"]),
        (admin_pb.ResolveOperationRequest(id=lost_b, reason="x"), ["outcome", "expected_update_time"]),
        (admin_pb.ResolveOperationRequest(id="pay_nope", outcome=admin_pb.RESOLVE_OUTCOME_FAILED, reason="x",
                                          expected_update_time=seen.update_time), ["id"]),
    ):  # fmt: skip
        error = rpc_error(lambda r=request: shop.admin.ResolveOperation(r, metadata=shop.as_ops, timeout=10))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert field_violations(error) == fields
    missing = rpc_error(lambda: shop.resolve(UNKNOWN_PAYMENT, admin_pb.RESOLVE_OUTCOME_FAILED, "x",
                                             expected=seen.update_time))  # fmt: skip
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    reason = "PSP dashboard shows ch_found_by_ops captured"
    resolved = shop.resolve(lost_b, admin_pb.RESOLVE_OUTCOME_SUCCEEDED, reason, expected=seen.update_time,
                            reference="ch_found_by_ops")  # fmt: skip
    assert resolved.status == admin_pb.OPERATION_STATUS_SUCCEEDED
    assert resolved.psp_reference == "ch_found_by_ops"
    assert (resolved.last_actor, resolved.last_reason) == ("admin:ops", f"admin:resolve: {reason}")
    event = last_event(shop, lost_b)
    assert dict(event) == {"from_status": "REQUIRES_RECONCILIATION", "to_status": "SUCCEEDED", "actor": "admin:ops",
                           "reason": f"admin:resolve: {reason}"}  # fmt: skip
    assert resolved.recent_events[0].actor == "admin:ops"

    again = rpc_error(lambda: shop.resolve(lost_b, admin_pb.RESOLVE_OUTCOME_FAILED, "changed my mind",
                                           expected=resolved.update_time))  # fmt: skip
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(again) == "NOT_IN_RECONCILIATION"

    # The client's key now answers the resolved state.
    replay = shop.server.stub.Charge(charge("lost-b", amount=990), metadata=shop.as_shop, timeout=10).payment
    assert (replay.id, replay.status, replay.psp_reference) == (lost_b, res.PAYMENT_STATUS_SUCCEEDED, "ch_found_by_ops")
    captured = sql(shop.database_url, "SELECT amount_captured FROM payments WHERE idempotency_key = 'lost-b'")
    assert captured[0]["amount_captured"] == 990


def test_a_refund_resolved_failed_releases_its_reservation(shop: Shop) -> None:
    paid = by_key(shop, "paid")
    amounts = "SELECT amount_refunded, amount_reserved FROM payments WHERE idempotency_key = 'paid'"
    assert dict(sql(shop.database_url, amounts)[0]) == {"amount_refunded": 0, "amount_reserved": 1250}
    lost_refund = by_key(shop, "lost-refund")
    seen = shop.operation(lost_refund)

    resolved = shop.resolve(lost_refund, admin_pb.RESOLVE_OUTCOME_FAILED, "the PSP has no such refund",
                            expected=seen.update_time)  # fmt: skip
    assert resolved.status == admin_pb.OPERATION_STATUS_FAILED
    assert (resolved.failure.code, resolved.failure.message) == ("resolved_by_operator", "the PSP has no such refund")
    assert dict(sql(shop.database_url, amounts)[0]) == {"amount_refunded": 0, "amount_reserved": 0}
    assert dict(last_event(shop, lost_refund)) == {
        "from_status": "REQUIRES_RECONCILIATION", "to_status": "FAILED", "actor": "admin:ops",
        "reason": "admin:resolve: the PSP has no such refund",
    }  # fmt: skip
    replay = shop.server.stub.Refund(refund("lost-refund", paid), metadata=shop.as_shop, timeout=10).refund
    assert (replay.id, replay.status) == (lost_refund, res.REFUND_STATUS_FAILED)
    assert replay.failure.code == "resolved_by_operator"

    # What was reserved can be refunded again.
    shop.sandbox.set_down(False)
    again = shop.server.stub.Refund(refund("refund-again", paid), metadata=shop.as_shop, timeout=10).refund
    assert (again.status, again.amount.amount_minor) == (res.REFUND_STATUS_SUCCEEDED, 1250)


def test_a_payout_resolved_paid(shop: Shop) -> None:
    lost_payout = by_key(shop, "lost-payout")
    seen = shop.operation(lost_payout)
    assert seen.resource_type == admin_pb.RESOURCE_TYPE_PAYOUT
    resolved = shop.resolve(lost_payout, admin_pb.RESOLVE_OUTCOME_SUCCEEDED, "bank statement line 7",
                            expected=seen.update_time, reference="E2E-FOUND")  # fmt: skip
    assert (resolved.status, resolved.psp_reference) == (admin_pb.OPERATION_STATUS_PAID, "E2E-FOUND")
    replay = shop.server.stub.Payout(sepa_payout("lost-payout"), metadata=shop.as_shop, timeout=10).payout
    assert replay.status == res.PAYOUT_STATUS_PAID


# -------------------------------------------------------------------------------------------- re-check


def test_recheck_applies_only_evidence(shop: Shop) -> None:
    lost_a = by_key(shop, "lost-a")
    before = shop.operation(lost_a)

    nothing = shop.recheck(lost_a)  # the PSP is still down
    assert nothing.result == admin_pb.RECHECK_RESULT_NO_EVIDENCE
    assert nothing.operation == before

    shop.sandbox.set_down(False)  # it executed the charge whose answer was lost
    found = shop.recheck(lost_a)
    assert found.result == admin_pb.RECHECK_RESULT_TRANSITIONED
    assert found.operation.status == admin_pb.OPERATION_STATUS_SUCCEEDED
    assert found.operation.psp_reference.startswith("sbx_ch_")
    assert dict(last_event(shop, lost_a)) == {
        "from_status": "REQUIRES_RECONCILIATION", "to_status": "SUCCEEDED", "actor": "admin:ops",
        "reason": "admin:recheck: psp:succeeded",
    }  # fmt: skip
    assert shop.sandbox.executions() == 5, "nothing was executed again: paid, lost-a, lost-b, the refund, the payout"
    replay = shop.server.stub.Charge(charge("lost-a"), metadata=shop.as_shop, timeout=10).payment
    assert (replay.id, replay.status) == (lost_a, res.PAYMENT_STATUS_SUCCEEDED)

    final = rpc_error(lambda: shop.recheck(lost_a))
    assert final.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(final) == "OPERATION_FINAL"
    for bad, code in (("nope", grpc.StatusCode.INVALID_ARGUMENT), (UNKNOWN_PAYMENT, grpc.StatusCode.NOT_FOUND)):
        assert rpc_error(lambda b=bad: shop.recheck(b)).code() == code  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ hostile input

ADMIN_RPCS = {m.name: m.input_type.name for m in admin_pb.DESCRIPTOR.services_by_name["AdminService"].methods}
ADMIN_ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.FAILED_PRECONDITION}  # fmt: skip


def _any_admin_request() -> st.SearchStrategy[tuple[str, Any]]:
    calls = []
    for rpc, input_name in ADMIN_RPCS.items():
        message_type = getattr(admin_pb, input_name)
        calls.append(st.tuples(st.just(rpc), messages(message_type.DESCRIPTOR, message_type)))
    return st.one_of(*calls)


def test_nothing_an_admin_sends_is_an_internal_error(database_url: str) -> None:
    server = ServerHarness(database_url, admin_clients=("default",))
    admin = admin_stub(server.channel)
    try:
        assert server.stub.Charge(charge("fuzz"), timeout=10).payment.id
        raw = {
            rpc: server.channel.unary_unary(
                f"/{ADMIN_DOMAIN}/{rpc}", request_serializer=None, response_deserializer=None
            )
            for rpc in ADMIN_RPCS
        }
        tokens = ["garbage", "eyJ0IjoiMjAyMC0wMS0wMVQwMDowMDowMCswMDowMCIsImkiOjEsImYiOiIifQ==", "W10=", "bnVsbA=="]

        def check(rpc: str, call: Callable[[], object]) -> None:
            try:
                call()
            except grpc.RpcError as error:
                assert error.code() in ADMIN_ANSWERS, f"{rpc}: {error.code()} {error.details()}"
                assert error_reason(error), "every error carries ErrorInfo"

        for rpc in ADMIN_RPCS:
            for payload in (b"\xff\xff\xff", b"\x0a\xff", b"\x12\x05ab"):
                check(rpc, lambda r=rpc, p=payload: raw[r](p, timeout=10))  # type: ignore[misc]
        for token in tokens:
            request = admin_pb.ListStuckOperationsRequest(page_token=token)
            check("ListStuckOperations", lambda r=request: admin.ListStuckOperations(r, timeout=10))  # type: ignore[misc]

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(call=_any_admin_request())
        def fire(call: tuple[str, Any]) -> None:
            rpc, request = call
            check(rpc, lambda: getattr(admin, rpc)(request, timeout=10))

        fire()
    finally:
        server.close()


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_lists_and_resolves_through_a_payments_serve_process(database_url: str) -> None:
    # A charge whose execution never finished, left (as no code path of the service would) in
    # REQUIRES_RECONCILIATION: resolving it must also finish its key, so the key replays the outcome.
    sandbox = InProcessSandbox("sandbox")
    server = ServerHarness(database_url, sandbox=sandbox)
    sandbox.set_down(True)
    try:
        unavailable = rpc_error(lambda: server.stub.Charge(charge("cli-stuck"), timeout=10))
        assert unavailable.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.close()
    sql(database_url, "UPDATE payments SET status = 'REQUIRES_RECONCILIATION', last_actor = 'test:fixture',"
                      " last_reason = 'no evidence' WHERE idempotency_key = 'cli-stuck'")  # fmt: skip
    port = free_port()
    process = start_cli_server(database_url, port, PAYMENTS_ADMIN_CLIENTS="ops, default", PAYMENTS_WORKER="off",
                               PAYMENTS_PSP="inprocess")  # fmt: skip
    try:
        wait_serving(f"127.0.0.1:{port}")
        listed = run_cli("admin", "stuck", "--json", port=port)
        assert listed.returncode == 0, listed.stderr
        (operation,) = json.loads(listed.stdout)["operations"]
        assert operation["status"] == "OPERATION_STATUS_REQUIRES_RECONCILIATION"
        assert operation["key"]["recovery_point"] == "RECOVERY_POINT_STARTED"
        table = run_cli("admin", "stuck", port=port)
        assert table.returncode == 0, table.stderr
        assert operation["id"] in table.stdout
        assert "no evidence" in table.stdout

        stale = run_cli("admin", "resolve", operation["id"], "--outcome", "FAILED", "--reason", "x",
                        "--expected-update-time", "2020-01-01T00:00:00Z", port=port)  # fmt: skip
        assert stale.returncode == 1
        assert "FAILED_PRECONDITION RESOURCE_CHANGED" in stale.stderr

        resolved = run_cli("admin", "resolve", operation["id"], "--outcome", "failed", "--reason",
                           "the PSP has no record of it", port=port)  # fmt: skip
        assert resolved.returncode == 0, resolved.stderr
        after = json.loads(resolved.stdout)
        assert after["status"] == "OPERATION_STATUS_FAILED"
        assert after["last_actor"] == "admin:default"
        assert after["key"]["recovery_point"] == "RECOVERY_POINT_FINISHED"

        final = run_cli("admin", "recheck", operation["id"], port=port)
        assert final.returncode == 1
        assert "FAILED_PRECONDITION OPERATION_FINAL" in final.stderr

        replay = run_cli("charge", "--amount", "1250", "--currency", "EUR", "--payment-method", "pm_card_visa",
                         "--idempotency-key", "cli-stuck", port=port)  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        payment = json.loads(replay.stdout)
        assert (payment["id"], payment["status"]) == (operation["id"], "PAYMENT_STATUS_FAILED")
        assert payment["failure"]["code"] == "resolved_by_operator"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
