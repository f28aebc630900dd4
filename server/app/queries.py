"""Reads: Get* by id and ListPayments with AIP-158 pagination, always scoped to the caller."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

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


def _filter_digest(query: ListPaymentsQuery) -> str:
    text = f"{query.status or ''}\x00{query.customer_id or ''}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_page_token(query: ListPaymentsQuery, cursor: tuple[datetime, uuid.UUID]) -> str:
    payload = {"t": cursor[0].isoformat(), "i": cursor[1].hex, "f": _filter_digest(query)}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_page_token(query: ListPaymentsQuery) -> tuple[datetime, uuid.UUID] | None:
    """The cursor in the token. Whatever a token holds, one this listing did not issue for these filters
    is INVALID_ARGUMENT: every decoded field is checked for its type and range before it reaches SQL."""
    if not query.page_token:
        return None
    bad = InvalidRequest([FieldViolation("page_token", "is not a token this listing issued", "INVALID_PAGE_TOKEN")])
    try:
        payload = json.loads(base64.urlsafe_b64decode(query.page_token.encode("ascii")))
    except (ValueError, UnicodeError, RecursionError):
        raise bad from None
    if not isinstance(payload, dict) or set(payload) != {"t", "i", "f"}:
        raise bad
    created, ident, digest = payload["t"], payload["i"], payload["f"]
    if not (isinstance(created, str) and isinstance(ident, str) and isinstance(digest, str)):
        raise bad
    if len(created) > 40 or len(ident) != 32 or digest != _filter_digest(query):
        raise bad
    try:
        at = datetime.fromisoformat(created)
        # A cursor PostgreSQL can compare: aware, and still a valid timestamp once in UTC (an offset can
        # push 0001-01-01 or 9999-12-31 out of range).
        cursor = (at.astimezone(UTC), uuid.UUID(hex=ident)) if at.tzinfo is not None else None
    except (ValueError, OverflowError):
        raise bad from None
    if cursor is None:
        raise bad
    return cursor


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
