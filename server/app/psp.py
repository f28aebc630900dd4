"""The one port every payment service provider implements: card PSPs and SEPA banks alike.

An operation is described by what the PSP needs (amount, destination, our ids, the derived PSP
idempotency key); the answer is an outcome. Adapters only translate to and from their wire protocol;
retries live in one place (adapters/retry.py), which wraps a single-attempt adapter into this port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from server.app.deadline import Deadline
from server.domain.finality import Rejection
from server.domain.idempotency import Operation
from server.domain.model import Failure, NextAction, PayeeMatch, PayoutDestination
from server.domain.money import Money


class OutcomeKind(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # final, with a failure (decline, rejection by the bank)
    PENDING = "pending"  # accepted; the PSP finishes later (SEPA, Stripe "processing")
    REQUIRES_ACTION = "requires_action"  # the customer must act (3-D Secure)
    AUTHORIZED = "authorized"  # a manual-capture charge the card authorized: capturable, not captured
    CANCELED = "canceled"  # voided (by a cancel, or the PSP released an uncaptured authorization)
    RETURNED = "returned"  # a paid payout came back
    UNKNOWN = "unknown"  # possibly executed, the answer was lost: never a failure


@dataclass(frozen=True, slots=True)
class PspOutcome:
    kind: OutcomeKind
    psp_reference: str | None = None
    failure: Failure | None = None
    # PSP-specific facts to keep with the resource (SEPA message ids, Stripe request id, ...).
    data: dict[str, str] = field(default_factory=dict)
    # Card payments: what the PSP holds (minor units of the payment's currency), when it is known.
    amount_capturable: int | None = None
    amount_received: int | None = None
    capturable_until: datetime | None = None
    next_action: NextAction | None = field(default=None, repr=False)  # REQUIRES_ACTION: for the caller only


@dataclass(frozen=True, slots=True)
class ChargeOrder:
    payment_id: str
    client_id: str
    idempotency_key: str  # the caller's key: goes to PSP metadata so the payment can be found again
    psp_key: str  # the derived PSP idempotency key, the same on every attempt
    amount: Money
    payment_method: str
    customer_id: str
    description: str
    metadata: dict[str, str]
    capture_manually: bool = False
    return_url: str = ""


@dataclass(frozen=True, slots=True)
class CaptureOrder:
    """Take `amount` of an authorized payment; `final` releases the rest."""

    payment_id: str
    client_id: str
    idempotency_key: str
    psp_key: str
    payment_psp_reference: str
    amount: Money
    final: bool


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Void an authorized or unfinished payment."""

    payment_id: str
    client_id: str
    idempotency_key: str
    psp_key: str
    payment_psp_reference: str
    reason: str


@dataclass(frozen=True, slots=True)
class RefundOrder:
    refund_id: str
    payment_id: str
    client_id: str
    idempotency_key: str
    psp_key: str
    amount: Money
    payment_psp_reference: str
    reason: str


@dataclass(frozen=True, slots=True)
class PayoutOrder:
    payout_id: str
    client_id: str
    idempotency_key: str
    psp_key: str
    amount: Money
    destination: PayoutDestination
    instant: bool
    reference: str
    # What the adapter asked us to keep before submission (e.g. SEPA EndToEndId); see prepare_payout.
    psp_data: dict[str, str] = field(default_factory=dict)


Order = ChargeOrder | RefundOrder | PayoutOrder | CaptureOrder | CancelOrder


@dataclass(frozen=True, slots=True)
class PayeeCheckOrder:
    """Verification of Payee for a SEPA payout: does `name` hold the account `iban`? A question, not a
    transfer: asking twice moves no money, so it needs no PSP idempotency key."""

    payout_id: str
    client_id: str
    iban: str = field(repr=False)  # never in a repr, log or span: mask_iban only
    name: str = field(repr=False)  # personal data
    bic: str = ""


@dataclass(frozen=True, slots=True)
class PayeeAnswer:
    """The creditor bank's answer; `suggested_name` is the holder's name with a CLOSE_MATCH."""

    result: PayeeMatch
    suggested_name: str = field(default="", repr=False)
    psp_request_id: str | None = None


