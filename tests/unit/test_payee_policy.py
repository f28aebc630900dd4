"""The service's policy on a Verification of Payee answer (server/domain/payee_verification.py)."""

from __future__ import annotations

import pytest

from server.domain.errors import PayeeNameCloseMatch, PayeeNameMismatch, PayeeRefused, PayeeVerificationUnavailable
from server.domain.model import PayeeMatch, PayeeVerification, SepaDestination, StripeAccountDestination
from server.domain.payee_verification import needs_payee_verification, refusal

PAYOUT = "po_0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("result", "risk_accepted", "refused_with"),
    [
        (PayeeMatch.MATCH, False, None),
        (PayeeMatch.MATCH, True, None),
        (PayeeMatch.NO_MATCH, False, PayeeNameMismatch),
        (PayeeMatch.NO_MATCH, True, PayeeNameMismatch),  # no acceptance pays a name the bank says is not it
        (PayeeMatch.CLOSE_MATCH, False, PayeeNameCloseMatch),
        (PayeeMatch.CLOSE_MATCH, True, None),
        (PayeeMatch.NOT_POSSIBLE, False, PayeeVerificationUnavailable),
        (PayeeMatch.NOT_POSSIBLE, True, None),
    ],
)
def test_what_each_answer_allows(
    result: PayeeMatch, risk_accepted: bool, refused_with: type[PayeeRefused] | None
) -> None:
    refused = refusal(PayeeVerification(result, risk_accepted=risk_accepted), PAYOUT)
    if refused_with is None:
        assert refused is None
    else:
        assert type(refused) is refused_with
        assert refused is not None
        assert refused.metadata == {"payout_id": PAYOUT}, "the caller can read the payout and its answer"


def test_the_reasons_are_the_contracts() -> None:
    reasons = {type(refusal(PayeeVerification(result), PAYOUT)).__name__: refusal(PayeeVerification(result), PAYOUT)
               for result in (PayeeMatch.NO_MATCH, PayeeMatch.CLOSE_MATCH, PayeeMatch.NOT_POSSIBLE)}  # fmt: skip
    assert sorted(error.reason for error in reasons.values() if error) == [
        "PAYEE_NAME_CLOSE_MATCH", "PAYEE_NAME_MISMATCH", "PAYEE_VERIFICATION_UNAVAILABLE",
    ]  # fmt: skip


def test_an_unanswered_check_is_never_decided() -> None:
    with pytest.raises(ValueError, match="answer"):
        refusal(PayeeVerification(None, risk_accepted=True), PAYOUT)


def test_sepa_payouts_are_verified_stripe_transfers_are_not() -> None:
    sepa = SepaDestination(iban="DE89370400440532013000", bic="", name="Müller GmbH", country="DE", town="Berlin")
    assert needs_payee_verification(sepa)
    assert not needs_payee_verification(StripeAccountDestination("acct_1Nv0FGQ9RKHgCVdK"))


def test_a_refusal_names_no_one() -> None:
    """Names are personal data: the error carries the reason and the payout id, never the holder's name."""
    refused = refusal(PayeeVerification(PayeeMatch.CLOSE_MATCH, "Müller GmbH"), PAYOUT)
    assert refused is not None
    assert "Müller" not in refused.message + repr(refused.metadata)
