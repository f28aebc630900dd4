"""The client's retry rules (payments_client.retry), without I/O: which codes, how long, and the deadline."""

from __future__ import annotations

import grpc
import pytest

from payments_client.retry import RETRYABLE_CODES, Deadline, RetryPolicy

POLICY = RetryPolicy(max_attempts=5, initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)


def top() -> float:
    return 0.999999


def test_only_unavailable_aborted_cancelled_and_an_attempts_own_timeout_are_retried() -> None:
    codes = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED})
    assert codes == RETRYABLE_CODES
    retried = {*RETRYABLE_CODES, grpc.StatusCode.DEADLINE_EXCEEDED}
    for code in grpc.StatusCode:
        delay = POLICY.next_delay(attempts=1, code=code, retry_delay=None, remaining=5.0, draw=top)
        assert (delay is not None) == (code in retried), code


def test_the_calls_own_deadline_is_final() -> None:
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    assert POLICY.next_delay(attempts=1, code=code, retry_delay=None, remaining=0.0, draw=top) is None


def test_each_attempt_gets_its_own_timeout_within_the_calls() -> None:
    policy = RetryPolicy(attempt_timeout=2.0)
    assert policy.attempt_deadline(10.0) == 2.0
    assert policy.attempt_deadline(0.5) == 0.5
    assert policy.attempt_deadline(None) == 2.0
    assert RetryPolicy(attempt_timeout=None).attempt_deadline(7.0) == 7.0


def test_backoff_is_full_jitter_below_an_exponential_ceiling() -> None:
    ceilings = [POLICY.backoff(retry, draw=lambda: 1.0) for retry in range(1, 7)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert POLICY.backoff(3, draw=lambda: 0.0) == 0.0
    assert POLICY.backoff(3, draw=lambda: 0.5) == pytest.approx(0.2)


def test_gives_up_after_max_attempts() -> None:
    delays = [
        POLICY.next_delay(attempts=n, code=grpc.StatusCode.UNAVAILABLE, retry_delay=None, remaining=None, draw=top)
        for n in range(1, 7)
    ]
    assert [d is not None for d in delays] == [True, True, True, True, False, False]


def test_server_retry_info_wins_and_is_spread_a_little() -> None:
    low = POLICY.next_delay(attempts=1, code=grpc.StatusCode.ABORTED, retry_delay=2.0, remaining=None, draw=lambda: 0)
    high = POLICY.next_delay(attempts=1, code=grpc.StatusCode.ABORTED, retry_delay=2.0, remaining=None, draw=top)
    assert low == 2.0, "never sooner than the server asked, even above max_backoff"
    assert high == pytest.approx(2.4, rel=1e-3)


def test_no_retry_that_could_not_start_before_the_deadline() -> None:
    code = grpc.StatusCode.UNAVAILABLE
    assert POLICY.next_delay(attempts=1, code=code, retry_delay=0.5, remaining=0.4, draw=lambda: 0) is None
    assert POLICY.next_delay(attempts=1, code=code, retry_delay=0.5, remaining=0.6, draw=lambda: 0) == 0.5
    assert POLICY.next_delay(attempts=1, code=code, retry_delay=None, remaining=0.0, draw=lambda: 0) is None


def test_switches() -> None:
    assert RetryPolicy(max_attempts=1).next_delay(
        attempts=1, code=grpc.StatusCode.UNAVAILABLE, retry_delay=None, remaining=None
    ) is None  # fmt: skip
    assert RetryPolicy(initial_backoff=0).backoff(4) == 0.0
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_deadline_counts_down_across_attempts() -> None:
    now = [100.0]
    deadline = Deadline(2.0, clock=lambda: now[0])
    assert deadline.remaining() == 2.0
    now[0] = 101.5
    assert deadline.remaining() == pytest.approx(0.5)
    now[0] = 103.0
    assert deadline.remaining() == 0.0
    assert deadline.expired()
    assert Deadline(None).remaining() is None
    with pytest.raises(ValueError, match="positive"):
        Deadline(0)