class PspError(Exception):
    """Root of the errors adapters raise for one attempt."""


class PspUnavailableError(PspError):
    """Retryable: connection refused or reset, timeout, 5xx, 429, lock timeout, should-retry.

    `possibly_executed` is true when the request may have reached the PSP (the answer was lost);
    `retry_after` is the PSP's own hint in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        possibly_executed: bool,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.possibly_executed = possibly_executed
        self.retry_after = retry_after
        self.request_id = request_id


class PspRejectedError(PspError):
    """The PSP refused the request. What that proves is the finality rule's call
    (server/domain/finality.py): `rejection` says why, and `possibly_executed` is true when an earlier
    attempt of the same call may have reached the PSP (a timeout or a lost answer before the refusal).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "psp_rejected",
        request_id: str | None = None,
        rejection: Rejection = Rejection.REQUEST,
        possibly_executed: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id
        self.rejection = rejection
        self.possibly_executed = possibly_executed

    def after_possible_execution(self) -> PspRejectedError:
        """The same refusal, known to follow an attempt that may have executed."""
        return PspRejectedError(
            str(self), code=self.code, request_id=self.request_id, rejection=self.rejection, possibly_executed=True
        )


class PaymentProvider(Protocol):
    """A PSP as the use cases see it. Methods return an outcome; only unavailability raises."""

    @property
    def name(self) -> str: ...

    @property
    def key_ttl_seconds(self) -> float:
        """How long the PSP honours an idempotency key; past it a resend would execute again."""
        ...

    @property
    def lookup_window_seconds(self) -> float:
        """How long the PSP can still be asked about an operation (by its id or our metadata)."""
        ...

    @property
    def payouts_can_return(self) -> bool:
        """Whether a paid payout can still come back (a SEPA return, days later): then it is watched."""
        ...

    async def charge(self, order: ChargeOrder, deadline: Deadline) -> PspOutcome: ...

    async def refund(self, order: RefundOrder, deadline: Deadline) -> PspOutcome: ...

    async def payout(self, order: PayoutOrder, deadline: Deadline) -> PspOutcome: ...

    async def capture(self, order: CaptureOrder, deadline: Deadline) -> PspOutcome:
        """Captures an authorized charge; the outcome is the charge's state afterwards (AUTHORIZED while
        more remains capturable, SUCCEEDED once captured)."""
        ...

    async def cancel(self, order: CancelOrder, deadline: Deadline) -> PspOutcome:
        """Voids an authorized or unfinished charge; the outcome is the charge's state afterwards."""
        ...

    async def verify_payee(self, order: PayeeCheckOrder, deadline: Deadline) -> PayeeAnswer:
        """Verification of Payee at the creditor's bank, asked before a SEPA payout is sent.

        Raises PspUnavailableError without an answer (the check is asked again, never guessed) and
        PspRejectedError from a PSP that has no such check (a card PSP) or refuses the request.
        """
        ...

    async def lookup(self, order: Order, psp_reference: str | None, deadline: Deadline) -> PspOutcome:
        """The PSP's current view of an earlier order, by its reference or our metadata.

        Returns UNKNOWN when the PSP has no trace of it.
        """
        ...

    def prepare_payout(self, order: PayoutOrder) -> dict[str, str]:
        """Facts to store before the first submission (e.g. SEPA message ids); may be empty."""
        ...

    def destination_problem(self, destination: PayoutDestination) -> str | None:
        """Why this PSP cannot pay this destination (e.g. a malformed Stripe account id), or None; asked
        before the key is claimed, like `amount_problem`."""
        ...

    def amount_problem(self, amount: Money, operation: Operation) -> str | None:
        """Why this PSP would refuse the amount (its minimum, maximum or units), or None.

        Asked before the idempotency key is claimed, so an amount the PSP refuses is INVALID_ARGUMENT
        and the key stays free for a corrected request.
        """
        ...


class ProviderDirectory(Protocol):
    """Chooses the PSP for an operation; refunds and recovery go to the PSP that holds the original."""

    def for_charge(self) -> PaymentProvider: ...

    def for_payout(self, destination: PayoutDestination) -> PaymentProvider: ...

    def by_name(self, name: str) -> PaymentProvider: ...
