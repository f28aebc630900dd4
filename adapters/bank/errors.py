"""Typed errors of the SEPA wire-format layer.

Why typed: the API edge maps a :class:`BankValidationError` to ``INVALID_ARGUMENT`` with a field
violation (``field`` names the offending input), while a :class:`DocumentError` on a document *we*
generated is a bug or bad configuration (final, alert). Messages never carry a full IBAN.
"""

from __future__ import annotations


class BankError(Exception):
    """Base class of every error raised by :mod:`adapters.bank`."""


class BankValidationError(BankError, ValueError):
    """An input cannot become a valid SEPA credit transfer.

    ``field`` names the offending input (e.g. ``"creditor_name"`` or ``"sepa_account.iban"``) so the
    caller can report a precise field violation; ``reason`` is the human-readable part.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidAccountError(BankValidationError):
    """An IBAN or BIC failed validation (the message shows at most country code + last 4)."""


class DocumentError(BankError, ValueError):
    """An XML document is not well-formed, violates its schema, or lacks required structure."""


class SchemaValidationError(DocumentError):
    """A document failed XSD validation; ``errors`` holds one line per schema violation."""

    def __init__(self, schema: str, errors: tuple[str, ...]) -> None:
        super().__init__(f"{schema} schema validation failed: " + "; ".join(errors))
        self.schema = schema
        self.errors = errors


class Pain002ParseError(DocumentError):
    """A payment status report could not be interpreted (wrong namespace, missing elements)."""
