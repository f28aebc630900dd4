"""What the PSP is told for a stored resource: orders are rebuilt from stored data alone, so a
client retry, a resume on another server and the recovery worker all send the very same request."""

from __future__ import annotations

from server.app.psp import CancelOrder, CaptureOrder, ChargeOrder, PayoutOrder, RefundOrder
from server.domain.idempotency import Operation, psp_idempotency_key
from server.domain.ids import IdKind, format_id
from server.domain.model import CaptureMethod, Payment, PaymentAction, Payout, Refund
from server.domain.money import Money


def charge_order(payment: Payment, key: str) -> ChargeOrder:
    return ChargeOrder(
        payment_id=format_id(IdKind.PAYMENT, payment.id), client_id=payment.client_id, idempotency_key=key,
        psp_key=psp_idempotency_key(payment.client_id, key, Operation.CHARGE), amount=payment.amount,
        payment_method=payment.payment_method, customer_id=payment.customer_id,
        description=payment.description, metadata=payment.metadata,
        capture_manually=payment.capture_method is CaptureMethod.MANUAL, return_url=payment.return_url,
    )  # fmt: skip


def capture_order(payment: Payment, action: PaymentAction) -> CaptureOrder:
    return CaptureOrder(
        payment_id=format_id(IdKind.PAYMENT, payment.id), client_id=payment.client_id, idempotency_key=action.key,
        psp_key=psp_idempotency_key(payment.client_id, action.key, Operation.CAPTURE),
        payment_psp_reference=payment.psp_reference or "",
        amount=Money(action.amount_minor, payment.amount.currency), final=action.final,
    )  # fmt: skip


def cancel_order(payment: Payment, action: PaymentAction) -> CancelOrder:
    return CancelOrder(
        payment_id=format_id(IdKind.PAYMENT, payment.id), client_id=payment.client_id, idempotency_key=action.key,
        psp_key=psp_idempotency_key(payment.client_id, action.key, Operation.CANCEL),
        payment_psp_reference=payment.psp_reference or "", reason=action.reason,
    )  # fmt: skip


def refund_order(refund: Refund, payment_psp_reference: str | None, key: str) -> RefundOrder:
    return RefundOrder(
        refund_id=format_id(IdKind.REFUND, refund.id), payment_id=format_id(IdKind.PAYMENT, refund.payment_id),
        client_id=refund.client_id, idempotency_key=key,
        psp_key=psp_idempotency_key(refund.client_id, key, Operation.REFUND), amount=refund.amount,
        payment_psp_reference=payment_psp_reference or "", reason=refund.reason,
    )  # fmt: skip


def payout_order(payout: Payout, key: str) -> PayoutOrder:
    return PayoutOrder(
        payout_id=format_id(IdKind.PAYOUT, payout.id), client_id=payout.client_id, idempotency_key=key,
        psp_key=psp_idempotency_key(payout.client_id, key, Operation.PAYOUT), amount=payout.amount,
        destination=payout.destination, instant=payout.instant, reference=payout.reference,
        psp_data=payout.psp_data,
    )  # fmt: skip
