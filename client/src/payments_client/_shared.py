"""What the sync and the async client share: request building, idempotency keys, outgoing metadata and
the result of a mutation. Kept free of I/O so both clients are thin loops around the same decisions."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from opentelemetry import propagate, trace

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from payments_client.credentials import Credentials

R = TypeVar("R")

REPLAYED_HEADER = "idempotent-replayed"
DEFAULT_TARGET = "127.0.0.1:50051"  # `make serve`
DEFAULT_TIMEOUT = 30.0  # seconds for one logical call, every retry included


def resolve_target(target: str | None) -> str:
    """The explicit target, else $PAYMENTS_TARGET (as the CLI reads it), else the local default."""
    return target or os.environ.get("PAYMENTS_TARGET") or DEFAULT_TARGET


TRACER = trace.get_tracer("payments_client")


@dataclass(frozen=True)
class Result(Generic[R]):
    """A mutation's resource, with the idempotency key that produced it (store it: the same key replays the
    same outcome, and is the only safe way to retry), whether the server replayed a stored outcome, and how
    many attempts the call took."""

    resource: R
    idempotency_key: str
    replayed: bool
    attempts: int


def new_idempotency_key() -> str:
    """A fresh key for one logical call: random, so two intended operations never share one by accident."""
    return str(uuid.uuid4())


def outgoing_metadata(credentials: Credentials) -> tuple[tuple[str, str], ...]:
    """The token, and the W3C trace context of the caller's current span (so the server's trace continues
    the caller's); computed per attempt, inside the client span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return (*credentials.call_metadata(), *carrier.items())


def was_replayed(initial_metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    return any(key == REPLAYED_HEADER and value == "true" for key, value in initial_metadata or ())


# ----------------------------------------------------------------------------------------- request builders


def charge_request(
    key: str, amount: res.Money, payment_method: str, *, customer_id: str, description: str,
    metadata: Mapping[str, str] | None, capture_method: res.CaptureMethod.ValueType, return_url: str,
) -> svc.ChargeRequest:  # fmt: skip
    return svc.ChargeRequest(
        idempotency_key=key, amount=amount, payment_method=payment_method, customer_id=customer_id,
        description=description, metadata=dict(metadata or {}), capture_method=capture_method, return_url=return_url,
    )  # fmt: skip


def refund_request(key: str, payment_id: str, amount: res.Money | None, reason: str) -> svc.RefundRequest:
    request = svc.RefundRequest(idempotency_key=key, payment_id=payment_id, reason=reason)
    if amount is not None:
        request.amount.CopyFrom(amount)
    return request


def payout_request(
    key: str, amount: res.Money, *, sepa_account: res.SepaAccount | None, stripe_account_id: str | None,
    instant: bool, reference: str, accept_payee_verification_risk: bool = False,
) -> svc.PayoutRequest:  # fmt: skip
    if (sepa_account is None) == (stripe_account_id is None):
        raise ValueError("a payout needs exactly one destination: sepa_account or stripe_account_id")
    request = svc.PayoutRequest(
        idempotency_key=key, amount=amount, instant=instant, reference=reference,
        accept_payee_verification_risk=accept_payee_verification_risk,
    )  # fmt: skip
    if sepa_account is not None:
        request.sepa_account.CopyFrom(sepa_account)
    else:
        request.stripe_account_id = stripe_account_id or ""
    return request


def capture_request(
    key: str, payment_id: str, amount: res.Money | None, final_capture: bool | None
) -> svc.CapturePaymentRequest:
    request = svc.CapturePaymentRequest(idempotency_key=key, payment_id=payment_id)
    if amount is not None:
        request.amount.CopyFrom(amount)
    if final_capture is not None:
        request.final_capture = final_capture
    return request


def cancel_request(key: str, payment_id: str, reason: str) -> svc.CancelPaymentRequest:
    return svc.CancelPaymentRequest(idempotency_key=key, payment_id=payment_id, reason=reason)


def list_payments_request(
    page_size: int, page_token: str, status: res.PaymentStatus.ValueType, customer_id: str
) -> svc.ListPaymentsRequest:
    return svc.ListPaymentsRequest(page_size=page_size, page_token=page_token, status=status, customer_id=customer_id)


def list_refunds_request(
    page_size: int, page_token: str, status: res.RefundStatus.ValueType, payment_id: str
) -> svc.ListRefundsRequest:
    return svc.ListRefundsRequest(page_size=page_size, page_token=page_token, status=status, payment_id=payment_id)


def list_payouts_request(
    page_size: int, page_token: str, status: res.PayoutStatus.ValueType,
    destination_type: svc.PayoutDestinationType.ValueType,
) -> svc.ListPayoutsRequest:  # fmt: skip
    return svc.ListPayoutsRequest(
        page_size=page_size, page_token=page_token, status=status, destination_type=destination_type
    )


def list_events_request(
    page_size: int, page_token: str, types: Sequence[str], resource_id: str
) -> svc.ListEventsRequest:
    return svc.ListEventsRequest(page_size=page_size, page_token=page_token, types=list(types), resource_id=resource_id)
