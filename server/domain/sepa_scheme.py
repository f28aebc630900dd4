"""The SEPA credit transfer scheme's rules on accounts and amounts: reach, IBAN/BIC, currency, Instant.

One rule set for the API edge, which refuses a payout it cannot make before an idempotency key is
claimed, and the pain.001 builder, which re-checks what it serialises (adapters/bank). IBAN and BIC
parsing is schwifty's, including its registry of the countries the SEPA scheme reaches. schwifty's own
messages quote the full IBAN, so they are never passed through: the reason is rephrased and the account
shows up at most as country code + last 4 (``DE****3000``), the one masked form used everywhere.
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

SEPA_CURRENCY = "EUR"
INSTANT_MAX_AMOUNT_MINOR = 10_000_000  # SEPA Instant: at most EUR 100,000.00 per transfer (EPC SCT Inst)
SEPA_MAX_AMOUNT_MINOR = 99_999_999_999  # SEPA credit transfer: at most EUR 999,999,999.99 (EPC SCT rulebook)


class InvalidAccountError(ValueError):
    """An IBAN or BIC failed validation; `field` names the input, `code` says why for callers.

    The message shows the account at most as country code + last 4.
    """

    def __init__(self, field: str, reason: str, code: str = "INVALID_ACCOUNT") -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.code = code


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
        raise InvalidAccountError(field, "IBAN is required", "INVALID_IBAN")
    try:
        parsed = IBAN(compact)
    except SchwiftyException as exc:
        reason = _reason(exc, _IBAN_REASONS, "invalid IBAN")
        raise InvalidAccountError(field, f"{reason} ({mask_iban(compact)})", "INVALID_IBAN") from None
    if require_sepa and not parsed.in_sepa_zone:
        raise InvalidAccountError(
            field, f"IBAN country is not in the SEPA scheme ({mask_iban(compact)})", "IBAN_OUTSIDE_SEPA"
        )
    return str(parsed.compact)


def validate_bic(bic: str, *, field: str = BIC_FIELD) -> str:
    """Validate a BIC (ISO 9362, 8 or 11 characters) and return it upper-cased without spaces.

    Only structure and country are checked, not registry membership: sandbox and new BICs are legal.
    Raises :class:`InvalidAccountError` naming ``field``.
    """
    compact = "".join(bic.split()).upper()
    if not compact:
        raise InvalidAccountError(field, "BIC must not be empty (omit it instead)", "INVALID_BIC")
    try:
        parsed = BIC(compact)
    except SchwiftyException as exc:
        raise InvalidAccountError(field, _reason(exc, _BIC_REASONS, "invalid BIC"), "INVALID_BIC") from None
    return str(parsed)
