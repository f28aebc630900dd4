"""Reads: Get* by id and the List* listings with AIP-158 pagination, always scoped to the caller."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from server.app import page_tokens
from server.app.context import CallContext
from server.app.store import Cursor, KeysetPage, ResourceReader
from server.domain.errors import FieldViolation, InvalidRequest, NotFound
from server.domain.ids import IdKind, MalformedId, parse_id
from server.domain.model import DestinationType, Payment, Payout, Refund
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ListPaymentsQuery:
    page_size: int
    page_token: str
    status: PaymentStatus | None
    customer_id: str | None

    def digest(self) -> str:
        # Without the listing's name, unlike the others: tokens issued before refunds and payouts had
        # listings stay valid.
        return page_tokens.filter_digest(self.status, self.customer_id)


@dataclass(frozen=True, slots=True)
class ListRefundsQuery:
    page_size: int
    page_token: str
    status: RefundStatus | None
    payment_id: uuid.UUID | None

    def digest(self) -> str:
        return page_tokens.filter_digest("refunds", self.status, self.payment_id)


@dataclass(frozen=True, slots=True)
class ListPayoutsQuery:
    page_size: int
    page_token: str
    status: PayoutStatus | None
    destination: DestinationType | None

    def digest(self) -> str:
        return page_tokens.filter_digest("payouts", self.status, self.destination)


ListQuery = ListPaymentsQuery | ListRefundsQuery | ListPayoutsQuery


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


def encode_page_token(query: ListQuery, cursor: Cursor) -> str:
    return page_tokens.encode(cursor, query.digest())


def decode_page_token(query: ListQuery) -> Cursor | None:
    """The cursor in the query's token; anything but a token this listing issued for the same filters is
    INVALID_ARGUMENT (server/app/page_tokens.py)."""
    return page_tokens.decode(query.page_token, query.digest())


async def _page(query: ListQuery, fetch: Callable[[int, Cursor | None], Awaitable[KeysetPage[T]]]) -> Page[T]:
    """One implementation of AIP-158 for every listing: the page size's default and cap, and a token
    that continues only the listing and filters it came from."""
    if query.page_size < 0:
        raise InvalidRequest([FieldViolation("page_size", "must not be negative")])
    limit = min(query.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    page = await fetch(limit, decode_page_token(query))
    token = encode_page_token(query, page.next_cursor) if page.next_cursor else ""
    return Page(page.items, token)


class Queries:
    def __init__(self, reader: ResourceReader) -> None:
        self._reader = reader

    async def get_payment(self, id_text: str, ctx: CallContext) -> Payment:
        payment = await self._reader.get_payment(ctx.client_id, _parse(IdKind.PAYMENT, id_text))
        if payment is None:
            raise NotFound("payment not found")
        return payment

    async def get_refund(self, id_text: str, ctx: CallContext) -> Refund:
        refund = await self._reader.get_refund(ctx.client_id, _parse(IdKind.REFUND, id_text))
        if refund is None:
            raise NotFound("refund not found")
        return refund

    async def get_payout(self, id_text: str, ctx: CallContext) -> Payout:
        payout = await self._reader.get_payout(ctx.client_id, _parse(IdKind.PAYOUT, id_text))
        if payout is None:
            raise NotFound("payout not found")
        return payout

    async def list_payments(self, query: ListPaymentsQuery, ctx: CallContext) -> Page[Payment]:
        return await _page(query, lambda limit, after: self._reader.list_payments(
            ctx.client_id, limit=limit, status=query.status, customer_id=query.customer_id, after=after,
        ))  # fmt: skip

    async def list_refunds(self, query: ListRefundsQuery, ctx: CallContext) -> Page[Refund]:
        return await _page(query, lambda limit, after: self._reader.list_refunds(
            ctx.client_id, limit=limit, status=query.status, payment_id=query.payment_id, after=after,
        ))  # fmt: skip

    async def list_payouts(self, query: ListPayoutsQuery, ctx: CallContext) -> Page[Payout]:
        return await _page(query, lambda limit, after: self._reader.list_payouts(
            ctx.client_id, limit=limit, status=query.status, destination=query.destination, after=after,
        ))  # fmt: skip


def _parse(kind: IdKind, text: str) -> uuid.UUID:
    try:
        return parse_id(kind, text)
    except MalformedId as exc:
        raise InvalidRequest([FieldViolation("id", str(exc))]) from None
