"""Transfers to connected accounts by Stripe's rules, for the offline sandbox (payouts to sellers).

A transfer needs an ``acct_…`` destination and, when the test sets a balance cap, enough available
balance (``balance_insufficient`` otherwise, as Stripe answers); reversals take it back
(``stripe_reversals``). The ledger (``stripe_objects``) routes to these rules under its lock.
"""

from __future__ import annotations

import re
import time

from adapters.sandboxes.stripe_resources import AccountRules, Transfer, new_id, render_transfer
from adapters.sandboxes.stripe_search import Listing
from adapters.sandboxes.stripe_wire import (
    ApiResponse,
    Params,
    amount_param,
    invalid_request,
    metadata_param,
    reject_unknown,
    required_string,
    resource_missing,
    string_param,
)

_TRANSFER_PARAMS = frozenset(
    (
        "amount",
        "currency",
        "description",
        "destination",
        "expand",
        "metadata",
        "source_transaction",
        "source_type",
        "transfer_group",
    )
)
_DESTINATION_RE = re.compile(r"acct_[A-Za-z0-9]+")
_READS: Listing[Transfer] = Listing(
    "/v1/transfers",
    "transfer",
    render_transfer,
    {"destination": lambda t: t.destination, "transfer_group": lambda t: t.transfer_group},
)


class Transfers(AccountRules):
    """The Transfer endpoints of one account."""

    def create(self, params: Params, _: str) -> ApiResponse:
        reject_unknown(params, _TRANSFER_PARAMS)
        amount, currency = amount_param(params)
        destination = required_string(params, "destination")
        metadata = metadata_param(params)
        if _DESTINATION_RE.fullmatch(destination) is None:
            raise resource_missing("destination", destination, param="destination", status=400)
        available = self._account.available.get(currency)
        if available is not None and amount > available:
            raise invalid_request(
                "You have insufficient available funds in your Stripe account. Try adding funds directly "
                "to your available balance by creating Charges using the 4000000000000077 test card.",
                code="balance_insufficient",
                stored=True,
            )
        if available is not None:
            self._account.available[currency] = available - amount
        transfer = Transfer(
            id=new_id("tr"),
            created=int(time.time()),
            amount=amount,
            currency=currency,
            destination=destination,
            description=string_param(params, "description"),
            metadata=metadata,
            transfer_group=string_param(params, "transfer_group"),
            source_transaction=string_param(params, "source_transaction"),
        )
        self._account.transfers[transfer.id] = transfer
        self._publish("transfer.created", lambda: render_transfer(transfer))
        return ApiResponse(200, render_transfer(transfer), executed=True)

    def retrieve(self, params: Params, transfer_id: str) -> ApiResponse:
        return _READS.retrieve(params, self._account.transfers, transfer_id)

    def list_all(self, params: Params, _: str) -> ApiResponse:
        return _READS.page(params, self._account.transfers)
