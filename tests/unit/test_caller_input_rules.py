"""The caller-input rules of the domain: metadata (server/domain/metadata.py), ISO 4217 from its
maintained source (server/domain/money.py) and page tokens (server/app/queries.py)."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.app.queries import ListPaymentsQuery, decode_page_token
from server.domain import metadata
from server.domain.errors import InvalidRequest
from server.domain.money import ISO_4217_CODES, Currency


def test_a_caller_gets_what_the_psp_leaves_after_the_services_keys() -> None:
    assert metadata.MAX_ENTRIES + metadata.SERVICE_KEYS_MAX == metadata.PSP_MAX_KEYS == 50
    assert metadata.key_problem("order_id") is None
    assert metadata.key_problem(metadata.service_key("payment_id")) is not None
    assert metadata.key_problem("a[b]") is not None
    assert metadata.key_problem("k" * 41) is not None
    assert metadata.value_problem("x\x00") is not None
    assert metadata.value_problem("Zürich 8000") is None


def test_iso_4217_comes_from_the_published_table() -> None:
    assert Currency.of("ISK").exponent == 0
    assert Currency.of("KWD").exponent == 3
    assert Currency.of("XCG").exponent == 2  # the Caribbean guilder that replaced ANG in 2025
    assert "BGN" not in ISO_4217_CODES  # Bulgaria adopted the euro on 2026-01-01
    assert not {"CLF", "UYI", "BOV", "XAU", "XXX"} & ISO_4217_CODES  # funds, metals, test code


@given(raw=st.binary(max_size=300))
def test_any_token_is_a_cursor_or_invalid_argument(raw: bytes) -> None:
    token = base64.urlsafe_b64encode(raw).decode()
    query = ListPaymentsQuery(10, token, None, None)
    try:
        cursor = decode_page_token(query)
    except InvalidRequest as refused:
        assert refused.violations[0].field == "page_token"
    else:  # no token is the first page; anything else that gets through is a cursor in UTC
        if not token:
            assert cursor is None
        else:
            assert cursor is not None
            assert cursor[0].utcoffset() == timedelta(0)


@given(text=st.text(max_size=200))
def test_any_text_token_is_a_cursor_or_invalid_argument(text: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_page_token(ListPaymentsQuery(10, text + "!", None, None))
