"""The sandbox bank's Verification of Payee responder: who holds its test accounts, and its answers.

Why apart from the payment-file rules (``bank_gateway``): a payee check is a separate request of the
EPC VOP scheme, answered before any transfer exists, and a payout test that surprises on its name
should find the holders and the matching here (the matching itself: :mod:`.payee_names`).

Wire API (``POST /v1/payee-verifications``, the EPC VOP API's request and response, trimmed to what a
payer's bank sends)::

    request   {"party": {"name": "Müller GmbH"}, "partyAccount": {"iban": "DE89370400440532013000"},
               "partyAgent": {"financialInstitutionId": {"bicfi": "COBADEFFXXX"}}}   (bicfi optional)
    200       {"partyNameMatch": "MTCH" | "CMTC" | "NMTC" | "NOAP", "matchedName": "…" (CMTC only)}
    400       {"error": {"code": "format_error", "message": …}} for a body that is not such a request

Test accounts (valid IBANs, bank code 37040044)::

    TEST_IBAN_ACCEPT       DE89370400440532013000   held by "Müller GmbH"
    TEST_IBAN_VOP_PERSON   DE47370400449900000701   held by "Anna-Lena Schäfer"
    TEST_IBAN_VOP_NOAP     DE20370400449900000702   always NOAP (the bank cannot verify this account)
    TEST_IBAN_ANY_HOLDER   DE90370400449900000703   not in the register: any name is MTCH

Any other valid IBAN is an account whose holder the sandbox takes to be whoever the payer names
(MTCH): the scripted rejection and return IBANs of ``bank_gateway`` and ad-hoc test accounts keep
working without a register entry. An invalid IBAN is NOAP (the scheme's answer for an account the bank
cannot find). Nothing here logs a name or a full IBAN.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from adapters.bank.accounts import validate_iban
from adapters.bank.errors import InvalidAccountError
from adapters.sandboxes.bank_gateway import TEST_IBAN_ACCEPT, Response, error_response, json_response
from adapters.sandboxes.json_types import JsonValue
from adapters.sandboxes.payee_names import NameMatch, compare_names

__all__ = [
    "ACCOUNT_HOLDERS",
    "TEST_IBAN_ANY_HOLDER",
    "TEST_IBAN_VOP_NOAP",
    "TEST_IBAN_VOP_PERSON",
    "payee_answer",
    "verify_payee_request",
]

TEST_IBAN_VOP_PERSON: Final = "DE47370400449900000701"
TEST_IBAN_VOP_NOAP: Final = "DE20370400449900000702"
TEST_IBAN_ANY_HOLDER: Final = "DE90370400449900000703"

ACCOUNT_HOLDERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        TEST_IBAN_ACCEPT: "Müller GmbH",
        TEST_IBAN_VOP_PERSON: "Anna-Lena Schäfer",
    }
)
"""IBAN → the holder's name as the sandbox bank keeps it."""

_UNVERIFIABLE: Final = frozenset({TEST_IBAN_VOP_NOAP})

# The EPC VOP API's codes for the four answers.
_CODES: Final[dict[NameMatch, str]] = {
    NameMatch.MATCH: "MTCH",
    NameMatch.CLOSE_MATCH: "CMTC",
    NameMatch.NO_MATCH: "NMTC",
}
NOT_POSSIBLE_CODE: Final = "NOAP"


def payee_answer(iban: str, name: str) -> tuple[str, str | None]:
    """(the EPC answer code, the holder's name for a close match) for a payer's name and account."""
    try:
        compact = validate_iban(iban, field="partyAccount.iban")
    except InvalidAccountError:
        return NOT_POSSIBLE_CODE, None
    if compact in _UNVERIFIABLE:
        return NOT_POSSIBLE_CODE, None
    holder = ACCOUNT_HOLDERS.get(compact)
    if holder is None:
        return _CODES[NameMatch.MATCH], None
    match = compare_names(name, holder)
    return _CODES[match], holder if match is NameMatch.CLOSE_MATCH else None


def verify_payee_request(body: bytes) -> Response:
    """Handle ``POST /v1/payee-verifications``: a read-only question, so no idempotency key is needed."""
    try:
        payload: Any = json.loads(body)
        name = payload["party"]["name"]
        iban = payload["partyAccount"]["iban"]
    except (ValueError, TypeError, KeyError):
        return error_response(400, "format_error", "expected {party: {name}, partyAccount: {iban}}")
    if not isinstance(name, str) or not isinstance(iban, str) or not name.strip():
        return error_response(400, "format_error", "party.name and partyAccount.iban must be non-empty strings")
    code, matched_name = payee_answer(iban, name)
    answer: dict[str, JsonValue] = {"partyNameMatch": code}
    if matched_name is not None:
        answer["matchedName"] = matched_name
    return json_response(200, answer)
