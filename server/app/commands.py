"""Validated requests, as the use cases receive them from the edge."""

from __future__ import annotations

from dataclasses import dataclass

from server.domain.model import CaptureMethod, PayoutDestination
from server.domain.money import Money


@dataclass(frozen=True, slots=True)
class ChargeCommand:
    idempotency_key: str
    fingerprint: bytes
    amount: Money
    payment_method: str
    customer_id: str
    description: str
    metadata: dict[str, str]
    capture_method: CaptureMethod = CaptureMethod.AUTOMATIC
    return_url: str = ""


@dataclass(frozen=True, slots=True)
class CaptureCommand:
    idempotency_key: str
    fingerprint: bytes
    payment_id_text: str
    amount: Money | None
    final: bool


@dataclass(frozen=True, slots=True)
class CancelCommand:
    idempotency_key: str
    fingerprint: bytes
    payment_id_text: str
    reason: str


@dataclass(frozen=True, slots=True)
class RefundCommand:
    idempotency_key: str
    fingerprint: bytes
    payment_id_text: str
    amount: Money | None
    reason: str


@dataclass(frozen=True, slots=True)
class PayoutCommand:
    idempotency_key: str
    fingerprint: bytes
    amount: Money
    destination: PayoutDestination
    instant: bool
    reference: str
    # Verification of Payee: a CLOSE_MATCH or NOT_POSSIBLE does not stop the payout (recorded on it).
    accept_payee_verification_risk: bool = False
