"""ListRefunds and ListPayouts through `payments serve`, and `payments list` for all three listings.

One served process for the module: the resources are made once, and every test only reads them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest

from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server import cli
from server.api.client import PaymentStub, payment_stub
from server.domain.ids import IdKind, parse_id
from server.security.auth import hash_token
from tests.support.chaos import ServeProcess, client_channel
from tests.support.postgres import PostgresForTests
from tests.support.requests import charge, error_reason, field_violations, refund, rpc_error, sepa_payout

TOKENS = {"client-a": "token-a-5c2e9f0b7d1a4e63", "client-b": "token-b-0d7a3c9e1f5b2864"}


def bearer(client: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {TOKENS[client]}"),)


def stripe_payout(key: str, account: str = "acct_seller1") -> svc.PayoutRequest:
    return svc.PayoutRequest(
        idempotency_key=key, amount=res.Money(amount_minor=3000, currency="EUR"), stripe_account_id=account
    )


@dataclass
class Made:
    """What the module's client-a and client-b made, oldest first."""

    stub: PaymentStub
    target: str
    refunds_a: list[res.Refund]  # three of payment_a, then two of payment_b
    payment_a: str
    refunds_b: list[res.Refund]  # client-b's, of its own payment
    payment_of_b: str
    sepa_a: list[res.Payout]
    stripe_a: list[res.Payout]
    returned: str  # the one of sepa_a the bank sent back
    payouts_b: list[res.Payout]


def _mark_returned(database_url: str, payout_id: str) -> None:
    """A bank return, as the worker records it for a PSP that reports returns (PAID -> RETURNED)."""

    async def update() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE payouts SET status = 'RETURNED' WHERE id = $1", parse_id(IdKind.PAYOUT, payout_id)
            )
        finally:
            await conn.close()

    asyncio.run(update())


