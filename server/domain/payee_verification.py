"""Verification of Payee (EU 2024/886, EPC VOP scheme): what the creditor bank can answer, and what this
service does with each answer before a SEPA payout is sent (docs/contract.md, Verification of Payee).

The answer is the bank's; the policy is ours and lives here, pure, so the execution engine, the tests
and the docs read one definition:

* MATCH: the payout goes on.
* NO_MATCH: refused before anything is sent (PAYEE_NAME_MISMATCH), whatever the request says: paying a
  name the bank says is not the holder's is how authorised push payment fraud succeeds.
* CLOSE_MATCH / NOT_POSSIBLE: refused with their own reason (PAYEE_NAME_CLOSE_MATCH /
  PAYEE_VERIFICATION_UNAVAILABLE), unless the request accepted the risk: the regulation leaves that
  decision to the payer once it has seen the bank's answer, and the acceptance is recorded.
"""

from __future__ import annotations

from server.domain.errors import PayeeNameCloseMatch, PayeeNameMismatch, PayeeRefused, PayeeVerificationUnavailable
from server.domain.model import PayeeMatch, PayeeVerification, PayoutDestination, SepaDestination

__all__ = ["PayeeMatch", "PayeeVerification", "needs_payee_verification", "refusal"]


def needs_payee_verification(destination: PayoutDestination) -> bool:
    """Every euro credit transfer is verified (the regulation covers SEPA credit transfers, Instant or
    not); a payout to a Stripe account is a transfer between Stripe balances, outside its scope."""
    return isinstance(destination, SepaDestination)


def refusal(verification: PayeeVerification, payout_id: str) -> PayeeRefused | None:
    """The error that stops the payout before it is sent, or None when it may go on.

    Asked only once the bank has answered (an unanswered check is retried, never refused).
    """
    result = verification.result
    if result is None:
        raise ValueError("a payee check without the bank's answer is neither allowed nor refused")
    if result is PayeeMatch.MATCH:
        return None
    if result is PayeeMatch.NO_MATCH:
        return PayeeNameMismatch(payout_id)
    if verification.risk_accepted:
        return None
    if result is PayeeMatch.CLOSE_MATCH:
        return PayeeNameCloseMatch(payout_id)
    return PayeeVerificationUnavailable(payout_id)
