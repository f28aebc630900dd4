"""The synchronous client: `PaymentsClient(target, credentials=...)` over a grpc.Channel.

Every method is one logical call: a mutation gets an idempotency key (generated unless given), and every
attempt of it sends that key, so a retry after a lost answer can never charge twice. Attempts are retried
on UNAVAILABLE and ABORTED (and when an attempt's own timeout cut it) only, as payments_client.retry
decides, within one deadline for the whole call; a failure is raised as the typed exception of its
ErrorInfo reason (payments_client.errors).

A new RPC is one small method: build its request, then `self._unary(self._stub.TheRpc, request, ...)` (for
a mutation with its key). payments_client.aio mirrors this module method for method.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from opentelemetry import trace

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import payment_service_pb2_grpc as svc_grpc
from payments.v1 import resources_pb2 as res
from payments_client import _shared
from payments_client._shared import Result
from payments_client.credentials import Credentials, sync_channel
from payments_client.errors import error_from_rpc
from payments_client.retry import Deadline, RetryPolicy

_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)


class PaymentsClient:
    """A client of payments.v1.PaymentService. Use it as a context manager, or call `close()`.

    `target` is host:port (default: $PAYMENTS_TARGET, else 127.0.0.1:50051); `credentials` the TLS,
    mutual TLS and token settings (default: plaintext, for loopback). `timeout` bounds each logical call,
    all its retries included (None: no deadline); a method's own `timeout=` replaces it for that call.
    `retry` says how often and how long to retry.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        credentials: Credentials | None = None,
        timeout: float | None = _shared.DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        options: Sequence[tuple[str, str | int]] = (),
    ) -> None:
        self.target = _shared.resolve_target(target)
        self._credentials = credentials or Credentials()
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._channel = sync_channel(self.target, self._credentials, list(options))
        self._stub = svc_grpc.PaymentServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PaymentsClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- mutations

    def charge(
        self,
        amount: res.Money,
        payment_method: str,
        *,
        customer_id: str = "",
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        capture_method: res.CaptureMethod.ValueType = res.CAPTURE_METHOD_UNSPECIFIED,
        return_url: str = "",
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Result[res.Payment]:
        """Charges `payment_method`. A decline is not an exception: the payment comes back FAILED."""
        key = idempotency_key or _shared.new_idempotency_key()
        request = _shared.charge_request(
            key, amount, payment_method, customer_id=customer_id, description=description, metadata=metadata,
            capture_method=capture_method, return_url=return_url,
        )  # fmt: skip
        response, replayed, attempts = self._unary(self._stub.Charge, request, "Charge", key, timeout)
        return Result(response.payment, key, replayed, attempts)

    def refund(
        self,
        payment_id: str,
        amount: res.Money | None = None,
        *,
        reason: str = "",
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Result[res.Refund]:
        """Refunds `amount` of a payment (None: all that remains)."""
        key = idempotency_key or _shared.new_idempotency_key()
        request = _shared.refund_request(key, payment_id, amount, reason)
        response, replayed, attempts = self._unary(self._stub.Refund, request, "Refund", key, timeout)
        return Result(response.refund, key, replayed, attempts)

    def payout(
        self,
        amount: res.Money,
        *,
        sepa_account: res.SepaAccount | None = None,
        stripe_account_id: str | None = None,
        instant: bool = False,
        reference: str = "",
        accept_payee_verification_risk: bool = False,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Result[res.Payout]:
        """Pays a seller: exactly one of `sepa_account` (SEPA credit transfer) or `stripe_account_id`.
        A SEPA payout is sent only after the payee's bank confirms the name (Verification of Payee);
        `accept_payee_verification_risk` pays on a close match or when the check is not possible."""
        key = idempotency_key or _shared.new_idempotency_key()
        request = _shared.payout_request(
            key, amount, sepa_account=sepa_account, stripe_account_id=stripe_account_id, instant=instant,
            reference=reference, accept_payee_verification_risk=accept_payee_verification_risk,
        )  # fmt: skip
        response, replayed, attempts = self._unary(self._stub.Payout, request, "Payout", key, timeout)
        return Result(response.payout, key, replayed, attempts)

    def capture_payment(
        self,
        payment_id: str,
        amount: res.Money | None = None,
        *,
        final_capture: bool | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Result[res.Payment]:
        """Captures an authorized (REQUIRES_CAPTURE) payment: `amount` of it (None: all that is capturable)."""
        key = idempotency_key or _shared.new_idempotency_key()
        request = _shared.capture_request(key, payment_id, amount, final_capture)
        response, replayed, attempts = self._unary(self._stub.CapturePayment, request, "CapturePayment", key, timeout)
        return Result(response.payment, key, replayed, attempts)

    def cancel_payment(
        self,
        payment_id: str,
        *,
        reason: str = "",
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Result[res.Payment]:
        """Voids an authorized payment, or one waiting for the customer."""
        key = idempotency_key or _shared.new_idempotency_key()
        request = _shared.cancel_request(key, payment_id, reason)
        response, replayed, attempts = self._unary(self._stub.CancelPayment, request, "CancelPayment", key, timeout)
        return Result(response.payment, key, replayed, attempts)

    # ------------------------------------------------------------------------------------------- queries

    def get_payment(self, payment_id: str, *, timeout: float | None = None) -> res.Payment:
        request = svc.GetPaymentRequest(id=payment_id)
        return self._unary(self._stub.GetPayment, request, "GetPayment", None, timeout)[0].payment

    def get_refund(self, refund_id: str, *, timeout: float | None = None) -> res.Refund:
        request = svc.GetRefundRequest(id=refund_id)
        return self._unary(self._stub.GetRefund, request, "GetRefund", None, timeout)[0].refund

    def get_payout(self, payout_id: str, *, timeout: float | None = None) -> res.Payout:
        request = svc.GetPayoutRequest(id=payout_id)
        return self._unary(self._stub.GetPayout, request, "GetPayout", None, timeout)[0].payout

    def list_payments(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        status: res.PaymentStatus.ValueType = res.PAYMENT_STATUS_UNSPECIFIED,
        customer_id: str = "",
        timeout: float | None = None,
    ) -> svc.ListPaymentsResponse:
        """One page, newest first; pass its `next_page_token` (with the same filters) for the next."""
        request = _shared.list_payments_request(page_size, page_token, status, customer_id)
        return self._unary(self._stub.ListPayments, request, "ListPayments", None, timeout)[0]

    def list_refunds(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        status: res.RefundStatus.ValueType = res.REFUND_STATUS_UNSPECIFIED,
        payment_id: str = "",
        timeout: float | None = None,
    ) -> svc.ListRefundsResponse:
        """One page of refunds, newest first (of one payment with `payment_id`)."""
        request = _shared.list_refunds_request(page_size, page_token, status, payment_id)
        return self._unary(self._stub.ListRefunds, request, "ListRefunds", None, timeout)[0]

    def list_payouts(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        status: res.PayoutStatus.ValueType = res.PAYOUT_STATUS_UNSPECIFIED,
        destination_type: svc.PayoutDestinationType.ValueType = svc.PAYOUT_DESTINATION_TYPE_UNSPECIFIED,
        timeout: float | None = None,
    ) -> svc.ListPayoutsResponse:
        """One page of payouts, newest first (to SEPA accounts or Stripe accounts only, with
        `destination_type`)."""
        request = _shared.list_payouts_request(page_size, page_token, status, destination_type)
        return self._unary(self._stub.ListPayouts, request, "ListPayouts", None, timeout)[0]

    def list_events(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        types: Sequence[str] = (),
        resource_id: str = "",
        timeout: float | None = None,
    ) -> svc.ListEventsResponse:
        """One page of the caller's events, oldest first."""
        request = _shared.list_events_request(page_size, page_token, types, resource_id)
        return self._unary(self._stub.ListEvents, request, "ListEvents", None, timeout)[0]

    def watch_events(self, *, after_event_id: str = "", types: Sequence[str] = ()) -> Generator[res.Event, None, None]:
        """The caller's events as they happen, without end. A dropped stream is reopened after the last event
        yielded (UNAVAILABLE/ABORTED, with backoff; the attempts count restarts with each message). Start with
        `after_event_id` = the last id you handled ("0": the oldest retained) so that nothing is missed:
        with "" the feed starts from now, and events before the first one yielded are not replayed."""
        last, failures = after_event_id, 0
        while True:
            request = svc.WatchEventsRequest(after_event_id=last, types=list(types))
            stream = self._stub.WatchEvents(request, metadata=_shared.outgoing_metadata(self._credentials))
            try:
                for message in stream:
                    failures = 0
                    if message.WhichOneof("kind") == "event":
                        last = message.event.id
                        yield message.event
                return
            except grpc.RpcError as exc:
                failures += 1
                error = error_from_rpc(exc, attempts=failures)
                delay = self._retry.next_delay(attempts=failures, code=error.code, retry_delay=error.retry_delay,
                                               remaining=None)  # fmt: skip
                if delay is None:
                    raise error from exc
                time.sleep(delay)
            finally:
                stream.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped

    # ----------------------------------------------------------------------------------------- machinery

    def _unary(
        self,
        rpc: grpc.UnaryUnaryMultiCallable[_Req, _Resp],
        request: _Req,
        method: str,
        key: str | None,
        timeout: float | None,
    ) -> tuple[_Resp, bool, int]:
        """Calls `rpc` until it answers, a retry cannot help, or the deadline passes. Returns the response,
        whether it was a replay, and the attempts made; raises the typed PaymentsError otherwise."""
        deadline = Deadline(timeout or self._timeout)
        with _shared.TRACER.start_as_current_span(f"payments.v1.PaymentService/{method}",
                                                  kind=trace.SpanKind.CLIENT) as span:  # fmt: skip
            attempts = 0
            while True:
                attempts += 1
                span.set_attribute("payments.client.attempts", attempts)
                try:
                    response, call = rpc.with_call(
                        request,
                        timeout=self._retry.attempt_deadline(deadline.remaining()),
                        metadata=_shared.outgoing_metadata(self._credentials),
                    )
                except grpc.RpcError as exc:
                    error = error_from_rpc(exc, idempotency_key=key, attempts=attempts)
                    delay = self._retry.next_delay(attempts=attempts, code=error.code, retry_delay=error.retry_delay,
                                                   remaining=deadline.remaining())  # fmt: skip
                    if delay is None:
                        raise error from exc
                    time.sleep(delay)
                    continue
                replayed = _shared.was_replayed(call.initial_metadata())
                span.set_attribute("idempotency.replayed", replayed)
                return response, replayed, attempts
