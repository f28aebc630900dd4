"""Page tokens of keyset listings (AIP-158): a cursor (time, id) plus a digest of the listing's filters.

Anyone can forge a token (it is not signed), so every decoded field is checked for its type and range
before it reaches SQL; a bad token, or one issued for other filters, is INVALID_ARGUMENT. One module for
every listing (payments, the operator's stuck operations).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime

from server.domain.errors import FieldViolation, InvalidRequest

Cursor = tuple[datetime, uuid.UUID]


def filter_digest(*filters: object) -> str:
    """A short digest of the listing's filters: a token only continues the listing it came from."""
    text = "\x00".join("" if value is None else repr(value) for value in filters)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode(cursor: Cursor, digest: str) -> str:
    payload = {"t": cursor[0].isoformat(), "i": cursor[1].hex, "f": digest}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode(token: str, digest: str) -> Cursor | None:
    """The cursor in `token` (None for no token: the first page)."""
    if not token:
        return None
    bad = _bad_token()
    payload = _payload(token, {"t", "i", "f"})
    at_text, ident, token_digest = payload["t"], payload["i"], payload["f"]
    if not (isinstance(at_text, str) and isinstance(ident, str) and isinstance(token_digest, str)):
        raise bad
    if len(at_text) > 40 or len(ident) != 32 or token_digest != digest:
        raise bad
    try:
        at = datetime.fromisoformat(at_text)
        # Aware, and still a valid timestamp once in UTC (an offset can push year 1 or 9999 out of range).
        cursor = (at.astimezone(UTC), uuid.UUID(hex=ident)) if at.tzinfo is not None else None
    except (ValueError, OverflowError):
        raise bad from None
    if cursor is None:
        raise bad
    return cursor


def encode_position(position: str, digest: str) -> str:
    """A token for a listing whose cursor is an opaque position (the event feed's event id)."""
    payload = {"p": position, "f": digest}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_position(token: str, digest: str) -> str | None:
    """The position in `token` (None for no token: the first page); the listing checks the position."""
    if not token:
        return None
    bad = _bad_token()
    payload = _payload(token, {"p", "f"})
    position, token_digest = payload["p"], payload["f"]
    if not isinstance(position, str) or not isinstance(token_digest, str) or token_digest != digest:
        raise bad
    if len(position) > 64:
        raise bad
    return position


def _bad_token() -> InvalidRequest:
    return InvalidRequest([FieldViolation("page_token", "is not a token this listing issued", "INVALID_PAGE_TOKEN")])


def _payload(token: str, keys: set[str]) -> dict[str, object]:
    """The token's JSON object with exactly these keys, or INVALID_ARGUMENT."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeError, RecursionError):
        raise _bad_token() from None
    if not isinstance(payload, dict) or set(payload) != keys:
        raise _bad_token()
    return payload
