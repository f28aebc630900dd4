"""Reads: Get* by id and ListPayments with AIP-158 pagination, always scoped to the caller."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from server.app import page_tokens
from server.app.context import CallContext
from server.app.store import ResourceReader
from server.domain.errors import FieldViolation, InvalidRequest, NotFound
from server.domain.ids import IdKind, MalformedId, parse_id
from server.domain.model import Payment, Payout, Refund
from server.domain.states import PaymentStatus

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class ListPaymentsQuery:
    page_size: int
    page_token: str
    status: PaymentStatus | None
    customer_id: str | None


@dataclass(frozen=True, slots=True)
class PaymentList:
    payments: list[Payment]
    next_page_token: str


def _digest(query: ListPaymentsQuery) -> str:
    return page_tokens.filter_digest(query.status, query.customer_id)


def encode_page_token(query: ListPaymentsQuery, cursor: page_tokens.Cursor) -> str:
    return page_tokens.encode(cursor, _digest(query))


def decode_page_token(query: ListPaymentsQuery) -> page_tokens.Cursor | None:
    """The cursor in the query's token; anything but a token this listing issued for the same filters is
    INVALID_ARGUMENT (server/app/page_tokens.py)."""
    return page_tokens.decode(query.page_token, _digest(query))


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

    async def list_payments(self, query: ListPaymentsQuery, ctx: CallContext) -> PaymentList:
        if query.page_size < 0:
            raise InvalidRequest([FieldViolation("page_size", "must not be negative")])
        limit = min(query.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = decode_page_token(query)
        page = await self._reader.list_payments(
            ctx.client_id, limit=limit, status=query.status, customer_id=query.customer_id, after=after
        )
        token = encode_page_token(query, page.next_cursor) if page.next_cursor else ""
        return PaymentList(page.payments, token)


def _parse(kind: IdKind, text: str) -> uuid.UUID:
    try:
        return parse_id(kind, text)
    except MalformedId as exc:
        raise InvalidRequest([FieldViolation("id", str(exc))]) from None
