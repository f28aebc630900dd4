from __future__ import annotations

import pytest

from payments.v1 import payment_service_pb2 as svc
from server.api.validation import canonical_without_key
from server.domain.idempotency import Operation, fingerprint, key_problem, psp_idempotency_key
from tests.support.requests import charge


@pytest.mark.parametrize(("key", "ok"), [("k", True), ("k" * 255, True), ("", False), ("k" * 256, False),
                                         ("tab\there", False), ("ümlaut", False), ("a b~!", True)])  # fmt: skip
def test_key_validity(key: str, ok: bool) -> None:
    assert (key_problem(key) is None) is ok


def test_fingerprint_ignores_the_key_and_map_order() -> None:
    a = canonical_without_key(charge("one", metadata={"x": "1", "y": "2"}))
    b = canonical_without_key(charge("two", metadata={"y": "2", "x": "1"}))
    assert fingerprint("Charge", a) == fingerprint("Charge", b)


def test_fingerprint_differs_by_content_and_rpc() -> None:
    a = canonical_without_key(charge("k", amount=1))
    b = canonical_without_key(charge("k", amount=2))
    assert fingerprint("Charge", a) != fingerprint("Charge", b)
    empty = canonical_without_key(svc.RefundRequest())
    assert fingerprint("Refund", empty) != fingerprint("Payout", empty)


def test_psp_key_is_deterministic_and_scoped() -> None:
    key = psp_idempotency_key("client-a", "k1", Operation.CHARGE)
    assert key == psp_idempotency_key("client-a", "k1", Operation.CHARGE)
    assert key != psp_idempotency_key("client-b", "k1", Operation.CHARGE)
    assert key != psp_idempotency_key("client-a", "k1", Operation.REFUND)
    assert "k1" not in key
    assert "client-a" not in key
    assert len(key) <= 255
