"""The resources this service keeps: payments, refunds and payouts, as immutable values."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from server.domain.money import Money
from server.domain.sepa_scheme import mask_iban
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an operation failed: our code, a safe message, and the PSP's decline or ISO reason code."""

    code: str
    message: str = ""
    decline_code: str = ""


class CaptureMethod(StrEnum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class PaymentAction:
    """A capture or cancel of a payment, as claimed: its key and its parameters."""

    operation: str  # "capture" | "cancel" (server.domain.idempotency.Operation)
    key: str
    amount_minor: int = 0  # capture: the amount to take
    final: bool = True  # capture: release the rest of the authorization
    reason: str = ""  # cancel: the caller's reason


@dataclass(frozen=True, slots=True)
class RedirectToUrl:
    """Send the customer's browser to `url` (e.g. a 3-D Secure challenge); the PSP returns it to
    `return_url`."""

    url: str
    return_url: str


@dataclass(frozen=True, slots=True)
class UseStripeSdk:
    """Finish in the customer's browser with Stripe.js; the client secret is for that browser only."""

    client_secret: str = field(repr=False)


NextAction = RedirectToUrl | UseStripeSdk


@dataclass(frozen=True, slots=True)
class Payment:
    id: uuid.UUID
    client_id: str
    status: PaymentStatus
    amount: Money
    amount_captured: int
    amount_refunded: int
    amount_reserved: int
    payment_method: str
    customer_id: str
    description: str
    metadata: dict[str, str]
    psp: str
    psp_reference: str | None
    failure: Failure | None
    created_at: datetime
    updated_at: datetime
    capture_method: CaptureMethod = CaptureMethod.AUTOMATIC
    amount_capturable: int = 0  # REQUIRES_CAPTURE: what a capture can still take
    capturable_until: datetime | None = None  # the PSP releases the authorization then
    return_url: str = ""  # where the PSP sends the customer back after a redirect (3-D Secure)
    cancellation_reason: str = ""
    # The capture or cancel under way (one at a time, enforced by the payment's row): what every attempt
    # of it sends, and whose key finishes it.
    action: PaymentAction | None = None
    # What the customer must do (REQUIRES_ACTION), as the PSP said in this very answer. Never stored: it
    # can hold a client secret, so a later answer asks the PSP again.
    next_action: NextAction | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Refund:
    id: uuid.UUID
    client_id: str
    payment_id: uuid.UUID
    status: RefundStatus
    amount: Money
    reason: str
    psp: str
    psp_reference: str | None
    failure: Failure | None
    created_at: datetime
    updated_at: datetime
    # The PSP's id of the charge this refunds, recorded at the claim (None on refunds from before that).
    payment_psp_reference: str | None = None


@dataclass(frozen=True, slots=True)
class SepaDestination:
    """A creditor account for a SEPA credit transfer (IBAN validated at the edge)."""

    iban: str
    bic: str
    name: str
    country: str
    town: str
    street: str = ""
    postcode: str = ""

    @property
    def masked_iban(self) -> str:
        """Country code and last four characters: what may be shown anywhere outside the database."""
        return mask_iban(self.iban)


@dataclass(frozen=True, slots=True)
class StripeAccountDestination:
    account_id: str


PayoutDestination = SepaDestination | StripeAccountDestination


class DestinationType(StrEnum):
    """Which kind of destination a payout has; the value is the `type` its stored destination carries,
    so the store can filter on it without decoding the account."""

    SEPA_ACCOUNT = "sepa"
    STRIPE_ACCOUNT = "stripe_account"


class PayeeMatch(StrEnum):
    """The four answers of the EPC VOP scheme (wire codes MTCH, CMTC, NMTC, NOAP)."""

    MATCH = "MATCH"
    CLOSE_MATCH = "CLOSE_MATCH"
    NO_MATCH = "NO_MATCH"
    NOT_POSSIBLE = "NOT_POSSIBLE"


@dataclass(frozen=True, slots=True)
class PayeeVerification:
    """A SEPA payout's payee check as stored with it.

    `result` is None until the bank has answered; nothing is sent to the bank before it has.
    `suggested_name` is the holder's name the bank returned with a CLOSE_MATCH (personal data: returned
    to the caller, never logged). `risk_accepted` is the request's `accept_payee_verification_risk`.
    """

    result: PayeeMatch | None = None
    suggested_name: str = ""
    risk_accepted: bool = False

    @property
    def answered(self) -> bool:
        return self.result is not None


@dataclass(frozen=True, slots=True)
class Payout:
    id: uuid.UUID
    client_id: str
    status: PayoutStatus
    amount: Money
    destination: PayoutDestination
    instant: bool
    reference: str
    psp: str
    psp_reference: str | None
    failure: Failure | None
    created_at: datetime
    updated_at: datetime
    psp_data: dict[str, str] = field(default_factory=dict)
    # Verification of Payee (server/domain/payee_verification.py): None where it does not apply (a Stripe
    # account) or for a payout created before it existed; a SEPA payout is created with it unanswered.
    payee_verification: PayeeVerification | None = None
