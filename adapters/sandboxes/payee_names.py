"""How the sandbox bank compares the name a payer gives with the account holder's (EPC VOP scheme).

Why here: in Verification of Payee the matching is the payee's bank's, not the payer's; the sandbox
plays that bank, so the rule lives with the sandbox. Our service only acts on the answer
(server/domain/payee_verification.py). Pure functions, no I/O.

The rule, as the scheme describes the categories:

* MATCH: the same name, up to surrounding and repeated white space (Unicode NFC).
* CLOSE_MATCH: the same words once case, diacritics (``ü`` ↔ ``ue`` ↔ ``u``, ``é`` → ``e``, ``ß`` →
  ``ss``), punctuation, legal-form spellings (``Gesellschaft mit beschränkter Haftung`` ↔ ``GmbH``,
  ``B.V.`` ↔ ``BV`` ...) and word order are set aside. The bank then returns the holder's name.
* NO_MATCH: anything else (a missing or extra word, another name).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from typing import Final

__all__ = ["NameMatch", "close_key", "compare_names", "exact_form"]


class NameMatch(StrEnum):
    """The answer for a name the bank knows the holder of (NOT_POSSIBLE is about the account, not names)."""

    MATCH = "MATCH"
    CLOSE_MATCH = "CLOSE_MATCH"
    NO_MATCH = "NO_MATCH"


# Legal forms as written out or abbreviated, each to one token, matched on the folded words (lower case,
# no diacritics, no punctuation). Longest first, so a longer spelling wins over a prefix of it.
_LEGAL_FORMS: Final[dict[str, str]] = {
    "gesellschaft mit beschrankter haftung": "gmbh",
    "gesellschaft mbh": "gmbh",
    "ges m b h": "gmbh",
    "g m b h": "gmbh",
    "aktiengesellschaft": "ag",
    "a g": "ag",
    "kommanditgesellschaft": "kg",
    "offene handelsgesellschaft": "ohg",
    "eingetragener kaufmann": "ek",
    "eingetragene kauffrau": "ek",
    "eingetragener verein": "ev",
    "unternehmergesellschaft haftungsbeschrankt": "ug",
    "ug haftungsbeschrankt": "ug",
    "societe a responsabilite limitee": "sarl",
    "s a r l": "sarl",
    "sa rl": "sarl",
    "societe anonyme": "sa",
    "s a": "sa",
    "societe par actions simplifiee": "sas",
    "s a s": "sas",
    "besloten vennootschap": "bv",
    "b v": "bv",
    "naamloze vennootschap": "nv",
    "n v": "nv",
    "societa a responsabilita limitata": "srl",
    "s r l": "srl",
    "societa per azioni": "spa",
    "s p a": "spa",
    "sociedad limitada": "sl",
    "sociedad de responsabilidad limitada": "srl",
    "sociedad anonima": "sa",
    "public limited company": "plc",
    "limited": "ltd",
}
_LEGAL_FORM_PATTERN: Final = re.compile(
    r"\b(?:" + "|".join(re.escape(form) for form in sorted(_LEGAL_FORMS, key=len, reverse=True)) + r")\b"
)
# German umlauts are also written with a trailing e (Müller, Mueller); after the diacritics are gone
# both read "muller". Applied to both names alike, so words that merely contain "ue" stay comparable.
_UMLAUT_SPELLINGS: Final = re.compile(r"(?<=[aou])e")


def exact_form(name: str) -> str:
    """The name as the bank compares it for a MATCH: NFC, single spaces, no surrounding space."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def _fold(name: str) -> str:
    """Lower case, ``ß`` as ``ss``, diacritics and punctuation gone (dots join: ``B.V.`` → ``bv``)."""
    text = unicodedata.normalize("NFKD", name.casefold().replace("ß", "ss"))
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = text.replace(".", " ").replace("&", " and ")
    return " ".join(re.sub(r"[^\w\s]|_", " ", text).split())


def close_key(name: str) -> tuple[str, ...]:
    """The name with everything a close match may differ in set aside: its words, folded, legal forms
    in one spelling, umlaut spellings merged, in sorted order (word order does not count)."""
    folded = _LEGAL_FORM_PATTERN.sub(lambda found: _LEGAL_FORMS[found.group(0)], _fold(name))
    return tuple(sorted(_UMLAUT_SPELLINGS.sub("", word) for word in folded.split()))


def compare_names(given: str, holder: str) -> NameMatch:
    """The scheme's answer for `given` against the account holder's name `holder`."""
    if exact_form(given) == exact_form(holder):
        return NameMatch.MATCH
    key = close_key(given)
    if key and key == close_key(holder):
        return NameMatch.CLOSE_MATCH
    return NameMatch.NO_MATCH
