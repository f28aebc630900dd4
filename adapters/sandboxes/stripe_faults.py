"""How the offline Stripe sandbox answers injected faults, in Stripe's words.

The faults themselves (kinds, scripted and random plans) are shared with the bank sandbox
(``faults``); what Stripe says for each answering fault is Stripe's own: its error types and codes,
``Retry-After`` and ``Stripe-Should-Retry``. None of these answers executes or stores anything.
"""

from __future__ import annotations

from adapters.sandboxes.faults import DEFAULT_RETRY_AFTER_SECONDS, DEFAULT_STALL_SECONDS, Fault, FaultKind
from adapters.sandboxes.stripe_api import ApiRequest, Reply
from adapters.sandboxes.stripe_wire import error_body, json_bytes

ANSWERING_FAULTS = frozenset({FaultKind.HTTP_500, FaultKind.HTTP_429, FaultKind.LOCK_TIMEOUT, FaultKind.HTTP_409})
_RATE_LIMITED = "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
_LOCK_TIMEOUT = (
    "This object cannot be accessed right now because another API request or Stripe process is "
    "currently accessing it. If you see this error intermittently, retry the request."
)
_CONFLICT = "The request conflicts with another request (perhaps due to using the same idempotent key)."


def fault_reply(fault: Fault, request: ApiRequest) -> Reply:
    """The answer of an answering fault; none of them executes or stores anything."""
    headers = [("Content-Type", "application/json"), ("Request-Id", request.request_id)]
    if fault.kind is FaultKind.HTTP_500:
        status, error = 500, error_body("api_error", "An unknown error occurred")
    elif fault.kind is FaultKind.HTTP_409:
        status, error = 409, error_body("invalid_request_error", _CONFLICT)
        headers.append(("Stripe-Should-Retry", "true"))
    elif fault.kind is FaultKind.LOCK_TIMEOUT:
        status, error = 429, error_body("invalid_request_error", _LOCK_TIMEOUT, code="lock_timeout")
        headers += [("Stripe-Should-Retry", "true"), ("Retry-After", str(fault.retry_after))]
    else:
        status, error = 429, error_body("invalid_request_error", _RATE_LIMITED, code="rate_limit")
        headers.append(("Retry-After", str(fault.retry_after)))
    return Reply(status, json_bytes({"error": error}), headers)


def make_fault(kind: FaultKind | str, *, retry_after: int | None = None, stall_seconds: float | None = None) -> Fault:
    """Validate fault settings from Python or JSON; raises ValueError for nonsense."""
    if retry_after is not None and retry_after < 0:
        raise ValueError("retry_after must be zero or more seconds")
    if stall_seconds is not None and stall_seconds < 0:
        raise ValueError("stall_seconds must be zero or more")
    return Fault(
        FaultKind(kind),
        DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else retry_after,
        DEFAULT_STALL_SECONDS if stall_seconds is None else stall_seconds,
    )
