"""Verification of Payee over the bank gateway: the EPC VOP API's request and answer, translated.

Why a module of its own: the check is a separate exchange from the payment files (JSON, no idempotency
key, answered before any transfer exists), and keeping its wire format here leaves
:mod:`adapters.bank.adapter` with one method that sends it. Like the adapter it makes single attempts
(retries: :mod:`adapters.retry`) and puts no name or full IBAN into an exception or a log line.

``POST {api_base}/v1/payee-verifications`` with ``{"party": {"name"}, "partyAccount": {"iban"},
"partyAgent"?: {"financialInstitutionId": {"bicfi"}}}``; ``200 {"partyNameMatch": "MTCH" | "CMTC" |
"NMTC" | "NOAP", "matchedName"?}``. An answer without a known code is no answer: the check is asked
again (PspUnavailableError), never guessed.
"""

from __future__ import annotations

import json
from typing import Any, Final

import httpx

from server.app.psp import PayeeAnswer, PayeeCheckOrder, PspUnavailableError
from server.domain.model import PayeeMatch

__all__ = ["EPC_CODES", "PATH", "answer_of", "parse_answer", "request_body"]

PATH: Final = "/v1/payee-verifications"

EPC_CODES: Final[dict[str, PayeeMatch]] = {
    "MTCH": PayeeMatch.MATCH,
    "CMTC": PayeeMatch.CLOSE_MATCH,
    "NMTC": PayeeMatch.NO_MATCH,
    "NOAP": PayeeMatch.NOT_POSSIBLE,
}
"""The EPC VOP API's answer codes."""

_NAME_LIMIT = 140  # Max140Text, the scheme's name field


def request_body(order: PayeeCheckOrder) -> bytes:
    """The EPC VOP request for the payout's creditor (BIC only when the caller gave one)."""
    payload: dict[str, Any] = {"party": {"name": order.name}, "partyAccount": {"iban": order.iban}}
    if order.bic:
        payload["partyAgent"] = {"financialInstitutionId": {"bicfi": order.bic}}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def answer_of(code: str, matched_name: str | None, request_id: str | None = None) -> PayeeAnswer | None:
    """The answer for an EPC code (None if the code is not one): the holder's name only with a close
    match, where the scheme returns it for the payer to confirm."""
    result = EPC_CODES.get(code)
    if result is None:
        return None
    suggested = (matched_name or "")[:_NAME_LIMIT] if result is PayeeMatch.CLOSE_MATCH else ""
    return PayeeAnswer(result, suggested, request_id)


def parse_answer(response: httpx.Response, psp: str, request_id: str | None) -> PayeeAnswer:
    """A 200 answer, translated; anything unreadable raises PspUnavailableError (ask again)."""
    try:
        payload: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    code = payload.get("partyNameMatch") if isinstance(payload, dict) else None
    matched = payload.get("matchedName") if isinstance(payload, dict) else None
    answer = (
        answer_of(code, matched if isinstance(matched, str) else None, request_id) if isinstance(code, str) else None
    )
    if answer is None:
        raise PspUnavailableError(
            f"{psp}: payee verification answered without a known result", possibly_executed=False, request_id=request_id
        )
    if answer.result is PayeeMatch.CLOSE_MATCH and not answer.suggested_name:
        # A close match is only useful with the holder's name: without it the payer cannot confirm.
        raise PspUnavailableError(
            f"{psp}: payee verification answered a close match without the holder's name",
            possibly_executed=False,
            request_id=request_id,
        )
    return answer
