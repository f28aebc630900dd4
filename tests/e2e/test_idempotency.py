"""The idempotency guarantees (docs/contract.md, Idempotency), through real gRPC on real PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from adapters.sandboxes.inprocess import FaultKind
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from storage.worker_store import PostgresWorkerStore
from tests.support.harness import ServerHarness
from tests.support.requests import charge, error_reason, has_retry_info


def _raw_charge(server: ServerHarness, request: svc.ChargeRequest) -> tuple[bytes, dict[str, str]]:
    """Calls Charge without deserializing, to compare the response bytes themselves."""
    raw = server.channel.unary_unary(
        "/payments.v1.PaymentService/Charge",
        request_serializer=svc.ChargeRequest.SerializeToString,
        response_deserializer=None,
    )
    body, call = raw.with_call(request, timeout=10)
    return body, {k: str(v) for k, v in call.initial_metadata()}


def test_replay_is_byte_identical_and_marked(server: ServerHarness) -> None:
    first, first_meta = _raw_charge(server, charge("replay-1", metadata={"order": "42", "a": "b"}))
    second, second_meta = _raw_charge(server, charge("replay-1", metadata={"a": "b", "order": "42"}))
    assert second == first
    assert "idempotent-replayed" not in first_meta
    assert second_meta.get("idempotent-replayed") == "true"
    assert server.sandbox.total_calls() == 1
    payment = svc.ChargeResponse.FromString(first).payment
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED


def test_same_key_different_request_is_refused(server: ServerHarness) -> None:
    server.stub.Charge(charge("reuse-1", amount=1250), timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Charge(charge("reuse-1", amount=999), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "IDEMPOTENCY_KEY_REUSED"
    assert server.sandbox.total_calls() == 1


def test_key_used_for_another_operation_is_refused(server: ServerHarness) -> None:
    payment = server.stub.Charge(charge("op-1"), timeout=10).payment
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Refund(svc.RefundRequest(idempotency_key="op-1", payment_id=payment.id), timeout=10)
    assert error_reason(caught.value) == "IDEMPOTENCY_KEY_REUSED"


def test_storm_of_identical_requests_makes_one_psp_call(server: ServerHarness) -> None:
    server.sandbox.set_latency(0.05)  # keep the first execution in flight while the storm arrives
    request = charge("storm-1", amount=4200)
    futures = [server.stub.Charge.future(request, timeout=20) for _ in range(200)]
    payments, in_use = [], 0
    for future in futures:
        try:
            payments.append(future.result().payment)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.ABORTED, error
            assert error_reason(error) == "IDEMPOTENCY_KEY_IN_USE"
            assert has_retry_info(error)
            in_use += 1
    assert server.sandbox.total_calls() == 1
    assert len({p.SerializeToString(deterministic=True) for p in payments}) == 1
    assert len(payments) + in_use == 200
    assert payments, "at least the first request succeeds"


def test_resumable_failure_then_retry_executes_once(server: ServerHarness) -> None:
    server.sandbox.set_down(True)
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Charge(charge("resume-1"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(caught.value) == "PSP_UNAVAILABLE"
    assert has_retry_info(caught.value)
    assert server.sandbox.executions() == 0
    server.sandbox.set_down(False)
    payment = server.stub.Charge(charge("resume-1"), timeout=10).payment
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    assert server.sandbox.executions() == 1
    again = server.stub.Charge(charge("resume-1"), timeout=10).payment
    assert again == payment


def test_lost_answer_is_processing_never_failed_and_resumes(server: ServerHarness) -> None:
    server.sandbox.fail_next(10, FaultKind.LOSE_ANSWER)  # more than the retry policy's attempts
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Charge(charge("lost-1"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    listed = server.stub.ListPayments(svc.ListPaymentsRequest(), timeout=10).payments
    assert [p.status for p in listed] == [res.PAYMENT_STATUS_PROCESSING]
    server.sandbox.clear_faults()
    payment = server.stub.Charge(charge("lost-1"), timeout=10).payment
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    assert server.sandbox.executions() == 1


def test_decline_is_a_successful_rpc_with_a_failed_payment(server: ServerHarness) -> None:
    declined = server.stub.Charge(charge("decl-1", method="pm_card_visa_chargeDeclined"), timeout=10).payment
    assert declined.status == res.PAYMENT_STATUS_FAILED
    assert declined.failure.code == "card_declined"
    assert declined.failure.decline_code == "generic_decline"
    funds = server.stub.Charge(charge("decl-2", method="pm_card_chargeDeclinedInsufficientFunds"), timeout=10)
    assert funds.payment.failure.decline_code == "insufficient_funds"
    action = server.stub.Charge(charge("decl-3", method="pm_card_authenticationRequired"), timeout=10)
    assert action.payment.status == res.PAYMENT_STATUS_REQUIRES_ACTION


def test_concurrent_partial_refunds_never_exceed_captured(server: ServerHarness) -> None:
    payment = server.stub.Charge(charge("refund-storm", amount=10_000), timeout=10).payment

    def one(i: int) -> int:
        request = svc.RefundRequest(
            idempotency_key=f"r-{i}",
            payment_id=payment.id,
            amount=res.Money(amount_minor=300, currency="EUR"),
        )
        try:
            server.stub.Refund(request, timeout=20)
            return 300
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_reason(error) == "REFUND_EXCEEDS_REMAINING"
            return 0

    with ThreadPoolExecutor(max_workers=50) as pool:
        refunded = sum(pool.map(one, range(50)))
    assert refunded == 9_900  # 33 refunds of 3.00 fit in 100.00
    after = server.stub.GetPayment(svc.GetPaymentRequest(id=payment.id), timeout=10).payment
    assert after.amount_refunded.amount_minor == refunded <= after.amount.amount_minor


def test_refunds_up_to_the_remainder_then_refused_without_psp_call(server: ServerHarness) -> None:
    payment = server.stub.Charge(charge("partial", amount=1000), timeout=10).payment
    first = server.stub.Refund(
        svc.RefundRequest(
            idempotency_key="p1", payment_id=payment.id, amount=res.Money(amount_minor=400, currency="EUR")
        ),
        timeout=10,
    )
    assert first.refund.status == res.REFUND_STATUS_SUCCEEDED
    rest = server.stub.Refund(svc.RefundRequest(idempotency_key="p2", payment_id=payment.id), timeout=10)
    assert rest.refund.amount.amount_minor == 600
    calls = server.sandbox.total_calls()
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Refund(
            svc.RefundRequest(
                idempotency_key="p3", payment_id=payment.id, amount=res.Money(amount_minor=1, currency="EUR")
            ),
            timeout=10,
        )
    assert error_reason(caught.value) == "REFUND_EXCEEDS_REMAINING"
    assert server.sandbox.total_calls() == calls
    # The stored business error is replayed for the same key.
    with pytest.raises(grpc.RpcError) as again:
        server.stub.Refund(
            svc.RefundRequest(
                idempotency_key="p3", payment_id=payment.id, amount=res.Money(amount_minor=1, currency="EUR")
            ),
            timeout=10,
        )
    assert error_reason(again.value) == "REFUND_EXCEEDS_REMAINING"
    assert isinstance(again.value, grpc.Call)
    assert dict(again.value.initial_metadata()).get("idempotent-replayed") == "true"


def test_refund_of_unpaid_payment_is_refused(server: ServerHarness) -> None:
    declined = server.stub.Charge(charge("unpaid", method="pm_card_visa_chargeDeclined"), timeout=10).payment
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Refund(svc.RefundRequest(idempotency_key="u1", payment_id=declined.id), timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "PAYMENT_NOT_REFUNDABLE"


def test_replay_after_retention_answers_with_the_current_state(server: ServerHarness) -> None:
    payment = server.stub.Charge(charge("retained", amount=2000), timeout=10).payment
    server.stub.Refund(svc.RefundRequest(idempotency_key="retained-r", payment_id=payment.id), timeout=10)

    async def prune() -> None:
        async with server.service.db.connection() as conn:
            await conn.execute("UPDATE idempotency_keys SET reply_body = NULL WHERE idempotency_key = 'retained'")

    server.run(prune())
    replay, call = server.stub.Charge.with_call(charge("retained", amount=2000), timeout=10)
    assert dict(call.initial_metadata()).get("idempotent-replayed") == "true"
    assert replay.payment.id == payment.id
    assert replay.payment.amount_refunded.amount_minor == 2000, "the current state, not the first answer"
    assert server.sandbox.executions() == 2  # the charge and the refund, nothing re-executed


def test_a_stored_error_replays_its_code_and_reason_after_the_retention_period(server: ServerHarness) -> None:
    """Retention pruning drops the bodies of successful replies (they can be rebuilt from the resource);
    a stored business error has no resource to rebuild from, so it is kept and replays as it was."""
    payment = server.stub.Charge(charge("small", amount=100), timeout=10).payment
    too_much = svc.RefundRequest(
        idempotency_key="too-much", payment_id=payment.id, amount=res.Money(amount_minor=500, currency="EUR")
    )
    with pytest.raises(grpc.RpcError) as first:
        server.stub.Refund(too_much, timeout=10)
    assert error_reason(first.value) == "REFUND_EXCEEDS_REMAINING"

    async def prune_everything() -> int:
        async with server.service.db.connection() as conn:
            await conn.execute("UPDATE idempotency_keys SET reply_stored_at = now() - interval '400 days'")
        return await PostgresWorkerStore(server.service.db).prune_replies(older_than_seconds=30 * 86400, limit=100)

    assert server.run(prune_everything()) == 1  # the charge's reply; the error is kept
    with pytest.raises(grpc.RpcError) as again:
        server.stub.Refund(too_much, timeout=10)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(again.value) == "REFUND_EXCEEDS_REMAINING"
    assert isinstance(again.value, grpc.Call)
    assert dict(again.value.initial_metadata()).get("idempotent-replayed") == "true"


def test_a_key_replays_the_final_state_once_the_psp_gave_it(server: ServerHarness) -> None:
    """A stored reply that showed an unfinished state (PROCESSING) is not replayed once the resource
    has moved on: the key answers its true outcome."""
    server.sandbox.fail_next(3, FaultKind.LOSE_ANSWER)
    with pytest.raises(grpc.RpcError):
        server.stub.Charge(charge("moves-on"), timeout=10)
    processing = server.stub.ListPayments(svc.ListPaymentsRequest(), timeout=5).payments[0]
    assert processing.status == res.PAYMENT_STATUS_PROCESSING

    async def finish_as_processing_then_succeed() -> None:
        # The key finished while the PSP had not (as after a poll-driven charge), then the PSP's answer came.
        async with server.service.db.connection() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET recovery_point = 'finished', reply_code = 0, reply_body = '\\x00',"
                " reply_final = false, reply_stored_at = now(), locked_until = NULL, lock_token = NULL"
                " WHERE idempotency_key = 'moves-on'"
            )
            await conn.execute(
                "UPDATE payments SET status = 'SUCCEEDED', amount_captured = amount_minor, last_actor = 'test',"
                " last_reason = 'psp:succeeded' WHERE idempotency_key = 'moves-on'"
            )

    server.run(finish_as_processing_then_succeed())
    replay, call = server.stub.Charge.with_call(charge("moves-on"), timeout=10)
    assert dict(call.initial_metadata()).get("idempotent-replayed") == "true"
    assert replay.payment.id == processing.id
    assert replay.payment.status == res.PAYMENT_STATUS_SUCCEEDED
