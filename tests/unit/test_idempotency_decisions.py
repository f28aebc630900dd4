"""The decision table for an existing key (server/domain/idempotency.py `classify`), property by property."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from server.domain.idempotency import (
    Busy,
    KeyRecord,
    Operation,
    Rebuild,
    RecoveryPoint,
    Replay,
    Reused,
    TakeOver,
    classify,
)

FINGERPRINT = b"f" * 32

records = st.builds(
    KeyRecord,
    operation=st.sampled_from([op.value for op in Operation]),
    fingerprint=st.sampled_from([FINGERPRINT, b"g" * 32]),
    recovery_point=st.sampled_from(RecoveryPoint),
    resource_id=st.none() | st.uuids(),
    has_reply=st.booleans(),
    reply_final=st.booleans(),
    lease_left_seconds=st.floats(min_value=-1e6, max_value=1e6),
)


@given(record=records, operation=st.sampled_from(Operation))
def test_another_request_under_the_key_is_always_refused_first(record: KeyRecord, operation: Operation) -> None:
    different = record.operation != operation.value or record.fingerprint != FINGERPRINT
    assert isinstance(classify(record, operation, FINGERPRINT), Reused) == different


@given(record=records)
def test_a_finished_key_is_answered_never_executed_again(record: KeyRecord) -> None:
    decision = classify(record, Operation(record.operation), record.fingerprint)
    if record.recovery_point is RecoveryPoint.FINISHED:
        assert isinstance(decision, (Replay, Rebuild))
    else:
        assert isinstance(decision, (Busy, TakeOver))


@given(record=records)
def test_only_a_final_or_errors_reply_is_replayed_as_stored(record: KeyRecord) -> None:
    decision = classify(record, Operation(record.operation), record.fingerprint)
    if isinstance(decision, Replay):
        assert record.has_reply
        assert record.reply_final or record.resource_id is None
    if isinstance(decision, Rebuild):
        assert decision.resource_id == record.resource_id


@given(record=records)
def test_a_held_lease_is_never_taken_over(record: KeyRecord) -> None:
    decision = classify(record, Operation(record.operation), record.fingerprint)
    if isinstance(decision, TakeOver):
        assert record.recovery_point is RecoveryPoint.STARTED
        assert record.lease_left_seconds <= 0
    if isinstance(decision, Busy):
        assert 0.05 <= decision.retry_after_seconds <= 1.0


def test_the_table_in_order() -> None:
    base = KeyRecord("charge", FINGERPRINT, RecoveryPoint.FINISHED, uuid.uuid4(), True, True, 0.0)
    assert classify(base, Operation.CHARGE, FINGERPRINT) == Replay()
    assert classify(base, Operation.REFUND, FINGERPRINT) == Reused()
    unfinished_state = KeyRecord("charge", FINGERPRINT, RecoveryPoint.FINISHED, base.resource_id, True, False, 0.0)
    assert classify(unfinished_state, Operation.CHARGE, FINGERPRINT) == Rebuild(base.resource_id)
    held = KeyRecord("charge", FINGERPRINT, RecoveryPoint.STARTED, base.resource_id, False, True, 3.0)
    assert classify(held, Operation.CHARGE, FINGERPRINT) == Busy(1.0)
    stopped = KeyRecord("charge", FINGERPRINT, RecoveryPoint.STARTED, base.resource_id, False, True, 0.0)
    assert classify(stopped, Operation.CHARGE, FINGERPRINT) == TakeOver()
