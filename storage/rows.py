"""Mapping between table rows and domain resources, in one place for the store and the readers."""

from __future__ import annotations

from typing import Any

from server.domain.model import (
    CaptureMethod,
    DestinationType,
    Failure,
    PayeeMatch,
    PayeeVerification,
    Payment,
    PaymentAction,
    Payout,
    PayoutDestination,
    Refund,
    SepaDestination,
    StripeAccountDestination,
)
from server.domain.money import Money
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus

PAYMENT_COLUMNS = (
    "id, client_id, status, currency, amount_minor, amount_captured, amount_refunded, amount_reserved,"
    " payment_method, customer_id, description, metadata, psp, psp_reference, failure_code,"
    " failure_message, failure_decline_code, created_at, updated_at, capture_method, amount_capturable,"
    " capturable_until, return_url, cancellation_reason, action_operation, action_key, action_amount,"
    " action_final, action_reason"
)
REFUND_COLUMNS = (
    "id, client_id, payment_id, status, currency, amount_minor, reason, psp, psp_reference, failure_code,"
    " failure_message, failure_decline_code, created_at, updated_at, payment_psp_reference"
)
PAYOUT_COLUMNS = (
    "id, client_id, status, currency, amount_minor, destination, instant, reference, psp, psp_reference,"
    " psp_data, failure_code, failure_message, failure_decline_code, created_at, updated_at,"
    " payee_verification, payee_suggested_name, payee_risk_accepted"
)

PAYEE_PENDING = "PENDING"  # payouts.payee_verification before the bank has answered


def failure_of(row: Any) -> Failure | None:
    if row["failure_code"] is None:
        return None
    return Failure(row["failure_code"], row["failure_message"] or "", row["failure_decline_code"] or "")


def failure_columns(failure: Failure | None) -> tuple[str | None, str | None, str | None]:
    if failure is None:
        return None, None, None
    return failure.code, failure.message, failure.decline_code


def payment_of(row: Any) -> Payment:
    return Payment(
        id=row["id"], client_id=row["client_id"], status=PaymentStatus(row["status"]),
        amount=Money(row["amount_minor"], row["currency"]), amount_captured=row["amount_captured"],
        amount_refunded=row["amount_refunded"], amount_reserved=row["amount_reserved"],
        payment_method=row["payment_method"], customer_id=row["customer_id"],
        description=row["description"], metadata=dict(row["metadata"]), psp=row["psp"],
        psp_reference=row["psp_reference"], failure=failure_of(row),
        created_at=row["created_at"], updated_at=row["updated_at"],
        capture_method=CaptureMethod(row["capture_method"]), amount_capturable=row["amount_capturable"],
        capturable_until=row["capturable_until"], return_url=row["return_url"],
        cancellation_reason=row["cancellation_reason"], action=action_of(row),
    )  # fmt: skip


def action_of(row: Any) -> PaymentAction | None:
    if row["action_key"] is None:
        return None
    return PaymentAction(
        operation=row["action_operation"], key=row["action_key"], amount_minor=row["action_amount"] or 0,
        final=row["action_final"] if row["action_final"] is not None else True, reason=row["action_reason"] or "",
    )  # fmt: skip


def refund_of(row: Any) -> Refund:
    return Refund(
        id=row["id"], client_id=row["client_id"], payment_id=row["payment_id"],
        status=RefundStatus(row["status"]), amount=Money(row["amount_minor"], row["currency"]),
        reason=row["reason"], psp=row["psp"], psp_reference=row["psp_reference"],
        failure=failure_of(row), created_at=row["created_at"], updated_at=row["updated_at"],
        payment_psp_reference=row["payment_psp_reference"],
    )  # fmt: skip


def destination_json(destination: PayoutDestination) -> dict[str, str]:
    if isinstance(destination, StripeAccountDestination):
        return {"type": DestinationType.STRIPE_ACCOUNT, "account_id": destination.account_id}
    return {
        "type": DestinationType.SEPA_ACCOUNT, "iban": destination.iban, "bic": destination.bic,
        "name": destination.name, "country": destination.country, "town": destination.town,
        "street": destination.street, "postcode": destination.postcode,
    }  # fmt: skip


def destination_of(data: dict[str, str]) -> PayoutDestination:
    if data["type"] == DestinationType.STRIPE_ACCOUNT:
        return StripeAccountDestination(data["account_id"])
    return SepaDestination(
        iban=data["iban"], bic=data["bic"], name=data["name"], country=data["country"],
        town=data["town"], street=data["street"], postcode=data["postcode"],
    )  # fmt: skip


def payout_of(row: Any) -> Payout:
    return Payout(
        id=row["id"], client_id=row["client_id"], status=PayoutStatus(row["status"]),
        amount=Money(row["amount_minor"], row["currency"]), destination=destination_of(row["destination"]),
        instant=row["instant"], reference=row["reference"], psp=row["psp"],
        psp_reference=row["psp_reference"], failure=failure_of(row), created_at=row["created_at"],
        updated_at=row["updated_at"], psp_data=dict(row["psp_data"]), payee_verification=payee_verification_of(row),
    )  # fmt: skip


def payee_verification_of(row: Any) -> PayeeVerification | None:
    stored = row["payee_verification"]
    if stored is None:
        return None
    return PayeeVerification(
        result=None if stored == PAYEE_PENDING else PayeeMatch(stored),
        suggested_name=row["payee_suggested_name"] or "", risk_accepted=row["payee_risk_accepted"],
    )  # fmt: skip


def payee_verification_columns(verification: PayeeVerification | None) -> tuple[str | None, str | None, bool]:
    """(payee_verification, payee_suggested_name, payee_risk_accepted) as stored."""
    if verification is None:
        return None, None, False
    result = PAYEE_PENDING if verification.result is None else str(verification.result)
    return result, verification.suggested_name or None, verification.risk_accepted
