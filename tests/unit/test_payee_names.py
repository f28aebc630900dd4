"""The sandbox bank's name matching for Verification of Payee (adapters/sandboxes/payee_names.py), and
its register's answers (bank_payees.py): pure, no I/O."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.sandboxes.bank_gateway import TEST_IBAN_AC01, TEST_IBAN_ACCEPT
from adapters.sandboxes.bank_payees import TEST_IBAN_ANY_HOLDER, TEST_IBAN_VOP_NOAP, TEST_IBAN_VOP_PERSON, payee_answer
from adapters.sandboxes.payee_names import NameMatch, close_key, compare_names

HOLDER = "Müller GmbH"


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [
        ("Müller GmbH", NameMatch.MATCH),
        ("  Müller   GmbH ", NameMatch.MATCH),  # white space is not a difference
        ("Mu\u0308ller GmbH", NameMatch.MATCH),  # the same text, decomposed
        ("Mueller GmbH", NameMatch.CLOSE_MATCH),  # ü written ue
        ("Muller GmbH", NameMatch.CLOSE_MATCH),  # ü without its diacritic
        ("MÜLLER GMBH", NameMatch.CLOSE_MATCH),  # case
        ("GmbH Müller", NameMatch.CLOSE_MATCH),  # word order
        ("Müller Gesellschaft mit beschränkter Haftung", NameMatch.CLOSE_MATCH),  # legal form written out
        ("Müller G.m.b.H.", NameMatch.CLOSE_MATCH),
        ("Schmidt AG", NameMatch.NO_MATCH),
        ("Müller AG", NameMatch.NO_MATCH),  # another legal form is another company
        ("Müller", NameMatch.NO_MATCH),  # a missing word
        ("Müller & Söhne GmbH", NameMatch.NO_MATCH),  # an extra word
        ("Möller GmbH", NameMatch.NO_MATCH),
    ],
)
def test_a_name_against_mueller_gmbh(given_name: str, expected: NameMatch) -> None:
    assert compare_names(given_name, HOLDER) is expected


@pytest.mark.parametrize(
    ("given_name", "holder"),
    [
        ("Jansen B.V.", "Jansen Besloten Vennootschap"),
        ("Dupont SARL", "Dupont Société à responsabilité limitée"),
        ("Élodie Durand", "Elodie Durand"),
        ("Smith Trading Limited", "Smith Trading Ltd"),
        ("Straße Bau AG", "Strasse Bau Aktiengesellschaft"),
        ("Schäfer Anna-Lena", "Anna-Lena Schäfer"),
    ],
)
def test_close_variants_across_legal_forms_and_languages(given_name: str, holder: str) -> None:
    assert compare_names(given_name, holder) is NameMatch.CLOSE_MATCH


# Letters of the names SEPA carries (the edge refuses text outside its character set's transliteration).
LETTERS = string.ascii_letters + "äöüÄÖÜßéèêëàâáçñóòôøåæíìîúùûÉÈÀÁÇÑÓØÅÆÍÚ"
words = st.text(alphabet=LETTERS, min_size=1, max_size=12)
names = st.lists(words, min_size=1, max_size=5).map(" ".join)


@given(names)
def test_every_name_matches_itself(name: str) -> None:
    assert compare_names(name, name) is NameMatch.MATCH


@given(st.lists(words, min_size=2, max_size=5), st.randoms(use_true_random=False))
def test_word_order_never_makes_a_no_match(parts: list[str], random: object) -> None:
    shuffled = list(parts)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert compare_names(" ".join(shuffled), " ".join(parts)) in (NameMatch.MATCH, NameMatch.CLOSE_MATCH)


@given(names)
def test_case_never_makes_a_no_match(name: str) -> None:
    assert compare_names(name.upper(), name) is not NameMatch.NO_MATCH
    assert compare_names(name.lower(), name) is not NameMatch.NO_MATCH


@given(names, names)
def test_the_comparison_is_symmetric(first: str, second: str) -> None:
    assert compare_names(first, second) is compare_names(second, first)
    assert (close_key(first) == close_key(second)) is (compare_names(first, second) is not NameMatch.NO_MATCH)


@given(names, words.filter(lambda word: bool(close_key(word))))
def test_an_extra_word_is_no_match(name: str, extra: str) -> None:
    assert compare_names(f"{name} {extra}", name) is NameMatch.NO_MATCH


def test_the_register_answers_in_the_schemes_codes() -> None:
    assert payee_answer(TEST_IBAN_ACCEPT, "Müller GmbH") == ("MTCH", None)
    assert payee_answer(TEST_IBAN_ACCEPT, "Mueller GmbH") == ("CMTC", "Müller GmbH")
    assert payee_answer(TEST_IBAN_ACCEPT, "Schmidt AG") == ("NMTC", None)
    assert payee_answer(TEST_IBAN_VOP_PERSON, "Schaefer Anna-Lena") == ("CMTC", "Anna-Lena Schäfer")
    assert payee_answer(TEST_IBAN_VOP_NOAP, "Anyone") == ("NOAP", None)
    assert payee_answer("DE00370400440532013000", "Müller GmbH") == ("NOAP", None)  # no such account
    assert payee_answer("de89 3704 0044 0532 0130 00", "Müller GmbH") == ("MTCH", None)  # as typed
    # Accounts without a register entry confirm any name, so payout tests that do not care keep working.
    assert payee_answer(TEST_IBAN_ANY_HOLDER, "Anyone at all") == ("MTCH", None)
    assert payee_answer(TEST_IBAN_AC01, "Müller GmbH") == ("MTCH", None)
