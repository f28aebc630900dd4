"""Conversion of free text (names, addresses, remittance information) to the EPC SEPA character set.

Why: the SEPA rulebooks only guarantee the basic Latin set ``a-z A-Z 0-9 / - ? : ( ) . , ' + space``
end to end; a bank may reject or mangle anything else. We convert deterministically and *never* drop a
character silently: what cannot be converted raises :class:`SepaTextError` naming the field, so the
caller sees the problem before any money moves.

Conversion rules, applied in order:

1. The text is NFC-normalised (a decomposed ``u`` + combining diaeresis counts as ü). Whitespace
   runs (spaces, tabs, newlines, no-break spaces) collapse to one space; the ends are trimmed.
2. German umlauts and ß follow the German convention: ä→ae, ö→oe, ü→ue, ß→ss. Capitals become
   ``Ae/Oe/Ue`` in mixed case and ``AE/OE/UE`` in upper-case context (``MÜLLER`` → ``MUELLER``,
   ``Özil`` → ``Oezil``); capital sharp s (U+1E9E) → SS.
3. Letters without a Unicode decomposition get their customary spelling: Æ→AE, Ø→OE, Œ→OE, Þ→TH
   (capital forms follow rule 2's casing), æ→ae, ø→oe, œ→oe, þ→th, Ł→L, ł→l, Đ/Ð→D, đ/ð→d,
   dotless i (U+0131) → i.
4. ``&`` becomes ``+`` — chosen over "and"/"und" because it is language-neutral and keeps the length
   unchanged, so a name that fitted still fits. Typographic apostrophes and accents (U+2018, U+2019,
   U+201A, U+0060, U+00B4, U+2032) become ``'``; hyphens, dashes and the minus sign (U+2010-U+2014,
   U+2212) become ``-``.
5. Unicode NFKD decomposition, then combining marks are removed: é→e, ñ→n, Å→A, ﬁ→fi, full-width
   forms → ASCII.
6. Anything still outside the set (``@ # _ " € ; % *``, non-Latin scripts, emoji, ...) raises.

Lengths are checked *after* conversion (ä→ae makes text longer): names ≤ 70, remittance (``Ustrd``)
≤ 140, town ≤ 35, street ≤ 70, postcode ≤ 16 characters. Too long raises instead of truncating:
silently cutting a remittance reference breaks the creditor's reconciliation.
"""

from __future__ import annotations

import unicodedata


class SepaTextError(ValueError):
    """Text cannot be expressed in the EPC Latin character set, is empty, or is too long.

    ``field`` names the offending input so the edge can report a precise field violation.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


SEPA_ALLOWED_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-?:().,'+ ")
"""The EPC basic Latin character set every SEPA participant must support."""

NAME_MAX_LENGTH = 70
REMITTANCE_MAX_LENGTH = 140
TOWN_MAX_LENGTH = 35
STREET_MAX_LENGTH = 70
POSTCODE_MAX_LENGTH = 16

# Upper-case letters whose replacement has two letters: (mixed-case form, upper-case-context form).
_CAPITAL_DIGRAPHS: dict[str, tuple[str, str]] = {
    "Ä": ("Ae", "AE"),
    "Ö": ("Oe", "OE"),
    "Ü": ("Ue", "UE"),
    "Æ": ("Ae", "AE"),
    "Ø": ("Oe", "OE"),
    "Œ": ("Oe", "OE"),
    "Þ": ("Th", "TH"),
}
_SIMPLE_REPLACEMENTS: dict[str, str] = {
    "ä": "ae",
    "ö": "oe",
    "ü": "ue",
    "ß": "ss",
    "ẞ": "SS",
    "æ": "ae",
    "ø": "oe",
    "œ": "oe",
    "þ": "th",
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "Ð": "D",
    "đ": "d",
    "ð": "d",
    "\u0131": "i",  # dotless i
    "&": "+",
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark (typographic apostrophe)
    "\u201a": "'",  # single low-9 quotation mark
    "`": "'",
    "\u00b4": "'",  # acute accent
    "\u2032": "'",  # prime
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2212": "-",  # minus sign
}


def _upper_context(text: str, index: int) -> bool:
    """True when the capital at ``index`` sits in an all-caps word (``MÜLLER``, ``GÖ``)."""
    nxt = text[index + 1] if index + 1 < len(text) else ""
    if nxt.isalpha():
        return nxt.isupper()
    prev = text[index - 1] if index > 0 else ""
    return prev.isalpha() and prev.isupper()


def transliterate(value: str, *, field: str) -> str:
    """Convert ``value`` to the SEPA character set (rules 1-6 above) without a length check.

    Raises :class:`SepaTextError` naming ``field`` and listing the characters that cannot be
    converted (their code points, not the whole value).
    """
    collapsed = " ".join(unicodedata.normalize("NFC", value).split())  # NFC: decomposed ü is ü too
    parts: list[str] = []
    for index, char in enumerate(collapsed):
        if char in _CAPITAL_DIGRAPHS:
            mixed, upper = _CAPITAL_DIGRAPHS[char]
            parts.append(upper if _upper_context(collapsed, index) else mixed)
        else:
            parts.append(_SIMPLE_REPLACEMENTS.get(char, char))
    decomposed = unicodedata.normalize("NFKD", "".join(parts))
    result = "".join(
        _SIMPLE_REPLACEMENTS.get(char, char) for char in decomposed if not unicodedata.combining(char)
    )  # second pass: compatibility forms such as the full-width ampersand (U+FF06) only become & in NFKD
    result = " ".join(result.split())  # NFKD can turn exotic spaces into runs of plain spaces
    bad = sorted({char for char in result if char not in SEPA_ALLOWED_CHARACTERS})
    if bad:
        listed = ", ".join(f"{char!r} (U+{ord(char):04X})" for char in bad)
        raise SepaTextError(field, f"characters outside the SEPA character set: {listed}")
    return result


def to_sepa_text(value: str, *, field: str, max_length: int) -> str:
    """Transliterate ``value`` and enforce 1 ≤ length ≤ ``max_length`` (measured after conversion)."""
    result = transliterate(value, field=field)
    if not result:
        raise SepaTextError(field, "must not be empty")
    if len(result) > max_length:
        raise SepaTextError(field, f"is {len(result)} characters after SEPA conversion, at most {max_length} allowed")
    return result


def sepa_name(value: str, *, field: str = "creditor_name") -> str:
    """A party name (creditor or debtor ``Nm``): SEPA characters, at most 70 of them."""
    return to_sepa_text(value, field=field, max_length=NAME_MAX_LENGTH)


def sepa_remittance(value: str, *, field: str = "remittance") -> str:
    """Unstructured remittance information (``Ustrd``): SEPA characters, at most 140 of them."""
    return to_sepa_text(value, field=field, max_length=REMITTANCE_MAX_LENGTH)


def is_sepa_text(value: str) -> bool:
    """True when ``value`` already consists of SEPA characters only (no conversion needed)."""
    return all(char in SEPA_ALLOWED_CHARACTERS for char in value)
