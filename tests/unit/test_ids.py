"""Resource ids: time-ordered UUIDs behind a type prefix."""

from __future__ import annotations

import time
import uuid

from server.domain.ids import new_id, uuid7


def test_resource_ids_are_time_ordered_uuid7() -> None:
    made = uuid7(0x0192_3456_789A, (1 << 80) - 1)
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert made.int >> 80 == 0x0192_3456_789A
    assert uuid7(1, 0) < uuid7(2, (1 << 80) - 1), "a later millisecond always sorts after"
    first, second = new_id(), new_id()
    assert first.version == 7
    assert abs((first.int >> 80) - time.time_ns() // 1_000_000) < 60_000
    assert first != second
