"""When to try a call again, and after how long: pure rules, no I/O, tested without a server.

Only UNAVAILABLE, ABORTED and CANCELLED are retried. They mean "nothing was decided yet": the server or
the PSP was away, or the first request with this idempotency key is still running. CANCELLED because this
library never cancels a call itself (its deadlines end in DEADLINE_EXCEEDED, and an asyncio caller that
cancels its task gets CancelledError, not a status): a CANCELLED status comes from the other side, in
practice from a server that is shutting down, which answers the calls no handler had taken yet with
CANCELLED instead of UNAVAILABLE (grpc/grpc#41785). Every other code is an answer a
retry cannot change (a bad request, a reused key, a refund over what remains), and retrying it would only
delay the caller. Retrying a mutation is safe only because every attempt sends the same idempotency key.

Each attempt also has its own timeout (`attempt_timeout`), shorter than the call's: the server leases an
idempotency key for as long as the attempt that claimed it may run (its deadline plus a margin), so after
a connection drops mid-execution only a retry made after that lease can resume the execution. With one
deadline for everything the lease would outlive the call and every retry would meet
IDEMPOTENCY_KEY_IN_USE. An attempt that hit its own timeout (DEADLINE_EXCEEDED with call time left) is
retried like UNAVAILABLE; the call's deadline is final.

The wait is exponential backoff with full jitter (a uniform draw below the exponential ceiling), so
callers that failed together do not return together. When the server says how long to wait
(google.rpc.RetryInfo), that wins: it knows, for example, how long the first request with the key has
left. The whole logical call is bounded by one deadline: a retry that could not start before it is not
attempted, and every attempt gets only the time that remains.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED})


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a logical call may make, and how long to wait between them.

    `RetryPolicy(max_attempts=1)` turns retries off; `initial_backoff=0` keeps the retries but not the
    waits (for tests). A server's RetryInfo is honoured even then, since it says when a retry can help.
    """

    # Six attempts with these backoffs wait about 1.5 s in all when the server is down (at most 3.1 s),
    # while a key in use (RetryInfo of about 1 s, plus the server's own 1.5 s wait) is retried for ~15 s.
    max_attempts: int = 6
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    attempt_timeout: float | None = 10.0
    # A RetryInfo delay is stretched by up to this fraction, so duplicates told the same delay spread out.
    server_delay_jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ValueError("attempt_timeout must be positive (or None: the call's deadline only)")

    def attempt_deadline(self, remaining: float | None) -> float | None:
        """The timeout of the next attempt: its own, within what remains of the call's."""
        if self.attempt_timeout is None:
            return remaining
        return self.attempt_timeout if remaining is None else min(self.attempt_timeout, remaining)

    def backoff(self, retry: int, draw: Callable[[], float] = _random.random) -> float:
        """The wait before retry number `retry` (1 = the first retry): full jitter below
        min(max_backoff, initial_backoff * multiplier ** (retry - 1)). `draw` returns a float in [0, 1)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return draw() * ceiling

    def next_delay(
        self,
        *,
        attempts: int,
        code: grpc.StatusCode,
        retry_delay: float | None,
        remaining: float | None,
        draw: Callable[[], float] = _random.random,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise.

        `attempts` made so far, `code` the last one's status, `retry_delay` the server's RetryInfo (if
        any), `remaining` the seconds left before the call's deadline (None: no deadline)."""
        attempt_timed_out = code == grpc.StatusCode.DEADLINE_EXCEEDED and (remaining is None or remaining > 0)
        if (code not in RETRYABLE_CODES and not attempt_timed_out) or attempts >= self.max_attempts:
            return None
        if retry_delay is not None:
            delay = retry_delay * (1 + self.server_delay_jitter * draw())
        else:
            delay = self.backoff(attempts, draw)
        if remaining is not None and delay >= remaining:
            return None  # the retry could not even start before the deadline: give the caller the answer now
        return delay


NO_RETRIES = RetryPolicy(max_attempts=1)


class Deadline:
    """The end of one logical call, across all its attempts; `clock` is injectable for tests."""

    def __init__(self, timeout: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None for no deadline)")
        self._clock = clock
        self._end = None if timeout is None else clock() + timeout

    def remaining(self) -> float | None:
        """Seconds left (never below 0), or None without a deadline."""
        return None if self._end is None else max(0.0, self._end - self._clock())

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0
