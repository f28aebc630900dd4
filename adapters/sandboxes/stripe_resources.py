"""The objects of the sandbox's Stripe account, and how each is rendered as Stripe's JSON.

Kept apart from the rules (``stripe_intents``, ``stripe_refunds``, ``stripe_transfers``) because
several rules read the same objects: a refund needs its intent's charge, an intent renders its
charge. ``StripeAccount`` holds them all; the ledger (``stripe_objects``) guards it with one lock.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from adapters.sandboxes.json_types import JsonDict, JsonValue
from adapters.sandboxes.stripe_wire import ApiResponse, Decline, Params, TestCard

_ID_ALPHABET = string.ascii_letters + string.digits

Handler = Callable[[Params, str], ApiResponse]
"""One endpoint's rule: decoded parameters and the id in the path ("" if none) to Stripe's answer."""
Schedule = Callable[[str, str], None]
"""Asks the ledger to move an object (by id) to a status once ``settle_after_seconds`` have passed."""
Render = Callable[[], JsonDict]
"""Renders a changed object as the API would return it; only called while a webhook endpoint listens."""
Publish = Callable[[str, Render], None]
"""Announces a change as an Event of the given type (``payment_intent.succeeded``) about the rendered object."""

AUTHORIZATION_VALID_SECONDS = 7 * 24 * 3600  # an uncaptured card payment is capturable for 7 days


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking object id (``pi_…``, ``re_…``); unguessable so tests cannot depend on order."""
    return prefix + "_" + "".join(_ID_ALPHABET[byte % len(_ID_ALPHABET)] for byte in secrets.token_bytes(length))


@dataclass
class Charge:
    id: str
    created: int
    amount: int
    currency: str
    payment_intent: str
    payment_method: str
    card: TestCard
    status: str
    captured: bool = False
    amount_captured: int = 0
    amount_refunded: int = 0
    failure: Decline | None = None
    capture_before: int | None = None  # manual capture only: when the authorization lapses


@dataclass
class PaymentIntent:
    id: str
    created: int
    amount: int
    currency: str
    capture_method: str
    customer: str | None
    description: str | None
    metadata: dict[str, str]
    automatic_payment_methods: JsonDict | None
    payment_method_types: list[str]
    payment_method: str | None = None
    card: TestCard | None = None
    return_url: str | None = None
    status: str = "requires_payment_method"
    amount_capturable: int = 0
    amount_received: int = 0
    latest_charge: str | None = None
    last_payment_error: JsonDict | None = None
    next_action: JsonDict | None = None
    canceled_at: int | None = None
    cancellation_reason: str | None = None
    challenge: str | None = None  # the open 3-D Secure challenge (its source id) while requires_action
    client_secret: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def full_client_secret(self) -> str:
        """The ``client_secret`` as Stripe shows it: ``pi_…_secret_…``."""
        return f"{self.id}_secret_{self.client_secret}"


@dataclass
class Refund:
    id: str
    created: int
    amount: int
    currency: str
    payment_intent: str
    charge: str
    reason: str | None
    metadata: dict[str, str]
    status: str
    failure_reason: str | None = None


@dataclass
class Transfer:
    id: str
    created: int
    amount: int
    currency: str
    destination: str
    description: str | None
    metadata: dict[str, str]
    transfer_group: str | None
    source_transaction: str | None
    reversals: list[TransferReversal] = field(default_factory=list)


@dataclass
class TransferReversal:
    """Fields in the order of Stripe's JSON, which ``render_transfer_reversal`` keeps."""

    id: str
    amount: int
    created: int
    currency: str
    description: str | None
    metadata: dict[str, str]
    transfer: str


@dataclass
class StripeAccount:
    """Every object of one test-mode account; ``available``: balance caps per currency (none: unlimited)."""

    intents: dict[str, PaymentIntent] = field(default_factory=dict)
    charges: dict[str, Charge] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    transfers: dict[str, Transfer] = field(default_factory=dict)
    cards: dict[str, TestCard] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)
    challenges: dict[str, str] = field(default_factory=dict)  # 3-D Secure source id -> payment intent id

    def clear(self) -> None:
        """Forget every object, as a fresh test-mode account."""
        self.challenges.clear()
        for store in (self.intents, self.charges, self.refunds, self.transfers, self.cards, self.available):
            store.clear()


class AccountRules:
    """The base of each resource's rules: the account's objects, the ledger's settlement schedule, and
    where the rules announce each change (an Event)."""

    def __init__(self, account: StripeAccount, schedule: Schedule, publish: Publish) -> None:
        self._account = account
        self._schedule = schedule
        self._publish = publish


# ------------------------------------------------------------------------------------------ rendering


def render_charge(charge: Charge) -> JsonDict:
    failure = charge.failure
    return {
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount,
        "amount_captured": charge.amount_captured,
        "amount_refunded": charge.amount_refunded,
        "captured": charge.captured,
        "created": charge.created,
        "currency": charge.currency,
        "failure_code": failure.code if failure else None,
        "failure_message": failure.message if failure else None,
        "livemode": False,
        "metadata": {},
        "paid": charge.status == "succeeded",
        "payment_intent": charge.payment_intent,
        "payment_method": charge.payment_method,
        "payment_method_details": {"type": "card", "card": _charged_card(charge)},
        "refunded": charge.captured and charge.amount_refunded >= charge.amount_captured,
        "status": charge.status,
    }


def _charged_card(charge: Charge) -> JsonDict:
    card = render_card(charge.card)
    if charge.capture_before is not None:
        card["capture_before"] = charge.capture_before
    return card


def render_card(card: TestCard) -> JsonDict:
    return {"brand": card.brand, "last4": card.last4, "exp_month": 12, "exp_year": 2034, "funding": "credit"}


def render_payment_method(payment_method_id: str, card: TestCard) -> JsonDict:
    return {"id": payment_method_id, "object": "payment_method", "type": "card", "card": render_card(card)}


def render_refund(refund: Refund) -> JsonDict:
    return {
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "charge": refund.charge,
        "created": refund.created,
        "currency": refund.currency,
        "failure_reason": refund.failure_reason,
        "metadata": json_map(refund.metadata),
        "payment_intent": refund.payment_intent,
        "reason": refund.reason,
        "status": refund.status,
    }


def render_transfer(transfer: Transfer) -> JsonDict:
    return {
        "id": transfer.id,
        "object": "transfer",
        "amount": transfer.amount,
        "amount_reversed": reversed_amount(transfer),
        "created": transfer.created,
        "currency": transfer.currency,
        "description": transfer.description,
        "destination": transfer.destination,
        "livemode": False,
        "metadata": json_map(transfer.metadata),
        "reversals": {
            "object": "list",
            "data": [render_transfer_reversal(reversal) for reversal in reversed(transfer.reversals)],
            "has_more": False,
            "total_count": len(transfer.reversals),
            "url": f"/v1/transfers/{transfer.id}/reversals",
        },
        "reversed": reversed_amount(transfer) >= transfer.amount,
        "source_transaction": transfer.source_transaction,
        "transfer_group": transfer.transfer_group,
    }


def reversed_amount(transfer: Transfer) -> int:
    """How much of a transfer its reversals took back."""
    return sum(reversal.amount for reversal in transfer.reversals)


def render_transfer_reversal(reversal: TransferReversal) -> JsonDict:
    fields = asdict(reversal)
    return {"id": fields.pop("id"), "object": "transfer_reversal", **fields}


def json_map(values: dict[str, str]) -> JsonDict:
    return dict[str, JsonValue](values)
