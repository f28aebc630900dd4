"""The reply encoder's own conversions agree with protobuf's reference ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from server.api.convert import timestamp_pb
from server.api.validation import _printable


@given(
    st.datetimes(  # naive bounds (as hypothesis wants), one day inside the range every offset keeps valid
        min_value=datetime(1, 1, 2, tzinfo=UTC).replace(tzinfo=None),
        max_value=datetime(9999, 12, 30, tzinfo=UTC).replace(tzinfo=None),
    ),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_timestamps_match_from_datetime(naive: datetime, offset_minutes: int) -> None:
    at = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    reference = timestamp_pb2.Timestamp()
    reference.FromDatetime(at)
    assert timestamp_pb(at) == reference
    assert timestamp_pb(at).ToDatetime(tzinfo=UTC) == at


@given(st.text(max_size=20))
def test_printable_means_ascii_0x20_to_0x7e(text: str) -> None:
    assert _printable(text) == all(0x20 <= ord(ch) <= 0x7E for ch in text)
