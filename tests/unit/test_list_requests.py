"""The List* requests at the edge (server/api/validation.py) and the paging they share
(server/app/queries.py): page size default and cap, and tokens bound to their listing and filters."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api import validation
from server.app import page_tokens
from server.app.context import CallContext
from server.app.deadline import Deadline
from server.app.queries import (
    ListPaymentsQuery,
    ListPayoutsQuery,
    ListQuery,
    ListRefundsQuery,
    Queries,
    decode_page_token,
    encode_page_token,
)
from server.app.store import Cursor, KeysetPage
from server.domain.errors import InvalidRequest
from server.domain.model import DestinationType, Payment, Payout, Refund
from server.domain.states import PaymentStatus, PayoutStatus, RefundStatus

CURSOR: Cursor = (datetime(2026, 11, 30, 12, 0, tzinfo=UTC), uuid.UUID(int=7))
PAYMENT_ID = "pay_" + "ab" * 16


def refused(call: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRequest) as caught:
        call()  # type: ignore[operator]
    return [(v.field, v.reason) for v in caught.value.violations]


def test_refund_filters_become_the_query() -> None:
    query = validation.list_refunds_query(
        svc.ListRefundsRequest(page_size=5, payment_id=PAYMENT_ID, status=res.REFUND_STATUS_FAILED)
    )
    assert query == ListRefundsQuery(5, "", RefundStatus.FAILED, uuid.UUID("ab" * 16))
    assert validation.list_refunds_query(svc.ListRefundsRequest()) == ListRefundsQuery(0, "", None, None)


def test_payout_filters_become_the_query() -> None:
    sepa = svc.ListPayoutsRequest(
        status=res.PAYOUT_STATUS_RETURNED, destination_type=svc.PAYOUT_DESTINATION_TYPE_SEPA_ACCOUNT
    )
    assert validation.list_payouts_query(sepa) == ListPayoutsQuery(
        0, "", PayoutStatus.RETURNED, DestinationType.SEPA_ACCOUNT
    )
    stripe = svc.ListPayoutsRequest(destination_type=svc.PAYOUT_DESTINATION_TYPE_STRIPE_ACCOUNT)
    assert validation.list_payouts_query(stripe).destination is DestinationType.STRIPE_ACCOUNT


def test_every_bad_field_is_named_at_once() -> None:
    bad_refunds = svc.ListRefundsRequest(
        page_size=-1, page_token="x" * 1025, payment_id="re_" + "ab" * 16, status=res.RefundStatus.ValueType(9)
    )
    assert refused(lambda: validation.list_refunds_query(bad_refunds)) == [
        ("page_size", "INVALID_FIELD"), ("page_token", "INVALID_PAGE_TOKEN"), ("status", "INVALID_ENUM"),
        ("payment_id", "MALFORMED_ID"),
    ]  # fmt: skip
    bad_payouts = svc.ListPayoutsRequest(
        status=res.PayoutStatus.ValueType(9), destination_type=svc.PayoutDestinationType.ValueType(3)
    )
    assert refused(lambda: validation.list_payouts_query(bad_payouts)) == [
        ("status", "INVALID_ENUM"), ("destination_type", "INVALID_ENUM"),
    ]  # fmt: skip
    bad_payments = svc.ListPaymentsRequest(status=res.PaymentStatus.ValueType(99))
    assert refused(lambda: validation.list_query(bad_payments)) == [("status", "INVALID_ENUM")]


def test_a_token_continues_only_its_own_listing_and_filters() -> None:
    queries: list[ListQuery] = [
        ListPaymentsQuery(0, "", None, None),
        ListRefundsQuery(0, "", None, None),
        ListPayoutsQuery(0, "", None, None),
        ListRefundsQuery(0, "", RefundStatus.PENDING, None),
        ListRefundsQuery(0, "", None, uuid.UUID(int=1)),
        ListPayoutsQuery(0, "", None, DestinationType.SEPA_ACCOUNT),
        ListPayoutsQuery(0, "", PayoutStatus.PAID, None),
    ]
    for issuer in queries:
        token = encode_page_token(issuer, CURSOR)
        for other in queries:
            continued = dataclasses.replace(other, page_size=10, page_token=token)
            if other is issuer:
                assert decode_page_token(continued) == CURSOR
            else:
                assert refused(lambda q=continued: decode_page_token(q)) == [("page_token", "INVALID_PAGE_TOKEN")]


def test_payment_tokens_issued_before_the_other_listings_still_continue() -> None:
    earlier = page_tokens.encode(CURSOR, page_tokens.filter_digest(PaymentStatus.SUCCEEDED, "cus_1"))
    assert decode_page_token(ListPaymentsQuery(10, earlier, PaymentStatus.SUCCEEDED, "cus_1")) == CURSOR


class RecordingReader:
    """Answers every listing with one page of nothing, remembering the limit it was asked for."""

    def __init__(self, next_cursor: Cursor | None) -> None:
        self.limits: list[int] = []
        self.next_cursor = next_cursor

    async def get_payment(self, client_id: str, payment_id: uuid.UUID) -> Payment | None:
        raise NotImplementedError

    async def get_refund(self, client_id: str, refund_id: uuid.UUID) -> Refund | None:
        raise NotImplementedError

    async def get_payout(self, client_id: str, payout_id: uuid.UUID) -> Payout | None:
        raise NotImplementedError

    async def list_payments(self, client_id: str, *, limit: int, **_: object) -> KeysetPage[Payment]:
        self.limits.append(limit)
        return KeysetPage([], self.next_cursor)

    async def list_refunds(self, client_id: str, *, limit: int, **_: object) -> KeysetPage[Refund]:
        self.limits.append(limit)
        return KeysetPage([], self.next_cursor)

    async def list_payouts(self, client_id: str, *, limit: int, **_: object) -> KeysetPage[Payout]:
        self.limits.append(limit)
        return KeysetPage([], self.next_cursor)


def test_every_listing_defaults_to_50_caps_at_100_and_ends_with_an_empty_token() -> None:
    ctx = CallContext(client_id="shop", deadline=Deadline.after(None))
    reader = RecordingReader(next_cursor=None)
    queries = Queries(reader)

    async def pages() -> list[str]:
        return [
            (await queries.list_payments(ListPaymentsQuery(0, "", None, None), ctx)).next_page_token,
            (await queries.list_refunds(ListRefundsQuery(1000, "", None, None), ctx)).next_page_token,
            (await queries.list_payouts(ListPayoutsQuery(7, "", None, None), ctx)).next_page_token,
        ]

    assert asyncio.run(pages()) == ["", "", ""]
    assert reader.limits == [50, 100, 7]
    reader.next_cursor = CURSOR
    query = ListPayoutsQuery(7, "", PayoutStatus.PAID, None)
    token = asyncio.run(queries.list_payouts(query, ctx)).next_page_token
    assert decode_page_token(ListPayoutsQuery(7, token, PayoutStatus.PAID, None)) == CURSOR
