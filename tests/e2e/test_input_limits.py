"""Every bad input is refused up front, through `payments serve`: INVALID_ARGUMENT with a field
violation, no idempotency key claimed (the same key then works for a valid request), nothing sent to a
PSP. And amounts reach Stripe in Stripe's own units (ISK with two decimals, JPY with none).

One server process serves the module; it charges through a Stripe sandbox living in this test process,
so the test reads what Stripe was sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import grpc
import pytest

from adapters.sandboxes.stripe_sandbox import StripeSandbox
from payments.v1 import payment_service_pb2 as svc
from payments.v1 import resources_pb2 as res
from server.api.client import PaymentStub, payment_stub
from tests.support.chaos import ServeProcess, client_channel
from tests.support.postgres import PostgresForTests
from tests.support.requests import charge, error_reason, field_violations, sepa_payout

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

INTENTS = "/v1/payment_intents"


class Served:
    def __init__(self, sandbox: StripeSandbox, stub: PaymentStub) -> None:
        self.sandbox = sandbox
        self.stub = stub

    def creates(self) -> list[dict[str, str]]:
        return [dict(parse_qsl(r.body)) for r in self.sandbox.requests() if r.method == "POST" and r.path == INTENTS]


@pytest.fixture(scope="module")
def served(postgres: PostgresForTests, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with StripeSandbox() as sandbox:
        log: Path = tmp_path_factory.mktemp("limits") / "serve.log"
        env = {"PAYMENTS_STRIPE_API_KEY": "sk_test_limits", "PAYMENTS_STRIPE_API_BASE": sandbox.url}
        server = ServeProcess(postgres.new_database(), log, env=env)
        server.start()
        try:
            with client_channel(server.target) as channel:
                yield Served(sandbox, payment_stub(channel))
        finally:
            server.close()


def refused(call: object, *args: object, field: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=30)  # type: ignore[operator]
    error = caught.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert field in field_violations(error), field_violations(error)
    assert error_reason(error)
    return error


BAD_METADATA = [
    ("NUL in a value", {"note": "a\x00b"}, "metadata[note]"),
    ("control character in a value", {"note": "line\x07"}, "metadata[note]"),
    ("square bracket in a key", {"order[1]": "x"}, "metadata"),
    ("the service's own prefix", {"payments.payment_id": "pay_x"}, "metadata"),
    ("50 entries: Stripe's 50 less the service's own", {f"k{n}": "v" for n in range(50)}, "metadata"),
    ("41-character key", {"k" * 41: "v"}, "metadata"),
    ("501-character value", {"note": "v" * 501}, "metadata[note]"),
]


@pytest.mark.parametrize(("case", "metadata", "field"), BAD_METADATA, ids=[c[0] for c in BAD_METADATA])
def test_bad_metadata_is_refused_and_the_key_stays_free(
    served: Served, case: str, metadata: dict[str, str], field: str
) -> None:
    key = f"meta-{abs(hash(case))}"
    sent = len(served.creates())
    refused(served.stub.Charge, charge(key, metadata=metadata), field=field)
    assert len(served.creates()) == sent, "nothing reached the PSP"
    fine = served.stub.Charge(charge(key, metadata={"order": "1"}), timeout=30).payment
    assert fine.status == res.PAYMENT_STATUS_SUCCEEDED


def test_the_largest_metadata_a_caller_may_send_reaches_stripe(served: Served) -> None:
    metadata = {f"k{n}": "v" for n in range(47)}
    request = charge("meta-47", metadata=metadata, customer_id="customer-1")  # all three of the service's keys
    payment = served.stub.Charge(request, timeout=30).payment
    assert payment.status == res.PAYMENT_STATUS_SUCCEEDED
    sent = served.creates()[-1]
    assert sum(1 for name in sent if name.startswith("metadata[")) == 50
    assert sent["metadata[payments.payment_id]"] == payment.id


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


BAD_TOKENS = [
    ("timestamp before year 1 in UTC", _token({"t": "0001-01-01T00:00:00+01:00", "i": "0" * 32, "f": ""})),
    ("timestamp after year 9999 in UTC", _token({"t": "9999-12-31T23:59:59-14:00", "i": "0" * 32, "f": ""})),
    ("an id of the wrong type", _token({"t": "2026-01-01T00:00:00+00:00", "i": 5, "f": ""})),
    ("a list", _token([1, 2, 3])),
    ("naive timestamp", _token({"t": "2026-01-01T00:00:00", "i": "0" * 32, "f": ""})),
    ("not base64", "%%%"),
    ("deeply nested", base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode()),
]


@pytest.mark.parametrize(("case", "token"), BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS])
def test_a_token_the_service_did_not_issue_is_refused(served: Served, case: str, token: str) -> None:
    refused(served.stub.ListPayments, svc.ListPaymentsRequest(page_token=token), field="page_token")


def test_a_real_token_still_pages(served: Served) -> None:
    for n in range(3):
        served.stub.Charge(charge(f"page-{n}"), timeout=30)
    first = served.stub.ListPayments(svc.ListPaymentsRequest(page_size=2), timeout=30)
    assert first.next_page_token
    second = served.stub.ListPayments(svc.ListPaymentsRequest(page_size=2, page_token=first.next_page_token))
    assert {p.id for p in first.payments}.isdisjoint({p.id for p in second.payments})


OUTSIDE_SEPA = ["SA0380000000608010167519", "BR1800360305000010009795493C1", "TR330006100519786457841326"]


@pytest.mark.parametrize("iban", OUTSIDE_SEPA)
def test_an_iban_the_sepa_scheme_does_not_reach_is_refused(served: Served, iban: str) -> None:
    key = f"reach-{iban[:2]}"
    error = refused(served.stub.Payout, sepa_payout(key, iban=iban), field="sepa_account.iban")
    assert error_reason(error) == "IBAN_OUTSIDE_SEPA"
    paid = served.stub.Payout(sepa_payout(key), timeout=30).payout
    assert paid.status in (res.PAYOUT_STATUS_PROCESSING, res.PAYOUT_STATUS_PAID)


@pytest.mark.parametrize(
    ("case", "amount", "currency"),
    [
        ("under Stripe's EUR minimum", 49, "EUR"),
        ("under Stripe's JPY minimum", 49, "JPY"),
        ("over Stripe's eight digits", 100_000_000, "EUR"),
        ("a thousandth Stripe cannot carry", 1005, "KWD"),
        ("a fraction of an ariary", 12345, "MGA"),
    ],
)
def test_an_amount_stripe_refuses_is_refused_before_the_key(
    served: Served, case: str, amount: int, currency: str
) -> None:
    key = f"amount-{currency}-{amount}"
    sent = len(served.creates())
    refused(served.stub.Charge, charge(key, amount=amount, currency=currency), field="amount.amount_minor")
    assert len(served.creates()) == sent
    assert served.stub.Charge(charge(key), timeout=30).payment.status == res.PAYMENT_STATUS_SUCCEEDED


@pytest.mark.parametrize(
    ("currency", "amount_minor", "stripe_amount"),
    [("ISK", 500, "50000"), ("JPY", 500, "500"), ("EUR", 1250, "1250"), ("KWD", 1250, "1250"), ("MGA", 50000, "500")],
)
def test_amounts_reach_stripe_in_stripes_units(
    served: Served, currency: str, amount_minor: int, stripe_amount: str
) -> None:
    """ISK has no minor unit in ISO 4217 but two decimals at Stripe; MGA the other way round."""
    payment = served.stub.Charge(charge(f"units-{currency}", amount=amount_minor, currency=currency), timeout=30)
    assert payment.payment.status == res.PAYMENT_STATUS_SUCCEEDED
    assert payment.payment.amount.amount_minor == amount_minor
    sent = served.creates()[-1]
    assert (sent["currency"], sent["amount"]) == (currency.lower(), stripe_amount)


def test_a_stripe_account_id_stripe_cannot_pay_is_refused_before_the_key(served: Served) -> None:
    payout = svc.PayoutRequest(
        idempotency_key="acct-fix", amount=res.Money(amount_minor=1000, currency="EUR"), stripe_account_id="seller-7"
    )
    refused(served.stub.Payout, payout, field="stripe_account_id")
    payout.stripe_account_id = "acct_seller7"
    assert served.stub.Payout(payout, timeout=30).payout.status == res.PAYOUT_STATUS_PAID
