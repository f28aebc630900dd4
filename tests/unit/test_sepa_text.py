"""SEPA character-set conversion: what converts, how, and that nothing is ever dropped silently."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.sepa_text import (
    NAME_MAX_LENGTH,
    REMITTANCE_MAX_LENGTH,
    SEPA_ALLOWED_CHARACTERS,
    SepaTextError,
    is_sepa_text,
    sepa_name,
    sepa_remittance,
    to_sepa_text,
    transliterate,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jürgen Müller", "Juergen Mueller"),
        ("Hößl & Söhne", "Hoessl + Soehne"),
        ("Ärger Öl Übel", "Aerger Oel Uebel"),
        ("MÜLLER GMBH", "MUELLER GMBH"),
        ("GÖ", "GOE"),
        ("Ö", "Oe"),
        ("STRAẞE", "STRASSE"),
        ("Straße", "Strasse"),
    ],
)
def test_german_umlauts_and_sharp_s(raw: str, expected: str) -> None:
    assert transliterate(raw, field="creditor_name") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("François Ñúñez", "Francois Nunez"),
        ("Ångström Čapek", "Angstroem Capek"),
        ("Łódź Đorđe", "Lodz Dorde"),
        ("Ærø Œuvre Þór", "Aeroe Oeuvre Thor"),
        ("ﬁnance", "finance"),  # ligature, NFKD
        ("\uff21\uff22\uff23\uff11\uff12\uff13", "ABC123"),  # full-width forms, NFKD
        ("Smith \uff06 Co", "Smith + Co"),  # full-width ampersand
    ],
)
def test_accents_and_special_letters(raw: str, expected: str) -> None:
    assert transliterate(raw, field="creditor_name") == expected


def test_decomposed_input_is_treated_like_composed() -> None:
    assert transliterate("Mu\u0308ller", field="creditor_name") == "Mueller"


def test_ampersand_becomes_plus_keeping_the_length() -> None:
    assert transliterate("A&B", field="creditor_name") == "A+B"


def test_typographic_punctuation_is_normalised() -> None:
    assert transliterate("O\u2019Brien \u2013 Invoice", field="remittance") == "O'Brien - Invoice"


def test_whitespace_collapses_and_trims() -> None:
    assert transliterate("  Invoice\t42\n\u00a0 paid  ", field="remittance") == "Invoice 42 paid"


@pytest.mark.parametrize("raw", ["pay@example", "Invoice #12", "5 €", "a_b", 'say "hi"', "Ελλάδα", "\U0001f600"])
def test_characters_outside_the_set_raise_naming_the_field(raw: str) -> None:
    with pytest.raises(SepaTextError) as info:
        transliterate(raw, field="remittance")
    assert info.value.field == "remittance"
    assert "U+" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_error_lists_the_offending_characters_not_the_value() -> None:
    with pytest.raises(SepaTextError) as info:
        transliterate("secret name @ home", field="creditor_name")
    assert "'@' (U+0040)" in info.value.reason
    assert "secret" not in str(info.value)


def test_empty_after_conversion_is_rejected() -> None:
    with pytest.raises(SepaTextError, match="must not be empty"):
        sepa_name("   \t ")


def test_name_length_is_measured_after_conversion() -> None:
    assert sepa_name("a" * NAME_MAX_LENGTH) == "a" * NAME_MAX_LENGTH
    assert len(sepa_name("ä" + "a" * (NAME_MAX_LENGTH - 2))) == NAME_MAX_LENGTH
    with pytest.raises(SepaTextError) as info:
        sepa_name("ä" + "a" * (NAME_MAX_LENGTH - 1))
    assert info.value.field == "creditor_name"
    assert "71 characters" in info.value.reason


def test_remittance_limit_is_140() -> None:
    assert sepa_remittance("r" * REMITTANCE_MAX_LENGTH) == "r" * REMITTANCE_MAX_LENGTH
    with pytest.raises(SepaTextError) as info:
        sepa_remittance("r" * (REMITTANCE_MAX_LENGTH + 1))
    assert info.value.field == "remittance"


def test_custom_field_and_limit() -> None:
    with pytest.raises(SepaTextError) as info:
        to_sepa_text("Berlin-Charlottenburg-Wilmersdorf-Nord", field="creditor_town", max_length=35)
    assert info.value.field == "creditor_town"


def test_is_sepa_text() -> None:
    assert is_sepa_text("Invoice 2024/17 (paid) - thanks, O'Neil + Co?:.")
    assert not is_sepa_text("Müller")


_ALLOWED = "".join(sorted(SEPA_ALLOWED_CHARACTERS))


@given(st.text(alphabet=_ALLOWED, max_size=200))
def test_text_already_in_the_set_only_has_its_whitespace_normalised(text: str) -> None:
    assert transliterate(text, field="remittance") == " ".join(text.split())


@given(st.text(max_size=80))
def test_any_text_converts_into_the_set_or_raises_the_typed_error(text: str) -> None:
    outcome: str | SepaTextError
    try:
        outcome = transliterate(text, field="remittance")
    except SepaTextError as exc:  # any other exception type fails the test
        outcome = exc
    if isinstance(outcome, SepaTextError):
        assert outcome.field == "remittance"
    else:
        assert is_sepa_text(outcome)
        assert transliterate(outcome, field="remittance") == outcome  # idempotent
