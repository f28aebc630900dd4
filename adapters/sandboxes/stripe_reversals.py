"""Transfer reversals by Stripe's rules, for the offline sandbox: taking a payout back, in whole or in part.

``POST /v1/transfers/{id}/reversals`` takes back all that is left of a transfer (the default) or part
of it, as many times as there is something left; the money returns to the platform's balance, and
the transfer is announced as ``transfer.reversed``. The ledger (``stripe_objects``) routes to these
rules under its lock.
"""

from __future__ import annotations

import time

from adapters.sandboxes import stripe_wire as wire
from adapters.sandboxes.stripe_resources import (
    AccountRules,
    Transfer,
    TransferReversal,
    new_id,
    render_transfer,
    render_transfer_reversal,
    reversed_amount,
)
from adapters.sandboxes.stripe_search import PAGE_PARAMS, list_page
from adapters.sandboxes.stripe_wire import ApiResponse, Params

_REVERSAL_PARAMS = frozenset(("amount", "description", "expand", "metadata", "refund_application_fee"))


class TransferReversals(AccountRules):
    """The reversal endpoints of one account's transfers."""

    def create(self, params: Params, transfer_id: str) -> ApiResponse:
        transfer = self._transfer(transfer_id)
        wire.reject_unknown(params, _REVERSAL_PARAMS)
        requested = wire.integer_param(params, "amount", minimum=1)
        metadata = wire.metadata_param(params)
        remaining = transfer.amount - reversed_amount(transfer)
        if remaining <= 0:
            raise wire.invalid_request(f"Transfer {transfer.id} has already been fully reversed.", stored=True)
        amount = remaining if requested is None else requested
        wire.check_within(amount, remaining, transfer.currency, taken="Reversal", left="what is left to reverse")
        reversal = TransferReversal(
            id=new_id("trr"),
            amount=amount,
            created=int(time.time()),
            currency=transfer.currency,
            description=wire.string_param(params, "description"),
            metadata=metadata,
            transfer=transfer.id,
        )
        transfer.reversals.append(reversal)
        if transfer.currency in self._account.available:
            self._account.available[transfer.currency] += amount  # the money comes back to the platform
        self._publish("transfer.reversed", lambda: render_transfer(transfer))
        return ApiResponse(200, render_transfer_reversal(reversal), executed=True)

    def list_all(self, params: Params, transfer_id: str) -> ApiResponse:
        transfer = self._transfer(transfer_id)
        wire.reject_unknown(params, PAGE_PARAMS)
        return list_page(f"/v1/transfers/{transfer.id}/reversals", transfer.reversals, params, render_transfer_reversal)

    def _transfer(self, transfer_id: str) -> Transfer:
        transfer = self._account.transfers.get(transfer_id)
        if transfer is None:
            raise wire.resource_missing("transfer", transfer_id, param="id")
        return transfer
