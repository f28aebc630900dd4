"""The finality rule: when a PSP's answer is evidence enough to end an operation, and how long to keep
asking when it is not (docs/contract.md, Finality).

Money moves exactly once only if the record never says FAILED for something the PSP may have
executed. A rejection proves nothing about an earlier attempt that may have reached the PSP, and a
refusal of our own credentials proves nothing about the customer's payment. Everything here is pure:
the execution engine, the recovery worker and the status poller ask these functions, so every path
(first attempt, client resume, worker recovery, status poll) follows one rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Rejection(StrEnum):
    """Why the PSP refused a request, as far as finality cares."""

    REQUEST = "request"  # this request is unacceptable to the PSP (a parameter, an unsupported operation)
    CREDENTIALS = "credentials"  # the PSP refused our API key or token: our configuration, not the customer
    KEY_USED = "key_used"  # the PSP already holds a request under this idempotency key: it got there before


class Verdict(StrEnum):
    """What a rejection means for the operation."""

    FAIL = "fail"  # evidence that the PSP did not and will not execute it: record FAILED
    LOOK_UP = "look_up"  # it may have executed: stay in progress and ask the PSP what it holds
    RETRY_LATER = "retry_later"  # no evidence either way: stay in progress, give the key back, alert


def judge_rejection(rejection: Rejection, *, resumed: bool, possibly_executed: bool) -> Verdict:
    """A rejection is a failure only for a request that provably never executed: the key's first
    execution (`resumed` false) in which no attempt could have reached the PSP (`possibly_executed`
    false: no timeout, no lost answer, no 5xx before the rejection)."""
    if rejection is Rejection.CREDENTIALS:
        return Verdict.RETRY_LATER
    if rejection is Rejection.KEY_USED or resumed or possibly_executed:
        return Verdict.LOOK_UP
    return Verdict.FAIL


def may_resend(key_age_seconds: float, psp_key_ttl_seconds: float) -> bool:
    """Whether the create may be sent again under the same PSP idempotency key.

    Past the PSP's key lifetime the PSP no longer recognises the key, so a resend would execute a
    second time: from then on the operation is only looked up (by PSP id or by our metadata).
    """
    return key_age_seconds < psp_key_ttl_seconds


def still_looking(key_age_seconds: float, lookup_window_seconds: float) -> bool:
    """Whether recovery keeps resuming an operation; past the PSP's look-up window without an answer it
    goes to REQUIRES_RECONCILIATION (still re-checked, never FAILED without evidence)."""
    return key_age_seconds < lookup_window_seconds


@dataclass(frozen=True, slots=True)
class RecoverySchedule:
    """When an operation without a final answer is tried again, budgeted by time, not by a count.

    Client retries may resume it whenever they like; these delays pace the recovery worker. The first
    `idle_seconds` leave a released operation to its own client; then the delay doubles from
    `first_seconds`, capped at `early_cap_seconds` while the key is younger than `early_period_seconds`
    (an outage of minutes ends with every operation final within a cap of the PSP's return), and at
    `late_cap_seconds` afterwards.
    """

    idle_seconds: float = 5.0
    first_seconds: float = 1.0
    early_cap_seconds: float = 30.0
    early_period_seconds: float = 3600.0
    late_cap_seconds: float = 300.0
    reconciliation_recheck_seconds: float = 86400.0  # REQUIRES_RECONCILIATION is looked up again daily

    def delay(self, executions: int, key_age_seconds: float) -> float:
        """Seconds until the recovery worker resumes a key after its `executions`-th execution stopped."""
        cap = self.early_cap_seconds if key_age_seconds < self.early_period_seconds else self.late_cap_seconds
        backoff = min(cap, self.first_seconds * 2.0 ** min(max(executions - 1, 0), 32))
        return max(self.idle_seconds, backoff)
