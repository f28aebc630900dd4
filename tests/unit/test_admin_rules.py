"""The admin service's pure rules: who may call it, page tokens, and request validation."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from payments.admin.v1 import admin_service_pb2 as admin_pb
from server.api import admin_validation
from server.app.admin import decode_page_token, encode_page_token
from server.app.psp import OutcomeKind
from server.config import ConfigError, Settings
from server.domain.errors import InvalidRequest
from server.domain.states import ResourceType

CURSOR = (datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), uuid.UUID(int=7))


def test_admin_clients_come_from_a_comma_separated_list() -> None:
    assert Settings.from_env({}).admin_clients == ()
    assert Settings.from_env({"PAYMENTS_ADMIN_CLIENTS": " ops, default ,"}).admin_clients == ("ops", "default")
    with pytest.raises(ConfigError, match="PAYMENTS_ADMIN_CLIENTS"):
        Settings.from_env({"PAYMENTS_ADMIN_CLIENTS": "ops team"})


def test_page_tokens_round_trip_and_are_bound_to_their_filters() -> None:
    token = encode_page_token(CURSOR, 900.0, None)
    assert decode_page_token(token, 900.0, None) == CURSOR
    assert decode_page_token("", 900.0, None) is None
    with pytest.raises(InvalidRequest):
        decode_page_token(token, 60.0, None)
    with pytest.raises(InvalidRequest):
        decode_page_token(token, 900.0, "shop")


@pytest.mark.parametrize(
    "payload",
    [b"garbage", b"[]", b"null", b'{"t": 1, "i": 2, "f": 3}', b'{"t": "2024-05-01T12:00:00+00:00", "i": 1, "f": ""}',
     b'{"t": "2024-05-01T12:00:00", "i": "' + b"0" * 32 + b'", "f": ""}'],
)  # fmt: skip
def test_foreign_page_tokens_are_invalid_arguments(payload: bytes) -> None:
    with pytest.raises(InvalidRequest):
        decode_page_token(base64.urlsafe_b64encode(payload).decode(), 900.0, None)
    with pytest.raises(InvalidRequest):
        decode_page_token(json.dumps("é"), 900.0, None)


def test_a_resolve_request_becomes_a_command_or_every_violation_at_once() -> None:
    stamp = timestamp_pb2.Timestamp(seconds=1714564800, nanos=123456000)
    command = admin_validation.resolve_command(admin_pb.ResolveOperationRequest(
        id="re_" + "a" * 32, outcome=admin_pb.RESOLVE_OUTCOME_FAILED, reason=" no refund at the PSP ",
        expected_update_time=stamp,
    ))  # fmt: skip
    assert command.ref.resource_type is ResourceType.REFUND
    assert command.outcome is OutcomeKind.FAILED
    assert command.reason == "no refund at the PSP"
    assert command.psp_reference is None
    assert command.expected_update_time == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    with pytest.raises(InvalidRequest) as caught:
        admin_validation.resolve_command(admin_pb.ResolveOperationRequest(
            id="pay_x", outcome=admin_pb.ResolveOutcome.ValueType(9), reason="a\nb", psp_reference="é",
            expected_update_time=timestamp_pb2.Timestamp(seconds=10**15),
        ))  # fmt: skip
    assert [v.field for v in caught.value.violations] == [
        "id", "outcome", "reason", "psp_reference", "expected_update_time"
    ]  # fmt: skip


def test_a_listing_request_is_bounded() -> None:
    assert admin_validation.stuck_listing(admin_pb.ListStuckOperationsRequest()).older_than_seconds is None
    zero = admin_pb.ListStuckOperationsRequest(older_than=duration_pb2.Duration(seconds=0))
    assert admin_validation.stuck_listing(zero).older_than_seconds == 0.0
    for bad in (duration_pb2.Duration(seconds=-1), duration_pb2.Duration(seconds=2**62)):
        with pytest.raises(InvalidRequest):
            admin_validation.stuck_listing(admin_pb.ListStuckOperationsRequest(older_than=bad))


@pytest.mark.parametrize(
    "payload",
    [{"t": "0001-01-01T00:00:00+05:00", "i": "0" * 32}, {"t": "2024-05-01T12:00:00+00:00", "i": "x" * 32},
     {"t": "2024-05-01T12:00:00+00:00", "i": "0" * 32, "extra": 1}],
)  # fmt: skip
def test_forged_page_tokens_with_the_right_digest_are_still_refused(payload: dict[str, object]) -> None:
    digest = json.loads(base64.urlsafe_b64decode(encode_page_token(CURSOR, 900.0, None)))["f"]
    token = base64.urlsafe_b64encode(json.dumps({**payload, "f": digest}).encode()).decode()
    with pytest.raises(InvalidRequest):
        decode_page_token(token, 900.0, None)
