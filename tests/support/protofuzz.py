"""Hypothesis strategies that build arbitrary protobuf messages from their descriptors.

Arbitrary means hostile: any int64, any unicode, unknown enum numbers, oneofs, maps and nested
messages, so the edge's validation is exercised far beyond hand-written cases.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from payments.v1 import payment_service_pb2 as svc

_INT_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}

# Interesting strings: near-valid values as well as noise.
_TEXT = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "",
            "EUR",
            "JPY",
            "eur",
            "XXX",
            "pm_card_visa",
            "pay_",
            "pay_" + "0" * 32,
            "re_" + "f" * 32,
            "po_" + "1" * 32,
            "DE89370400440532013000",
            "acct_123",
            "4242424242424242",
            "k" * 255,
            "k" * 256,
        ]
    ),
)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in _INT_RANGES:
        low, high = _INT_RANGES[field.type]
        return st.one_of(st.integers(low, high), st.integers(-5, 10**9))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=False, width=32)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)
    raise NotImplementedError(field.type)


def messages(descriptor: Any, message_type: type[Message], depth: int = 0) -> st.SearchStrategy[Message]:
    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = message_type()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            if field.containing_oneof is not None and message.WhichOneof(field.containing_oneof.name):
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                key_field = field.message_type.fields_by_name["key"]
                value_field = field.message_type.fields_by_name["value"]
                entries = draw(st.dictionaries(_scalar(key_field), _scalar(value_field), max_size=60))
                getattr(message, field.name).update(entries)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                if depth > 3:
                    continue
                child_type = type(getattr(message, field.name))
                assert field.message_type is not None
                child = draw(messages(field.message_type, child_type, depth + 1))
                if field.is_repeated:
                    getattr(message, field.name).append(child)
                else:
                    getattr(message, field.name).CopyFrom(child)
            elif field.is_repeated:
                getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=3)))
            else:
                setattr(message, field.name, draw(_scalar(field)))
        return message

    return build()


_METHODS = svc.DESCRIPTOR.services_by_name["PaymentService"].methods
# Unary RPCs answer once; a server-streaming one (WatchEvents) runs until its caller stops it, so the
# fuzz tests call the two kinds differently.
RPC_NAMES: list[str] = [m.name for m in _METHODS if not m.server_streaming]
STREAMING_RPC_NAMES: list[str] = [m.name for m in _METHODS if m.server_streaming]


def any_request(*, streaming: bool = False) -> st.SearchStrategy[tuple[str, Message]]:
    """(RPC name, arbitrary request) for every unary RPC of payments.v1.PaymentService (or every
    server-streaming one), read from the proto."""
    calls = []
    for method in _METHODS:
        if method.server_streaming != streaming:
            continue
        message_type: type[Message] = getattr(svc, method.input_type.name)
        calls.append(st.tuples(st.just(method.name), messages(message_type.DESCRIPTOR, message_type)))
    return st.one_of(*calls)


# Metadata as hostile callers write it: the limits' edges, the PSP's forbidden characters, the service's
# own namespace, NUL and control characters (which PostgreSQL's jsonb refuses), any unicode.
_METADATA_KEY = st.one_of(
    st.text(max_size=45),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=41),
    st.sampled_from(["", "[", "]", "a[b]", "payments.payment_id", "payments.", "k" * 40, "k" * 41, "ö", "\x00"]),
)
_METADATA_VALUE = st.one_of(
    st.text(max_size=510),
    st.sampled_from(["", "\x00", "a\x00b", "\x1f", "\x7f", "v" * 500, "v" * 501, "€" * 500, "\ud7ff"]),
)
METADATA = st.dictionaries(_METADATA_KEY, _METADATA_VALUE, max_size=55)


def page_tokens(real: str) -> st.SearchStrategy[str]:
    """Tokens a caller might send: a real one mutated byte by byte, truncated or extended, and base64 of
    JSON with the right keys but the wrong types or out-of-range values."""
    raw = base64.urlsafe_b64decode(real.encode())

    @st.composite
    def mutated(draw: st.DrawFn) -> str:
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            if data:
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return base64.urlsafe_b64encode(bytes(data)).decode()

    json_value = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=8,
    )
    timestamps = st.one_of(
        st.text(max_size=40),
        st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00"]),
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    )
    forged = st.fixed_dictionaries({"t": timestamps | json_value, "i": st.text(max_size=40) | json_value,
                                    "f": st.text(max_size=20) | json_value})  # fmt: skip
    encoded = forged.map(lambda payload: base64.urlsafe_b64encode(json.dumps(payload).encode()).decode())
    return st.one_of(
        mutated(),
        encoded,
        st.just(real[:-1]),
        st.just(real + "A"),
        st.text(max_size=80),
    )
