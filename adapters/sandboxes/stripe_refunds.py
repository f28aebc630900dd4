"""Refunds by Stripe's rules, for the offline sandbox: full or partial, pending and failing ones.

A refund draws on a charge's captured amount only (an authorization is released by canceling, not
refunded); the test cards ``pm_card_pendingRefund`` and ``pm_card_refundFail`` make it settle later
(``schedule``), and a failed or canceled refund gives the money back to the charge. Each change is
announced as an Event. The ledger (``stripe_objects``) routes to these rules under its lock.
"""

from __future__ import annotations

import time

from adapters.sandboxes.stripe_resources import (
    AccountRules,
    Charge,
    Refund,
    new_id,
    render_refund,
)
from adapters.sandboxes.stripe_search import Listing
from adapters.sandboxes.stripe_wire import (
    ApiResponse,
    Params,
    check_units,
    check_within,
    enum_param,
    integer_param,
    invalid_request,
    metadata_param,
    reject_unknown,
    resource_missing,
    string_param,
)

_REFUND_PARAMS = frozenset(
    (
        "amount",
        "charge",
        "currency",
        "customer",
        "expand",
        "instructions_email",
        "metadata",
        "origin",
        "payment_intent",
        "reason",
        "refund_application_fee",
        "reverse_transfer",
    )
)
_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
_READS: Listing[Refund] = Listing(
    "/v1/refunds", "refund", render_refund, {"payment_intent": lambda r: r.payment_intent, "charge": lambda r: r.charge}
)


class Refunds(AccountRules):
    """The Refund endpoints of one account; ``schedule`` settles the test cards' slow refunds."""

    def create(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, _REFUND_PARAMS)
        charge = self._refundable_charge(params)
        requested = integer_param(params, "amount", minimum=1)
        reason = enum_param(params, "reason", _REFUND_REASONS)
        metadata = metadata_param(params)
        remaining = charge.amount_captured - charge.amount_refunded
        if remaining <= 0:
            raise invalid_request(
                f"Charge {charge.id} has already been refunded.", code="charge_already_refunded", stored=True
            )
        amount = remaining if requested is None else requested
        check_units(amount, charge.currency)
        check_within(amount, remaining, charge.currency, taken="Refund", left="unrefunded amount on charge")
        refund = Refund(
            id=new_id("re"),
            created=int(time.time()),
            amount=amount,
            currency=charge.currency,
            payment_intent=charge.payment_intent,
            charge=charge.id,
            reason=reason,
            metadata=metadata,
            status=charge.card.refund_status,
        )
        charge.amount_refunded += amount
        self._account.refunds[refund.id] = refund
        if charge.card.refund_settles_to is not None:
            self._schedule(refund.id, charge.card.refund_settles_to)
        self._announce(refund, "refund.created")
        return ApiResponse(200, render_refund(refund), executed=True)

    def _refundable_charge(self, params: Params) -> Charge:
        intent_id = string_param(params, "payment_intent")
        charge_id = string_param(params, "charge")
        if intent_id is None and charge_id is None:
            raise invalid_request(
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        if intent_id is not None:
            intent = self._account.intents.get(intent_id)
            if intent is None:
                raise resource_missing("payment_intent", intent_id, param="payment_intent", status=400)
            captured = self._account.charges.get(intent.latest_charge or "")
            if captured is None or captured.amount_captured == 0:
                raise invalid_request(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                    param="payment_intent",
                    code="payment_intent_unexpected_state",
                    stored=True,
                )
            return captured
        charge = self._account.charges.get(charge_id or "")
        if charge is None:
            raise resource_missing("charge", charge_id or "", param="charge", status=400)
        if charge.amount_captured == 0:
            raise invalid_request(
                f"Charge {charge.id} has no captured funds to refund. To release an uncaptured payment, "
                "cancel its PaymentIntent.",
                param="charge",
                code="charge_not_refundable",
                stored=True,
            )
        return charge

    def transition(self, refund: Refund, status: str) -> None:
        allowed = {"pending": ("succeeded", "failed", "canceled"), "succeeded": ("failed",)}
        if status not in allowed.get(refund.status, ()):
            raise ValueError(f"refund {refund.id} cannot go from {refund.status} to {status}")
        refund.status = status
        if status in ("failed", "canceled"):
            refund.failure_reason = "expired_or_canceled_card" if status == "failed" else None
            self._account.charges[refund.charge].amount_refunded -= refund.amount  # the money comes back
        self._announce(refund, "refund.updated")
        if status == "failed":
            self._announce(refund, "refund.failed")

    def _announce(self, refund: Refund, event_type: str) -> None:
        self._publish(event_type, lambda: render_refund(refund))

    def retrieve(self, params: Params, refund_id: str) -> ApiResponse:
        return _READS.retrieve(params, self._account.refunds, refund_id)

    def list_all(self, params: Params, _: str) -> ApiResponse:
        return _READS.page(params, self._account.refunds)
