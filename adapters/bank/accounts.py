"""The SEPA scheme's account rules (server/domain/sepa_scheme.py) in the bank adapter's error type.

The rules are the domain's, shared with the API edge; here a refusal becomes a
:class:`~adapters.bank.errors.InvalidAccountError`, so the pain.001 builder reports it like every other
invalid transfer.
"""

from __future__ import annotations

from adapters.bank.errors import InvalidAccountError
from server.domain import sepa_scheme
from server.domain.sepa_scheme import BIC_FIELD, IBAN_FIELD, mask_iban

__all__ = ["mask_iban", "validate_bic", "validate_iban"]


def validate_iban(iban: str, *, field: str = IBAN_FIELD, require_sepa: bool = True) -> str:
    try:
        return sepa_scheme.validate_iban(iban, field=field, require_sepa=require_sepa)
    except sepa_scheme.InvalidAccountError as exc:
        raise InvalidAccountError(exc.field, exc.reason) from None


def validate_bic(bic: str, *, field: str = BIC_FIELD) -> str:
    try:
        return sepa_scheme.validate_bic(bic, field=field)
    except sepa_scheme.InvalidAccountError as exc:
        raise InvalidAccountError(exc.field, exc.reason) from None
