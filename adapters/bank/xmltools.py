"""lxml plumbing shared by the pain.001 and pain.002 modules: safe parsing, XSD validation, money and
timestamp rendering.

Why one module: lxml ships no type stubs and ``lxml-stubs`` is not a dependency, so the single
untyped import lives here and everything else imports ``etree`` from this module. Every parse goes
through :func:`parse_xml`, which never resolves entities, loads DTDs or touches the network — the bank
sandbox parses untrusted bodies with it.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

from lxml import etree

from adapters.bank.errors import DocumentError, SchemaValidationError

__all__ = [
    "Element",
    "XmlSchema",
    "etree",
    "format_datetime",
    "format_minor",
    "mask_ibans_in_text",
    "parse_datetime",
    "parse_minor",
    "parse_xml",
    "serialize",
]

Element: TypeAlias = Any
"""An ``lxml.etree._Element`` (untyped: lxml ships no stubs)."""

# IBAN-shaped tokens (country code, 2 check digits, 11-30 alphanumerics, any case, compact or grouped
# by fours). Used to scrub free text such as lxml's schema errors, which quote values verbatim.
_IBAN_LIKE = re.compile(r"\b[A-Za-z]{2}[0-9]{2}(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)\b")


def mask_ibans_in_text(text: str) -> str:
    """Replace every IBAN-looking token in ``text`` with country code + ``****`` + last 4 characters.

    Why: error messages and logs must never contain a full IBAN (design §7), yet XML tooling quotes
    element values in its diagnostics.
    """

    def mask(match: re.Match[str]) -> str:
        compact = match.group(0).replace(" ", "").upper()
        return f"{compact[:2]}****{compact[-4:]}"

    return _IBAN_LIKE.sub(mask, text)


def parse_xml(data: bytes) -> Element:
    """Parse ``data`` into an element tree without entity expansion, DTD loading or network access.

    Raises :class:`DocumentError` for malformed input or a document that declares a DTD.
    """
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise DocumentError(f"malformed XML: {mask_ibans_in_text(str(exc))}") from exc
    if root.getroottree().docinfo.doctype:
        raise DocumentError("malformed XML: DOCTYPE declarations are not accepted")
    return root


def serialize(root: Element) -> bytes:
    """Serialize an element tree as UTF-8 with an XML declaration (stable bytes for equal trees)."""
    body: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


class XmlSchema:
    """A compiled XSD, loaded lazily once and safe to share between threads.

    Why the lock: lxml documents its validators as not safe for concurrent use of one instance;
    validation of a single payment file takes well under a millisecond, so serialising is cheap.
    """

    def __init__(self, name: str, source: bytes) -> None:
        self.name = name
        self._source = source
        self._schema: Element | None = None
        self._lock = threading.Lock()

    def validate(self, data: bytes) -> Element:
        """Parse and validate ``data``; return the root element or raise.

        Raises :class:`DocumentError` for malformed XML and :class:`SchemaValidationError` (with
        IBANs masked) for schema violations.
        """
        root = parse_xml(data)
        with self._lock:
            if self._schema is None:
                self._schema = etree.XMLSchema(etree.fromstring(self._source))
            if self._schema.validate(root):
                return root
            errors = tuple(
                mask_ibans_in_text(f"line {entry.line}: {entry.message}") for entry in self._schema.error_log
            )
        raise SchemaValidationError(self.name, errors or ("document does not match the schema",))


def format_minor(amount_minor: int) -> str:
    """Render integer minor units as a two-decimal string (``1`` → ``"0.01"``) without floats."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("amounts are integer minor units")
    if amount_minor < 0:
        raise ValueError("amounts in SEPA messages are never negative")
    units, cents = divmod(amount_minor, 100)
    return f"{units}.{cents:02d}"


def parse_minor(text: str) -> int:
    """Parse an ISO 20022 decimal amount (at most 2 fraction digits) into integer minor units.

    Uses :class:`decimal.Decimal`, never float; raises :class:`DocumentError` for anything that is
    not a non-negative amount representable in cents.
    """
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise DocumentError(f"invalid amount {text!r}") from exc
    if not value.is_finite() or value < 0:
        raise DocumentError(f"invalid amount {text!r}")
    minor = value * 100
    if minor != minor.to_integral_value():
        raise DocumentError(f"amount {text!r} has more than 2 decimals")
    return int(minor)


def format_datetime(moment: datetime) -> str:
    """Render an aware datetime as ISO 20022 ``ISODateTime`` in UTC, second precision (``...Z``)."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(text: str) -> datetime:
    """Parse an ``ISODateTime``; a value without offset is taken as UTC (informational use only)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise DocumentError(f"invalid ISODateTime {text!r}") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
