"""pain.001.001.09 building: every file validates against the official XSD, ids and money are exact."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.bank.accounts import mask_iban, validate_bic, validate_iban
from adapters.bank.errors import (
    BankValidationError,
    DocumentError,
    InvalidAccountError,
    SchemaValidationError,
)
from adapters.bank.pain001 import (
    ID_MAX_LENGTH,
    PAIN001_NAMESPACE,
    CreditTransfer,
    DebtorAccount,
    build_pain001,
    derive_message_ids,
    parse_pain001,
    validate_pain001,
)
from adapters.bank.xmltools import parse_xml
from server.domain.sepa_scheme import INSTANT_MAX_AMOUNT_MINOR
from server.domain.sepa_text import SEPA_ALLOWED_CHARACTERS, SepaTextError

NS = {"p": PAIN001_NAMESPACE}
PAYOUT_ID = "po_0123456789abcdef0123456789abcdef"
CREDITOR_IBAN = "DE89370400440532013000"
DEBTOR = DebtorAccount(name="Zahlungen GmbH & Co. KG", iban="DE32370400449900000001", bic="COBADEFFXXX")
CREATED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def make_transfer(**overrides: object) -> CreditTransfer:
    ids = derive_message_ids(PAYOUT_ID)
    transfer = CreditTransfer(
        payout_id=PAYOUT_ID,
        amount_minor=12_345,
        currency="EUR",
        creditor_name="Jürgen Müller",
        creditor_iban=CREDITOR_IBAN,
        creditor_bic=None,
        creditor_country="DE",
        creditor_town="München",
        creditor_street="Hauptstraße 5",
        creditor_postcode="80331",
        remittance="Auszahlung März",
        instant=False,
        msg_id=ids.msg_id,
        pmt_inf_id=ids.pmt_inf_id,
        end_to_end_id=ids.end_to_end_id,
        requested_execution_date=date(2026, 3, 2),
    )
    return dataclasses.replace(transfer, **overrides)  # type: ignore[arg-type]


def text_of(xml: bytes, path: str) -> str | None:
    found = parse_xml(xml).find(path, NS)
    return None if found is None else str(found.text)


# ------------------------------------------------------------------------------------------- ids


def test_message_ids_are_derived_from_the_payout_id() -> None:
    ids = derive_message_ids(PAYOUT_ID)
    assert ids == (
        "M-0123456789abcdef0123456789abcdef",
        "P-0123456789abcdef0123456789abcdef",
        "E-0123456789abcdef0123456789abcdef",
    )
    assert derive_message_ids(PAYOUT_ID) == ids  # deterministic


@given(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32))
def test_message_ids_are_short_sepa_safe_and_unique(hex_digits: str) -> None:
    ids = derive_message_ids("po_" + hex_digits)
    assert len(set(ids)) == 3
    for value in ids:
        assert 1 <= len(value) <= ID_MAX_LENGTH
        assert all(char in SEPA_ALLOWED_CHARACTERS and char != " " for char in value)
        assert hex_digits in value  # injective: the payout id is recoverable


@pytest.mark.parametrize(
    "payout_id",
    [
        "",
        "po_",
        "po_XYZ",
        "pay_0123456789abcdef0123456789abcdef",
        "po_0123456789ABCDEF0123456789ABCDEF",
        "po_" + "a" * 33,
    ],
)
def test_foreign_payout_ids_are_refused(payout_id: str) -> None:
    with pytest.raises(BankValidationError) as info:
        derive_message_ids(payout_id)
    assert info.value.field == "payout_id"


# ---------------------------------------------------------------------------------- the document


def test_builds_a_schema_valid_file_with_our_identifiers() -> None:
    xml = build_pain001(make_transfer(), DEBTOR, created_at=CREATED_AT)
    validate_pain001(xml)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:GrpHdr/p:MsgId") == "M-0123456789abcdef0123456789abcdef"
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:GrpHdr/p:CreDtTm") == "2026-03-01T09:30:00Z"
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:PmtInf/p:PmtInfId") == "P-0123456789abcdef0123456789abcdef"
    tx = "p:CstmrCdtTrfInitn/p:PmtInf/p:CdtTrfTxInf/"
    assert text_of(xml, tx + "p:PmtId/p:EndToEndId") == "E-0123456789abcdef0123456789abcdef"
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:PmtInf/p:PmtTpInf/p:SvcLvl/p:Cd") == "SEPA"
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:PmtInf/p:ChrgBr") == "SLEV"
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:PmtInf/p:ReqdExctnDt/p:Dt") == "2026-03-02"
    assert text_of(xml, tx + "p:Cdtr/p:Nm") == "Juergen Mueller"
    assert text_of(xml, tx + "p:RmtInf/p:Ustrd") == "Auszahlung Maerz"
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:PmtInf/p:Dbtr/p:Nm") == "Zahlungen GmbH + Co. KG"


def test_structured_creditor_address() -> None:
    xml = build_pain001(make_transfer(), DEBTOR, created_at=CREATED_AT)
    address = "p:CstmrCdtTrfInitn/p:PmtInf/p:CdtTrfTxInf/p:Cdtr/p:PstlAdr/"
    assert text_of(xml, address + "p:StrtNm") == "Hauptstrasse 5"
    assert text_of(xml, address + "p:PstCd") == "80331"
    assert text_of(xml, address + "p:TwnNm") == "Muenchen"
    assert text_of(xml, address + "p:Ctry") == "DE"
    assert parse_xml(xml).find(address + "p:AdrLine", NS) is None


def test_street_and_postcode_are_optional() -> None:
    xml = build_pain001(make_transfer(creditor_street=None, creditor_postcode="  "), DEBTOR)
    address = "p:CstmrCdtTrfInitn/p:PmtInf/p:CdtTrfTxInf/p:Cdtr/p:PstlAdr/"
    assert text_of(xml, address + "p:StrtNm") is None
    assert text_of(xml, address + "p:PstCd") is None
    assert text_of(xml, address + "p:TwnNm") == "Muenchen"


def test_same_inputs_give_the_same_bytes() -> None:
    first = build_pain001(make_transfer(), DEBTOR, created_at=CREATED_AT)
    assert build_pain001(make_transfer(), DEBTOR, created_at=CREATED_AT) == first


def test_created_at_is_rendered_in_utc() -> None:
    cet = timezone(timedelta(hours=1))
    xml = build_pain001(make_transfer(), DEBTOR, created_at=datetime(2026, 3, 1, 10, 30, tzinfo=cet))
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:GrpHdr/p:CreDtTm") == "2026-03-01T09:30:00Z"


def test_instant_sets_local_instrument_inst() -> None:
    xml = build_pain001(make_transfer(instant=True), DEBTOR, created_at=CREATED_AT)
    type_info = "p:CstmrCdtTrfInitn/p:PmtInf/p:PmtTpInf/"
    assert text_of(xml, type_info + "p:LclInstrm/p:Cd") == "INST"
    assert text_of(xml, type_info + "p:SvcLvl/p:Cd") == "SEPA"
    assert parse_pain001(xml).transfers[0].instant


def test_non_instant_has_no_local_instrument() -> None:
    xml = build_pain001(make_transfer(instant=False), DEBTOR)
    assert parse_xml(xml).find(".//p:LclInstrm", NS) is None


def test_creditor_bic_is_optional() -> None:
    agent = "p:CstmrCdtTrfInitn/p:PmtInf/p:CdtTrfTxInf/p:CdtrAgt/p:FinInstnId/p:BICFI"
    without = build_pain001(make_transfer(creditor_bic=None), DEBTOR)
    assert parse_xml(without).find("p:CstmrCdtTrfInitn/p:PmtInf/p:CdtTrfTxInf/p:CdtrAgt", NS) is None
    with_bic = build_pain001(make_transfer(creditor_bic="cobadeff"), DEBTOR)
    assert text_of(with_bic, agent) == "COBADEFF"


@pytest.mark.parametrize(
    ("amount_minor", "rendered"),
    [
        (1, "0.01"),
        (10, "0.10"),
        (100, "1.00"),
        (12_345, "123.45"),
        (99_999_999, "999999.99"),
        (10_000_000_000_00, "10000000000.00"),
    ],
)
def test_amounts_render_exactly(amount_minor: int, rendered: str) -> None:
    xml = build_pain001(make_transfer(amount_minor=amount_minor), DEBTOR)
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:PmtInf/p:CdtTrfTxInf/p:Amt/p:InstdAmt") == rendered
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum") == rendered
    parsed = parse_pain001(xml)
    assert parsed.transfers[0].amount_minor == amount_minor
    assert parsed.control_sum_minor == amount_minor


@pytest.mark.parametrize("amount", [0, -1, 12.5, 1.0, True, "100"])
def test_amount_must_be_positive_integer_cents(amount: object) -> None:
    with pytest.raises(BankValidationError) as info:
        build_pain001(make_transfer(amount_minor=amount), DEBTOR)
    assert info.value.field == "amount_minor"


def test_sepa_is_eur_only() -> None:
    with pytest.raises(BankValidationError) as info:
        build_pain001(make_transfer(currency="CHF"), DEBTOR)
    assert info.value.field == "currency"


def test_instant_is_eur_only() -> None:
    with pytest.raises(BankValidationError) as info:
        build_pain001(make_transfer(currency="USD", instant=True), DEBTOR)
    assert info.value.field == "currency"
    assert "Instant" in info.value.reason


def test_instant_limit_is_eur_100000() -> None:
    xml = build_pain001(make_transfer(amount_minor=INSTANT_MAX_AMOUNT_MINOR, instant=True), DEBTOR)
    assert text_of(xml, "p:CstmrCdtTrfInitn/p:PmtInf/p:CdtTrfTxInf/p:Amt/p:InstdAmt") == "100000.00"
    with pytest.raises(BankValidationError) as info:
        build_pain001(make_transfer(amount_minor=INSTANT_MAX_AMOUNT_MINOR + 1, instant=True), DEBTOR)
    assert info.value.field == "amount_minor"
    # the same amount is fine as a regular SEPA credit transfer
    build_pain001(make_transfer(amount_minor=INSTANT_MAX_AMOUNT_MINOR + 1, instant=False), DEBTOR)


def test_invalid_creditor_iban_names_the_field_and_masks_it() -> None:
    with pytest.raises(InvalidAccountError) as info:
        build_pain001(make_transfer(creditor_iban="DE89370400440532013001"), DEBTOR)
    assert info.value.field == "creditor_iban"
    assert "DE89370400440532013001" not in str(info.value)
    assert "DE****3001" in str(info.value)


def test_invalid_bics_name_their_fields() -> None:
    with pytest.raises(InvalidAccountError) as info:
        build_pain001(make_transfer(creditor_bic="COBADE"), DEBTOR)
    assert info.value.field == "creditor_bic"
    with pytest.raises(InvalidAccountError) as info:
        build_pain001(make_transfer(), dataclasses.replace(DEBTOR, bic="XXXX1234"))
    assert info.value.field == "debtor.bic"


def test_unconvertible_text_names_the_field() -> None:
    with pytest.raises(SepaTextError) as info:
        build_pain001(make_transfer(creditor_name="pay@me"), DEBTOR)
    assert info.value.field == "creditor_name"
    with pytest.raises(SepaTextError) as info:
        build_pain001(make_transfer(remittance="x" * 141), DEBTOR)
    assert info.value.field == "remittance"
    with pytest.raises(SepaTextError) as info:
        build_pain001(make_transfer(creditor_town=""), DEBTOR)
    assert info.value.field == "creditor_town"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("end_to_end_id", "E" * 36),
        ("msg_id", "has space"),
        ("pmt_inf_id", "/leading"),
        ("end_to_end_id", "a//b"),
        ("msg_id", ""),
        ("end_to_end_id", "E_1"),
    ],
)
def test_identifiers_follow_epc_rules(field: str, value: str) -> None:
    with pytest.raises(BankValidationError) as info:
        build_pain001(make_transfer(**{field: value}), DEBTOR)
    assert info.value.field == field


@pytest.mark.parametrize("country", ["de", "DEU", "", "D1"])
def test_country_must_be_iso_alpha2(country: str) -> None:
    with pytest.raises(BankValidationError) as info:
        build_pain001(make_transfer(creditor_country=country), DEBTOR)
    assert info.value.field == "creditor_country"


def test_execution_date_must_be_a_date() -> None:
    with pytest.raises(BankValidationError) as info:
        build_pain001(make_transfer(requested_execution_date=datetime(2026, 3, 2, tzinfo=UTC)), DEBTOR)
    assert info.value.field == "requested_execution_date"


# --------------------------------------------------------------------------- generated over inputs

_NAME_ALPHABET = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-?:().,'+ ")
    + list("äöüÄÖÜßéèêñçåøæœłÉÈÑÇÅØÆŒŁ&\u2019\u2013")
)


def _sepa_text(max_size: int) -> st.SearchStrategy[str]:
    # at most half the budget, so umlaut expansion (1 → 2 characters) always fits the limit
    texts = st.text(alphabet=_NAME_ALPHABET, min_size=1, max_size=max_size // 2)
    return texts.filter(lambda s: s.strip() != "")


@st.composite
def transfers(draw: st.DrawFn) -> CreditTransfer:
    instant = draw(st.booleans())
    limit = INSTANT_MAX_AMOUNT_MINOR if instant else 10**15
    hex_digits = draw(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32))
    ids = derive_message_ids("po_" + hex_digits)
    return make_transfer(
        payout_id="po_" + hex_digits,
        amount_minor=draw(st.integers(min_value=1, max_value=limit)),
        creditor_name=draw(_sepa_text(70)),
        creditor_bic=draw(st.sampled_from([None, "COBADEFFXXX", "INGDDEFF"])),
        creditor_country=draw(st.sampled_from(["DE", "AT", "FR", "NL", "ES"])),
        creditor_town=draw(_sepa_text(35)),
        creditor_street=draw(st.none() | _sepa_text(70)),
        creditor_postcode=draw(st.none() | st.text(alphabet="0123456789ABC -", min_size=1, max_size=16)),
        remittance=draw(_sepa_text(140)),
        instant=instant,
        msg_id=ids.msg_id,
        pmt_inf_id=ids.pmt_inf_id,
        end_to_end_id=ids.end_to_end_id,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transfers())
def test_every_generated_file_validates_and_round_trips(transfer: CreditTransfer) -> None:
    xml = build_pain001(transfer, DEBTOR, created_at=CREATED_AT)
    validate_pain001(xml)  # build already did; asserting the public contract explicitly
    parsed = parse_pain001(xml)
    assert parsed.msg_id == transfer.msg_id
    assert parsed.number_of_transactions == 1
    (tx,) = parsed.transfers
    assert tx.end_to_end_id == transfer.end_to_end_id
    assert tx.pmt_inf_id == transfer.pmt_inf_id
    assert tx.amount_minor == transfer.amount_minor
    assert tx.currency == "EUR"
    assert tx.instant is transfer.instant
    assert tx.creditor_iban == CREDITOR_IBAN
    assert tx.creditor_bic == transfer.creditor_bic
    for value in (parsed.msg_id, tx.pmt_inf_id, tx.end_to_end_id):
        assert len(value) <= ID_MAX_LENGTH
    for text in (tx.creditor_name, tx.remittance or ""):
        assert all(char in SEPA_ALLOWED_CHARACTERS for char in text)
    root = parse_xml(xml)
    assert root.find(".//p:Cdtr/p:PstlAdr/p:TwnNm", NS) is not None
    assert root.find(".//p:Cdtr/p:PstlAdr/p:Ctry", NS).text == transfer.creditor_country
    assert (root.find(".//p:PmtTpInf/p:LclInstrm/p:Cd", NS) is not None) is transfer.instant
    amount_text = root.find(".//p:InstdAmt", NS).text
    assert amount_text == f"{transfer.amount_minor // 100}.{transfer.amount_minor % 100:02d}"


# ------------------------------------------------------------------------------------- validation


def test_schema_violations_are_reported_with_ibans_masked() -> None:
    xml = build_pain001(make_transfer(), DEBTOR)
    broken = xml.replace(b"<IBAN>DE89370400440532013000</IBAN>", b"<IBAN>de89370400440532013000</IBAN>")
    with pytest.raises(SchemaValidationError) as info:
        validate_pain001(broken)
    message = str(info.value)
    assert "IBAN" in message
    assert "370400440532013000" not in message
    assert "DE****3000" in message
    assert info.value.errors


def test_malformed_xml_is_a_document_error() -> None:
    with pytest.raises(DocumentError):
        validate_pain001(b"<Document><unclosed></Document>")


def test_doctype_and_entities_are_refused() -> None:
    evil = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Document xmlns="' + PAIN001_NAMESPACE.encode() + b'">&x;</Document>'
    )
    with pytest.raises(DocumentError):
        validate_pain001(evil)


# --------------------------------------------------------------------------------- account helper


def test_iban_helper_defaults_to_the_api_field_and_normalises() -> None:
    assert validate_iban("de89 3704 0044 0532 0130 00") == "DE89370400440532013000"
    with pytest.raises(InvalidAccountError) as info:
        validate_iban("DE89 3704 0044 0532 0130 01")
    assert info.value.field == "sepa_account.iban"
    assert "0532" not in str(info.value)


def test_iban_outside_sepa_is_refused() -> None:
    with pytest.raises(InvalidAccountError, match="SEPA"):
        validate_iban("BR1800360305000010009795493C1")


def test_bic_helper_defaults_to_the_api_field() -> None:
    assert validate_bic(" cobadeffxxx ") == "COBADEFFXXX"
    with pytest.raises(InvalidAccountError) as info:
        validate_bic("COBADEF")
    assert info.value.field == "sepa_account.bic"


def test_mask_iban_keeps_country_and_last_four() -> None:
    assert mask_iban("DE89 3704 0044 0532 0130 00") == "DE****3000"
    assert mask_iban("DE8") == "****"
