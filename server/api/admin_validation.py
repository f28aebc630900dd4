"""Validation of payments.admin.v1 requests at the edge: a request becomes the use case's input, or
INVALID_ARGUMENT with every field violation at once. Bounds keep caller input away from errors deeper
down (an interval PostgreSQL cannot represent, a timestamp Python cannot), which would be INTERNAL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from payments.admin.v1 import admin_service_pb2 as admin_pb
from server.app.admin import ResolveCommand, StuckListing
from server.app.admin_port import ResourceRef
from server.app.psp import OutcomeKind
from server.domain.errors import Violations
from server.domain.ids import IdKind, MalformedId, kind_of, parse_id
from server.domain.states import ResourceType

MAX_OLDER_THAN_SECONDS = 3650 * 86400  # ten years: older than anything this service has stored
MAX_PAGE_TOKEN = 1024
MAX_CLIENT_ID = 255
MAX_REASON = 500
MAX_PSP_REFERENCE = 255

_CONTROL = re.compile("[\x00-\x1f\x7f]")
_RESOURCE_TYPES = {IdKind.PAYMENT: ResourceType.PAYMENT, IdKind.REFUND: ResourceType.REFUND,
                   IdKind.PAYOUT: ResourceType.PAYOUT}  # fmt: skip
_OUTCOMES = {
    admin_pb.RESOLVE_OUTCOME_SUCCEEDED: OutcomeKind.SUCCEEDED,
    admin_pb.RESOLVE_OUTCOME_FAILED: OutcomeKind.FAILED,
    admin_pb.RESOLVE_OUTCOME_RETURNED: OutcomeKind.RETURNED,
}


def _ref(v: Violations, text: str) -> ResourceRef | None:
    if not text:
        v.add("id", "is required", "MISSING_FIELD")
        return None
    try:
        kind = kind_of(text)
        return ResourceRef(_RESOURCE_TYPES[kind], parse_id(kind, text))
    except MalformedId as exc:
        v.add("id", str(exc), "MALFORMED_ID")
        return None


def resource_ref(text: str) -> ResourceRef:
    """A pay_/re_/po_ id of any client; malformed is INVALID_ARGUMENT (unknown is NOT_FOUND later)."""
    v = Violations()
    ref = _ref(v, text)
    v.raise_if_any()
    assert ref is not None
    return ref


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def stuck_listing(req: admin_pb.ListStuckOperationsRequest) -> StuckListing:
    v = Violations()
    older_than: float | None = None
    if req.HasField("older_than"):
        older_than = req.older_than.seconds + req.older_than.nanos / 1e9
        if older_than < 0:
            v.add("older_than", "must not be negative", "INVALID_FIELD")
        elif older_than > MAX_OLDER_THAN_SECONDS:
            v.add("older_than", "must be at most ten years", "INVALID_FIELD")
    if req.page_size < 0:
        v.add("page_size", "must not be negative", "INVALID_FIELD")
    if len(req.page_token) > MAX_PAGE_TOKEN:
        v.add("page_token", "is not a token this listing issued", "INVALID_PAGE_TOKEN")
    if len(req.client_id) > MAX_CLIENT_ID or (req.client_id and not _printable_ascii(req.client_id)):
        v.add("client_id", f"must be at most {MAX_CLIENT_ID} printable ASCII characters", "INVALID_FIELD")
    v.raise_if_any()
    return StuckListing(older_than, req.page_size, req.page_token, req.client_id or None)


def _timestamp(v: Violations, req: admin_pb.ResolveOperationRequest) -> datetime | None:
    if not req.HasField("expected_update_time"):
        v.add("expected_update_time", "is required: the update_time of the operation as last seen", "MISSING_FIELD")
        return None
    stamp = req.expected_update_time
    try:
        if not 0 <= stamp.nanos < 1_000_000_000:
            raise ValueError("nanos out of range")
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        v.add("expected_update_time", "is not a valid timestamp", "INVALID_FIELD")
        return None


def resolve_command(req: admin_pb.ResolveOperationRequest) -> ResolveCommand:
    v = Violations()
    ref = _ref(v, req.id)
    outcome = _OUTCOMES.get(req.outcome)
    if req.outcome == admin_pb.RESOLVE_OUTCOME_UNSPECIFIED:
        v.add("outcome", "is required", "MISSING_FIELD")
    elif outcome is None:
        v.add("outcome", "is not a resolve outcome", "INVALID_ENUM")
    reason = req.reason.strip()
    if not reason:
        v.add("reason", "is required: why the operator resolves it this way", "MISSING_FIELD")
    elif len(reason) > MAX_REASON:
        v.add("reason", f"must be at most {MAX_REASON} characters", "FIELD_TOO_LONG")
    elif _CONTROL.search(reason):
        v.add("reason", "must not contain control characters", "INVALID_CHARACTERS")
    reference = req.psp_reference
    if len(reference) > MAX_PSP_REFERENCE or (reference and not _printable_ascii(reference)):
        v.add("psp_reference", f"must be at most {MAX_PSP_REFERENCE} printable ASCII characters", "INVALID_FIELD")
    expected = _timestamp(v, req)
    v.raise_if_any()
    assert ref is not None
    assert outcome is not None
    assert expected is not None
    return ResolveCommand(ref, outcome, reference or None, reason, expected)
