"""Domain resources to payments.v1 messages, and the reply encoder the use cases store bytes with.

Responses are serialized deterministically once; those exact bytes are sent and stored, so a replay
is byte-identical to the first answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api import proto_json
from server.api.errors import error_status
from server.app.events import StoredEvent
from server.app.store import StoredReply
from server.domain.errors import ServiceError
from server.domain.ids import IdKind, format_id
from server.domain.model import (
    CaptureMethod,
    Failure,
    PayeeVerification,
    Payment,
    Payout,
    RedirectToUrl,
    Refund,
    SepaDestination,
    UseStripeSdk,
)
from server.domain.money import Money


def money_pb(money: Money) -> res.Money:
    return res.Money(amount_minor=money.amount_minor, currency=money.currency)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def timestamp_pb(at: datetime) -> timestamp_pb2.Timestamp:
    """Exact integer arithmetic on an aware datetime (Timestamp.FromDatetime does the same, slower)."""
    return timestamp_pb2.Timestamp(seconds=(at - _EPOCH) // _SECOND, nanos=at.microsecond * 1000)


def failure_pb(failure: Failure | None) -> res.Failure | None:
    if failure is None:
        return None
    return res.Failure(code=failure.code, message=failure.message, decline_code=failure.decline_code)


def payment_pb(p: Payment) -> res.Payment:
    currency = p.amount.currency
    message = res.Payment(
        id=format_id(IdKind.PAYMENT, p.id), status=res.PaymentStatus.Value(f"PAYMENT_STATUS_{p.status}"),
        amount=money_pb(p.amount), amount_refunded=money_pb(Money(p.amount_refunded, currency)),
        customer_id=p.customer_id, description=p.description, metadata=p.metadata, psp=p.psp,
        psp_reference=p.psp_reference or "", failure=failure_pb(p.failure),
        create_time=timestamp_pb(p.created_at), update_time=timestamp_pb(p.updated_at),
        amount_captured=money_pb(Money(p.amount_captured, currency)),
        amount_capturable=money_pb(Money(p.amount_capturable, currency)),
        cancellation_reason=p.cancellation_reason,
    )  # fmt: skip
    if p.capture_method is CaptureMethod.MANUAL:
        message.capture_method = res.CAPTURE_METHOD_MANUAL
    if p.amount_capturable and p.capturable_until is not None:
        message.capturable_until.CopyFrom(timestamp_pb(p.capturable_until))
    if isinstance(p.next_action, RedirectToUrl):
        message.next_action.redirect_to_url.url = p.next_action.url
        message.next_action.redirect_to_url.return_url = p.next_action.return_url
    elif isinstance(p.next_action, UseStripeSdk):
        message.next_action.use_stripe_sdk.client_secret = p.next_action.client_secret
    return message


def refund_pb(r: Refund) -> res.Refund:
    return res.Refund(
        id=format_id(IdKind.REFUND, r.id), payment_id=format_id(IdKind.PAYMENT, r.payment_id),
        status=res.RefundStatus.Value(f"REFUND_STATUS_{r.status}"), amount=money_pb(r.amount),
        reason=r.reason, psp=r.psp, psp_reference=r.psp_reference or "", failure=failure_pb(r.failure),
        create_time=timestamp_pb(r.created_at), update_time=timestamp_pb(r.updated_at),
    )  # fmt: skip


def payout_pb(p: Payout) -> res.Payout:
    message = res.Payout(
        id=format_id(IdKind.PAYOUT, p.id), status=res.PayoutStatus.Value(f"PAYOUT_STATUS_{p.status}"),
        amount=money_pb(p.amount), instant=p.instant, reference=p.reference, psp=p.psp,
        psp_reference=p.psp_reference or "", failure=failure_pb(p.failure),
        create_time=timestamp_pb(p.created_at), update_time=timestamp_pb(p.updated_at),
    )  # fmt: skip
    dest = p.destination
    if isinstance(dest, SepaDestination):
        message.sepa_account.CopyFrom(res.SepaAccount(
            iban=dest.masked_iban, bic=dest.bic, name=dest.name,
            address=res.PostalAddress(country=dest.country, town=dest.town, street=dest.street,
                                      postcode=dest.postcode),
        ))  # fmt: skip
    else:
        message.stripe_account_id = dest.account_id
    if p.payee_verification is not None:
        message.payee_verification.CopyFrom(payee_verification_pb(p.payee_verification))
    return message


def payee_verification_pb(verification: PayeeVerification) -> res.PayeeVerification:
    """Set on every SEPA payout that has a check, even before the bank's answer (result UNSPECIFIED)."""
    message = res.PayeeVerification(
        suggested_name=verification.suggested_name, risk_accepted=verification.risk_accepted
    )
    if verification.result is not None:
        message.result = res.PayeeVerificationResult.Value(f"PAYEE_VERIFICATION_RESULT_{verification.result}")
    return message


def serialize(message: object) -> bytes:
    data: bytes = message.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
    return data


class ProtoReplyEncoder:
    """Implements server.app.replies.ReplyEncoder with payments.v1 messages."""

    def charge(self, payment: Payment) -> bytes:
        return serialize(svc.ChargeResponse(payment=payment_pb(payment)))

    def refund(self, refund: Refund) -> bytes:
        return serialize(svc.RefundResponse(refund=refund_pb(refund)))

    def payout(self, payout: Payout) -> bytes:
        return serialize(svc.PayoutResponse(payout=payout_pb(payout)))

    def error(self, error: ServiceError) -> StoredReply:
        status = error_status(error)
        return StoredReply(status.code, serialize(status))


def event_pb(event: StoredEvent) -> res.Event:
    """An outbox row as the feed's Event. The payload is the resource in protobuf's JSON form, rendered by
    PostgreSQL in the transition's own transaction (a test keeps it equal to payment_pb and the others)."""
    message = res.Event(id=event.cursor.encode(), type=event.type, create_time=timestamp_pb(event.created_at))
    resource = getattr(message, event.aggregatetype)
    resource.SetInParent()  # the oneof names the resource even if its payload were all defaults
    proto_json.parse(event.payload, resource)
    return message
