"""Which PSP executes what: cards and Stripe-account payouts at the card PSP, SEPA payouts at the bank."""

from __future__ import annotations

from server.app.psp import PaymentProvider
from server.domain.model import PayoutDestination, SepaDestination


class UnknownProvider(LookupError):
    """A resource names a PSP this deployment is not configured for."""


class ProviderSet:
    """Implements server.app.psp.ProviderDirectory."""

    def __init__(
        self,
        *,
        cards: PaymentProvider,
        bank: PaymentProvider | None = None,
        others: list[PaymentProvider] | None = None,
    ) -> None:
        self._cards = cards
        self._bank = bank or cards
        self._by_name = {p.name: p for p in [cards, self._bank, *(others or [])]}

    def for_charge(self) -> PaymentProvider:
        return self._cards

    def for_payout(self, destination: PayoutDestination) -> PaymentProvider:
        return self._bank if isinstance(destination, SepaDestination) else self._cards

    def by_name(self, name: str) -> PaymentProvider:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownProvider(name) from None
