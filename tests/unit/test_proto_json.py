"""server/api/proto_json.py must read exactly what json_format.ParseDict reads, only faster."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from payments.v1 import resources_pb2 as res
from server.api import proto_json


def _time(seconds: int, nanos: int) -> Any:
    return {"seconds": seconds, "nanos": nanos}


FAILURE = res.Failure(code="card_declined", message="The card was declined.", decline_code="insufficient_funds")
# fmt: off
SHAPES: list[Message] = [
    res.Payment(
        id="pay_0194f0c1a2b37c4d8e9f0a1b2c3d4e5f", status=res.PAYMENT_STATUS_SUCCEEDED,
        amount=res.Money(amount_minor=9_007_199_254_740_993, currency="EUR"), amount_refunded=res.Money(currency="EUR"),
        customer_id="cus_1", description="ünïcode ✓", metadata={"order": "42", "empty": ""}, psp="stripe",
        psp_reference="pi_1", failure=FAILURE, create_time=_time(1_764_504_000, 0),
        update_time=_time(1_764_504_000, 123_000_000), capture_method=res.CAPTURE_METHOD_MANUAL,
        amount_capturable=res.Money(amount_minor=1, currency="JPY"), capturable_until=_time(1_765_000_000, 123_456_000),
        amount_captured=res.Money(amount_minor=0, currency="EUR"), cancellation_reason="abandoned",
    ),
    res.Payment(id="pay_1", create_time=_time(0, 1)),  # nine fractional digits, the epoch
    res.Payment(),
    res.Refund(
        id="re_1", payment_id="pay_1", status=res.REFUND_STATUS_FAILED,
        amount=res.Money(amount_minor=5, currency="ISK"), reason="duplicate", psp="stripe", psp_reference="re_x",
        failure=FAILURE, create_time=_time(1_764_504_000, 5_000), update_time=_time(1_764_504_001, 0),
    ),
    res.Payout(
        id="po_1", status=res.PAYOUT_STATUS_RETURNED, amount=res.Money(amount_minor=2500, currency="EUR"),
        sepa_account=res.SepaAccount(iban="DE****3000", bic="COBADEFFXXX", name="Müller GmbH",
                                     address=res.PostalAddress(country="DE", town="Berlin")),
        instant=True, reference="May payout", psp="bank", psp_reference="E2E-1", create_time=_time(1, 0),
    ),
    res.Payout(id="po_2", status=res.PAYOUT_STATUS_PAID, stripe_account_id="acct_1", instant=False),
    res.Payout(id="po_3", sepa_account=res.SepaAccount()),  # a set but empty oneof member
]
# fmt: on


@pytest.mark.parametrize("message", SHAPES, ids=lambda m: f"{m.DESCRIPTOR.name}:{getattr(m, 'id', '')}")
def test_reads_what_protobuf_writes_as_parse_dict_does(message: Message) -> None:
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    fast = proto_json.parse(data, type(message)())
    assert fast == json_format.ParseDict(data, type(message)(), ignore_unknown_fields=True)
    assert fast == message
    assert fast.SerializeToString(deterministic=True) == message.SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    "data",
    [
        {"id": "pay_1", "a_field_from_a_newer_release": {"x": 1}},  # unknown fields are ignored
        {"id": "pay_1", "status": "PAYMENT_STATUS_FROM_THE_FUTURE"},  # an unknown enum name, too
        {"id": "pay_1", "create_time": "2026-11-30T13:00:00+01:00"},  # an offset: json_format reads it
        {"id": "pay_1", "create_time": "2026-11-30T12:00:00.5Z"},  # one digit: not protobuf's own form
        {"amount": {"amount_minor": 12, "currency": "EUR"}},  # a number where protobuf writes a string
    ],
)
def test_shapes_outside_the_fast_path_give_what_parse_dict_gives(data: dict[str, Any]) -> None:
    assert proto_json.parse(data, res.Payment()) == json_format.ParseDict(
        data, res.Payment(), ignore_unknown_fields=True
    )


def test_malformed_input_fails_as_parse_dict_fails() -> None:
    with pytest.raises(json_format.ParseError):
        proto_json.parse({"amount": {"amount_minor": "twelve"}}, res.Payment())
