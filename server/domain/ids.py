"""Public resource ids: a type prefix and the 32 hex digits of a UUID ("pay_1f0c…").

The prefix makes a pasted id self-describing and lets `payments get ID` route to the right RPC; the
UUID is what PostgreSQL stores.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from enum import StrEnum

from server.domain.states import ResourceType


class IdKind(StrEnum):
    PAYMENT = "pay"
    REFUND = "re"
    PAYOUT = "po"


_KIND_OF_RESOURCE = {ResourceType.PAYMENT: IdKind.PAYMENT, ResourceType.REFUND: IdKind.REFUND,
                     ResourceType.PAYOUT: IdKind.PAYOUT}  # fmt: skip


def id_kind(resource_type: ResourceType) -> IdKind:
    return _KIND_OF_RESOURCE[resource_type]


_PATTERN = re.compile(r"^(pay|re|po)_([0-9a-f]{32})$")


class MalformedId(ValueError):
    """Not an id this service issues."""


def uuid7(unix_ms: int, random_bits: int) -> uuid.UUID:
    """A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, the version, 12 random bits, the
    variant, 62 random bits (taken from the low 74 bits of `random_bits`)."""
    rand_a = (random_bits >> 62) & 0xFFF
    rand_b = random_bits & ((1 << 62) - 1)
    return uuid.UUID(int=(unix_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b)


def new_id() -> uuid.UUID:
    """A new resource id: time-ordered, so rows created together sit together in every index keyed by
    id. Random ids would insert into a random page of an index that has outgrown memory, making each
    write cost more as the tables grow. (The creation time it reveals is part of the resource anyway.)
    """
    return uuid7(time.time_ns() // 1_000_000, int.from_bytes(os.urandom(10), "big"))


def format_id(kind: IdKind, value: uuid.UUID) -> str:
    return f"{kind.value}_{value.hex}"


def parse_id(kind: IdKind, text: str) -> uuid.UUID:
    match = _PATTERN.match(text)
    if match is None or match.group(1) != kind.value:
        raise MalformedId(f"expected an id like {kind.value}_<32 hex digits>")
    return uuid.UUID(hex=match.group(2))


def kind_of(text: str) -> IdKind:
    match = _PATTERN.match(text)
    if match is None:
        raise MalformedId("expected an id like pay_…, re_… or po_… followed by 32 hex digits")
    return IdKind(match.group(1))
