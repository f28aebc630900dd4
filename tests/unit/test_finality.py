"""The finality rule and the recovery schedule: pure, so every case is checked without I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.domain.finality import (
    RecoverySchedule,
    Rejection,
    Verdict,
    judge_rejection,
    may_resend,
    still_looking,
)


@given(resumed=st.booleans(), possibly_executed=st.booleans())
def test_credentials_are_never_the_customers_failure(resumed: bool, possibly_executed: bool) -> None:
    verdict = judge_rejection(Rejection.CREDENTIALS, resumed=resumed, possibly_executed=possibly_executed)
    assert verdict is Verdict.RETRY_LATER


@given(resumed=st.booleans(), possibly_executed=st.booleans())
def test_a_used_key_is_always_looked_up(resumed: bool, possibly_executed: bool) -> None:
    verdict = judge_rejection(Rejection.KEY_USED, resumed=resumed, possibly_executed=possibly_executed)
    assert verdict is Verdict.LOOK_UP


@given(rejection=st.sampled_from(Rejection), resumed=st.booleans(), possibly_executed=st.booleans())
def test_fail_only_for_a_request_that_provably_never_executed(
    rejection: Rejection, resumed: bool, possibly_executed: bool
) -> None:
    verdict = judge_rejection(rejection, resumed=resumed, possibly_executed=possibly_executed)
    provably_never_executed = rejection is Rejection.REQUEST and not resumed and not possibly_executed
    assert (verdict is Verdict.FAIL) == provably_never_executed


def test_resends_stop_at_the_psps_key_lifetime() -> None:
    assert may_resend(0.0, 82800.0)
    assert may_resend(82799.0, 82800.0)
    assert not may_resend(82800.0, 82800.0)
    assert still_looking(29 * 86400.0, 30 * 86400.0)
    assert not still_looking(30 * 86400.0, 30 * 86400.0)


def test_the_schedule_doubles_from_one_second_to_the_caps() -> None:
    schedule = RecoverySchedule(idle_seconds=0.0)
    assert [schedule.delay(n, 10.0) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert schedule.delay(20, 3599.0) == 30.0
    assert schedule.delay(20, 3600.0) == 300.0


@given(executions=st.integers(min_value=0, max_value=10_000), age=st.floats(min_value=0, max_value=1e9))
def test_every_delay_is_bounded_and_leaves_the_client_its_idle_time(executions: int, age: float) -> None:
    schedule = RecoverySchedule()
    delay = schedule.delay(executions, age)
    assert schedule.idle_seconds <= delay <= schedule.late_cap_seconds
    if age < schedule.early_period_seconds:
        assert delay <= max(schedule.idle_seconds, schedule.early_cap_seconds)


def test_an_outage_of_five_minutes_ends_within_a_minute_of_the_psps_return() -> None:
    """Whatever the number of executions, the next try after the PSP is back comes within the early cap."""
    schedule = RecoverySchedule()
    worst_wait = max(schedule.delay(n, age) for n in range(1, 200) for age in (0.0, 60.0, 300.0, 600.0))
    assert worst_wait <= 30.0