@pytest.fixture(scope="module")
def made(postgres: PostgresForTests, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    folder = tmp_path_factory.mktemp("listings")
    tokens = folder / "tokens.json"
    tokens.write_text(json.dumps({client: hash_token(token) for client, token in TOKENS.items()}))
    database_url = postgres.new_database()
    server = ServeProcess(database_url, folder / "serve.log", PAYMENTS_PSP="inprocess",
                          PAYMENTS_AUTH_TOKENS_FILE=str(tokens))  # fmt: skip
    server.start()
    try:
        with client_channel(server.target) as channel:
            stub = payment_stub(channel)
            a, b = bearer("client-a"), bearer("client-b")

            def pay(key: str, meta: tuple[tuple[str, str]]) -> str:
                return str(stub.Charge(charge(key, amount=10_000), metadata=meta, timeout=30).payment.id)

            def refunds(payment_id: str, keys: list[str], meta: tuple[tuple[str, str]]) -> list[res.Refund]:
                return [stub.Refund(refund(k, payment_id, 100), metadata=meta, timeout=30).refund for k in keys]

            def payouts(requests: list[svc.PayoutRequest], meta: tuple[tuple[str, str]]) -> list[res.Payout]:
                return [stub.Payout(r, metadata=meta, timeout=30).payout for r in requests]

            payment_a, other_a, payment_of_b = pay("p-a", a), pay("p-a2", a), pay("p-a", b)
            refunds_a = refunds(payment_a, ["r1", "r2", "r3"], a) + refunds(other_a, ["r4", "r5"], a)
            refunds_b = refunds(payment_of_b, ["r1"], b)
            sepa_a = payouts([sepa_payout(f"s{i}") for i in range(3)], a)
            stripe_a = payouts([stripe_payout(f"t{i}") for i in range(2)], a)
            payouts_b = payouts([sepa_payout("s0"), stripe_payout("t0")], b)
            _mark_returned(database_url, sepa_a[1].id)
            yield Made(stub, server.target, refunds_a, payment_a, refunds_b, payment_of_b, sepa_a, stripe_a,
                       sepa_a[1].id, payouts_b)  # fmt: skip
    finally:
        server.close()


def every_page(call: Callable[[str], Any]) -> tuple[list[str], int]:
    """The ids of every page, following next_page_token, and how many pages there were."""
    ids: list[str] = []
    token, pages = "", 0
    while True:
        page = call(token)
        pages += 1
        items = page.refunds if isinstance(page, svc.ListRefundsResponse) else page.payouts
        ids += [item.id for item in items]
        token = page.next_page_token
        if not token:
            return ids, pages


def list_refunds(made: Made, client: str = "client-a", **fields: Any) -> list[str]:
    request = svc.ListRefundsRequest(**fields)
    return [r.id for r in made.stub.ListRefunds(request, metadata=bearer(client), timeout=30).refunds]


def list_payouts(made: Made, client: str = "client-a", **fields: Any) -> list[str]:
    request = svc.ListPayoutsRequest(**fields)
    return [p.id for p in made.stub.ListPayouts(request, metadata=bearer(client), timeout=30).payouts]


def newest_first(*groups: list[Any]) -> list[str]:
    return [item.id for group in groups for item in group][::-1]


def test_refunds_page_newest_first_each_once_and_each_client_its_own(made: Made) -> None:
    ids, pages = every_page(lambda token: made.stub.ListRefunds(
        svc.ListRefundsRequest(page_size=2, page_token=token), metadata=bearer("client-a"), timeout=30))  # fmt: skip
    assert ids == newest_first(made.refunds_a)
    assert pages == 3
    assert list_refunds(made, "client-b") == newest_first(made.refunds_b)
    listed = made.stub.ListRefunds(svc.ListRefundsRequest(), metadata=bearer("client-a"), timeout=30)
    assert listed.refunds[0] == made.stub.GetRefund(svc.GetRefundRequest(id=ids[0]), metadata=bearer("client-a"),
                                                     timeout=30).refund, "the listing shows what Get shows"  # fmt: skip
    assert not listed.next_page_token


def test_refunds_by_payment_and_status(made: Made) -> None:
    assert list_refunds(made, payment_id=made.payment_a) == newest_first(made.refunds_a[:3])
    ids, pages = every_page(lambda token: made.stub.ListRefunds(
        svc.ListRefundsRequest(page_size=2, page_token=token, payment_id=made.payment_a),
        metadata=bearer("client-a"), timeout=30))  # fmt: skip
    assert (ids, pages) == (newest_first(made.refunds_a[:3]), 2)
    assert list_refunds(made, payment_id=made.payment_of_b) == [], "another client's payment lists nothing"
    assert list_refunds(made, status=res.REFUND_STATUS_SUCCEEDED) == newest_first(made.refunds_a)
    assert list_refunds(made, status=res.REFUND_STATUS_FAILED) == []


def test_payouts_page_newest_first_and_each_client_its_own(made: Made) -> None:
    ids, pages = every_page(lambda token: made.stub.ListPayouts(
        svc.ListPayoutsRequest(page_size=2, page_token=token), metadata=bearer("client-a"), timeout=30))  # fmt: skip
    assert ids == newest_first(made.sepa_a, made.stripe_a)
    assert pages == 3
    assert list_payouts(made, "client-b") == newest_first(made.payouts_b)


def test_payouts_by_destination_and_status(made: Made) -> None:
    sepa = svc.PAYOUT_DESTINATION_TYPE_SEPA_ACCOUNT
    stripe = svc.PAYOUT_DESTINATION_TYPE_STRIPE_ACCOUNT
    assert list_payouts(made, destination_type=sepa) == newest_first(made.sepa_a)
    assert list_payouts(made, destination_type=stripe) == newest_first(made.stripe_a)
    assert list_payouts(made, status=res.PAYOUT_STATUS_RETURNED) == [made.returned]
    paid = [p for p in made.sepa_a if p.id != made.returned]
    assert list_payouts(made, status=res.PAYOUT_STATUS_PAID, destination_type=sepa) == newest_first(paid)
    ids, _ = every_page(lambda token: made.stub.ListPayouts(
        svc.ListPayoutsRequest(page_size=1, page_token=token, destination_type=stripe),
        metadata=bearer("client-a"), timeout=30))  # fmt: skip
    assert ids == newest_first(made.stripe_a)


def invalid(call: Callable[[], object]) -> tuple[str, list[str]]:
    error = rpc_error(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    return error_reason(error), field_violations(error)


def test_tokens_continue_only_their_own_listing_and_filters(made: Made) -> None:
    a = bearer("client-a")
    refunds = made.stub.ListRefunds(svc.ListRefundsRequest(page_size=1), metadata=a, timeout=30).next_page_token
    payouts = made.stub.ListPayouts(svc.ListPayoutsRequest(page_size=1), metadata=a, timeout=30).next_page_token
    payments = made.stub.ListPayments(svc.ListPaymentsRequest(page_size=1), metadata=a, timeout=30).next_page_token
    assert refunds
    assert payouts
    assert payments
    foreign = [
        lambda: made.stub.ListPayouts(svc.ListPayoutsRequest(page_token=refunds), metadata=a, timeout=30),
        lambda: made.stub.ListRefunds(svc.ListRefundsRequest(page_token=payouts), metadata=a, timeout=30),
        lambda: made.stub.ListRefunds(svc.ListRefundsRequest(page_token=payments), metadata=a, timeout=30),
        lambda: made.stub.ListPayments(svc.ListPaymentsRequest(page_token=refunds), metadata=a, timeout=30),
        lambda: made.stub.ListRefunds(
            svc.ListRefundsRequest(page_token=refunds, status=res.REFUND_STATUS_SUCCEEDED), metadata=a, timeout=30),
        lambda: made.stub.ListPayouts(svc.ListPayoutsRequest(
            page_token=payouts, destination_type=svc.PAYOUT_DESTINATION_TYPE_SEPA_ACCOUNT), metadata=a, timeout=30),
        lambda: made.stub.ListPayouts(svc.ListPayoutsRequest(page_token="garbage"), metadata=a, timeout=30),
    ]  # fmt: skip
    for call in foreign:
        assert invalid(call) == ("INVALID_PAGE_TOKEN", ["page_token"])


def test_bad_requests_name_every_field(made: Made) -> None:
    a = bearer("client-a")
    unknown = res.RefundStatus.ValueType(99)  # from a newer proto, say
    refunds = svc.ListRefundsRequest(page_size=-1, payment_id="re_0123", status=unknown)
    assert invalid(lambda: made.stub.ListRefunds(refunds, metadata=a, timeout=30)) == (
        "INVALID_REQUEST", ["page_size", "status", "payment_id"])  # fmt: skip
    payouts = svc.ListPayoutsRequest(
        status=res.PayoutStatus.ValueType(42), destination_type=svc.PayoutDestinationType.ValueType(7)
    )
    assert invalid(lambda: made.stub.ListPayouts(payouts, metadata=a, timeout=30)) == (
        "INVALID_REQUEST", ["status", "destination_type"])  # fmt: skip
    one = svc.ListPayoutsRequest(destination_type=svc.PayoutDestinationType.ValueType(7))
    assert invalid(lambda: made.stub.ListPayouts(one, metadata=a, timeout=30)) == ("INVALID_ENUM", ["destination_type"])


def run_cli(made: Made, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = cli.main(["list", *args, "--target", made.target, "--token", TOKENS["client-a"]])
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else out.err


def test_cli_lists_payments_by_default_and_refunds_and_payouts_on_request(
    made: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    code, payments = run_cli(made, capsys, "--status", "succeeded", "--page-size", "1")
    assert code == 0
    assert len(payments["payments"]) == 1
    assert payments["next_page_token"]
    code, refunds = run_cli(made, capsys, "refunds", "--payment", made.payment_a)
    assert code == 0
    assert [r["id"] for r in refunds["refunds"]] == newest_first(made.refunds_a[:3])
    code, payouts = run_cli(made, capsys, "payouts", "--destination", "stripe", "--status", "paid")
    assert code == 0
    assert [p["id"] for p in payouts["payouts"]] == newest_first(made.stripe_a)
    assert payouts["next_page_token"] == ""
    code, error = run_cli(made, capsys, "refunds", "--status", "paid")
    assert code == 2
    assert "--status of refunds is one of pending, succeeded" in error
    code, error = run_cli(made, capsys, "payments", "--destination", "sepa")
    assert code == 2
    assert "--destination applies to `payments list payouts` only" in error
