"""Value normalization shared by grounding, merging and scoring (see the spec's Scoring).

``normalize``: Unicode NFKC, case-fold, unify dashes and quotes, collapse whitespace, strip
surrounding punctuation and a trailing citation marker ("infection.4" -> "infection",
"infection [4]" -> "infection").
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00ad"), "-")
QUOTES = dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032\u0060\u00b4"), "'") | dict.fromkeys(
    map(ord, "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"), '"'
)
_SURROUNDING = " \t\n\r.,;:!?\"'()[]{}*"
_CITATION = re.compile(r"(?<=[^\W\d_])([.,;:)\]]?)(\d{1,3}(?:[,\u2013-]\d{1,3})*)$")
_BRACKET_CITATION = re.compile(r"\s*\[\d{1,3}(?:\s*[,\u2013-]\s*\d{1,3})*\]$")


def fold(text: str) -> str:
    """NFKC + case-fold + unified dashes/quotes + single spaces. Keeps punctuation."""
    text = unicodedata.normalize("NFKC", text).translate(DASHES).translate(QUOTES).casefold()
    return " ".join(text.split())


def strip_citation_marker(text: str) -> str:
    """'infection.4' -> 'infection.', 'patients.3' -> 'patients.', 'infection [4, 5]' -> 'infection';
    'ARI-0001' and 'CD19' unchanged."""
    text = _BRACKET_CITATION.sub("", text)
    m = _CITATION.search(text)
    if m and m.group(1):  # only a number glued to punctuation is a marker; CD19 is a name
        return text[: m.start(2)]
    return text


def normalize(value: Any) -> str:
    """The comparable form of a scalar value ('' for None)."""
    if value is None:
        return ""
    text = fold(str(value))
    text = strip_citation_marker(text).strip(_SURROUNDING)
    return text
