"""Get*, ListPayments pagination, client scoping, health and reflection over real gRPC."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.servicer import SingleClient
from tests.support.harness import ServerHarness
from tests.support.requests import charge, sepa_payout


def test_get_returns_what_charge_returned(server: ServerHarness) -> None:
    payment = server.stub.Charge(charge("g1", customer_id="cus_1", description="books"), timeout=10).payment
    fetched = server.stub.GetPayment(svc.GetPaymentRequest(id=payment.id), timeout=10).payment
    assert fetched == payment
    assert fetched.customer_id == "cus_1"


def test_refund_and_payout_can_be_fetched(server: ServerHarness) -> None:
    payment = server.stub.Charge(charge("g2", amount=500), timeout=10).payment
    refund = server.stub.Refund(svc.RefundRequest(idempotency_key="g2r", payment_id=payment.id), timeout=10).refund
    assert server.stub.GetRefund(svc.GetRefundRequest(id=refund.id), timeout=10).refund == refund
    payout = server.stub.Payout(sepa_payout("g2p"), timeout=10).payout
    fetched = server.stub.GetPayout(svc.GetPayoutRequest(id=payout.id), timeout=10).payout
    assert fetched == payout
    assert fetched.sepa_account.iban.endswith("3000")
    assert "0532013000" not in fetched.sepa_account.iban, "responses show the IBAN masked"
    after = server.stub.GetPayment(svc.GetPaymentRequest(id=payment.id), timeout=10).payment
    assert after.amount_refunded.amount_minor == 500


def test_list_pages_through_everything_once_newest_first(server: ServerHarness) -> None:
    ids = [server.stub.Charge(charge(f"l{i}", customer_id="c-a" if i % 2 else "c-b"), timeout=10).payment.id
           for i in range(7)]  # fmt: skip
    seen: list[str] = []
    token = ""
    while True:
        page = server.stub.ListPayments(svc.ListPaymentsRequest(page_size=3, page_token=token), timeout=10)
        assert len(page.payments) <= 3
        seen += [p.id for p in page.payments]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))
    only_a = server.stub.ListPayments(svc.ListPaymentsRequest(customer_id="c-a"), timeout=10).payments
    assert {p.customer_id for p in only_a} == {"c-a"}
    assert len(only_a) == 3
    failed = server.stub.ListPayments(svc.ListPaymentsRequest(status=res.PAYMENT_STATUS_FAILED), timeout=10).payments
    assert failed == []


def test_page_token_from_other_filters_is_refused(server: ServerHarness) -> None:
    for i in range(3):
        server.stub.Charge(charge(f"t{i}"), timeout=10)
    page = server.stub.ListPayments(svc.ListPaymentsRequest(page_size=1), timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.ListPayments(
            svc.ListPaymentsRequest(page_size=1, page_token=page.next_page_token, customer_id="x"), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_other_clients_resources_are_not_found(database_url: str) -> None:
    alice = ServerHarness(database_url, identifier=SingleClient("alice"))
    bob = ServerHarness(database_url, identifier=SingleClient("bob"))
    try:
        mine = alice.stub.Charge(charge("shared-key"), timeout=10).payment
        theirs = bob.stub.Charge(charge("shared-key"), timeout=10).payment
        assert mine.id != theirs.id, "the same key from two clients makes two payments"
        with pytest.raises(grpc.RpcError) as caught:
            bob.stub.GetPayment(svc.GetPaymentRequest(id=mine.id), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as refund:
            bob.stub.Refund(svc.RefundRequest(idempotency_key="r", payment_id=mine.id), timeout=10)
        assert refund.value.code() == grpc.StatusCode.NOT_FOUND
        listed = bob.stub.ListPayments(svc.ListPaymentsRequest(), timeout=10).payments
        assert [p.id for p in listed] == [theirs.id]
    finally:
        alice.close()
        bob.close()


def test_health_serving_and_reflection_lists_the_service(server: ServerHarness) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "payments.v1.PaymentService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert "payments.v1.PaymentService" in names
    assert "grpc.health.v1.Health" in names
