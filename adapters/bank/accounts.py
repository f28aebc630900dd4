"""IBAN / BIC validation and masking for SEPA accounts, built on ``schwifty``.

Why a helper: the API edge validates ``sepa_account`` before claiming an idempotency key, the pain.001
builder re-checks what it serialises, and both must produce the same typed error naming the field.
schwifty's own messages quote the full IBAN, so they are never passed through: the reason is
rephrased and the account shows up at most as country code + last 4 (``DE****3000``).
"""

from __future__ import annotations

from schwifty import BIC, IBAN
from schwifty.exceptions import (
    InvalidBBANChecksum,
    InvalidChecksumDigits,
    InvalidCountryCode,
    InvalidLength,
    InvalidStructure,
    SchwiftyException,
)

from adapters.bank.errors import InvalidAccountError

IBAN_FIELD = "sepa_account.iban"
BIC_FIELD = "sepa_account.bic"

_IBAN_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (InvalidChecksumDigits, "invalid IBAN check digits"),
    (InvalidBBANChecksum, "invalid national check digits"),
    (InvalidLength, "wrong IBAN length for its country"),
    (InvalidCountryCode, "unknown IBAN country code"),
    (InvalidStructure, "IBAN does not match its country's format"),
)
_BIC_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (InvalidLength, "BIC must have 8 or 11 characters"),
    (InvalidCountryCode, "unknown BIC country code"),
    (InvalidStructure, "BIC has an invalid structure"),
)


def mask_iban(iban: str) -> str:
    """Return country code + ``****`` + last 4 characters, the only IBAN form allowed in logs."""
    compact = "".join(iban.split()).upper()
    if len(compact) < 8:
        return "****"
    return f"{compact[:2]}****{compact[-4:]}"


def _reason(exc: SchwiftyException, table: tuple[tuple[type[Exception], str], ...], default: str) -> str:
    for exc_type, reason in table:
        if isinstance(exc, exc_type):
            return reason
    return default


def validate_iban(iban: str, *, field: str = IBAN_FIELD, require_sepa: bool = True) -> str:
    """Validate ``iban`` (spaces allowed, any case) and return its compact upper-case form.

    ``require_sepa`` rejects IBANs of countries outside the SEPA scheme, which a SEPA credit transfer
    cannot reach. Raises :class:`InvalidAccountError` naming ``field``; the message is masked.
    """
    compact = "".join(iban.split()).upper()
    if not compact:
        raise InvalidAccountError(field, "IBAN is required")
    try:
        parsed = IBAN(compact)
    except SchwiftyException as exc:
        reason = _reason(exc, _IBAN_REASONS, "invalid IBAN")
        raise InvalidAccountError(field, f"{reason} ({mask_iban(compact)})") from None
    if require_sepa and not parsed.in_sepa_zone:
        raise InvalidAccountError(field, f"IBAN country is not in the SEPA scheme ({mask_iban(compact)})")
    return str(parsed.compact)


def validate_bic(bic: str, *, field: str = BIC_FIELD) -> str:
    """Validate a BIC (ISO 9362, 8 or 11 characters) and return it upper-cased without spaces.

    Only structure and country are checked, not registry membership: sandbox and new BICs are legal.
    Raises :class:`InvalidAccountError` naming ``field``.
    """
    compact = "".join(bic.split()).upper()
    if not compact:
        raise InvalidAccountError(field, "BIC must not be empty (omit it instead)")
    try:
        parsed = BIC(compact)
    except SchwiftyException as exc:
        raise InvalidAccountError(field, _reason(exc, _BIC_REASONS, "invalid BIC")) from None
    return str(parsed)
