"""Text folding shared by grounding, merging and scoring: one table, used everywhere.

``fold``: Unicode NFKC, dashes and quotes unified (``FOLD_TABLE``), case-folded, whitespace
collapsed. Grounding folds character by character with a map back to offsets
(``pipeline.ground.folded_with_map``) using the same ``fold_char``.

``normalize``: the comparable form of a value for merging and scoring: ``fold``, then the
schema's own extra rule if it has one (``Domain.normalize``, e.g. a citation marker stripped),
then surrounding punctuation stripped.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00ad"
SINGLE_QUOTES = "\u2018\u2019\u201a\u201b\u2032\u0060\u00b4"
DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"
FOLD_TABLE = (
    dict.fromkeys(map(ord, DASHES), "-")
    | dict.fromkeys(map(ord, SINGLE_QUOTES), "'")
    | dict.fromkeys(map(ord, DOUBLE_QUOTES), '"')
)
SURROUNDING = " \t\n\r.,;:!?\"'()[]{}*"

#: an extra normalization step a schema adds (applied to the folded value)
Normalizer = Callable[[str], str]


def fold_char(c: str) -> str:
    """One character folded: NFKC, the dash/quote table, case-fold (may give several chars)."""
    return unicodedata.normalize("NFKC", c).translate(FOLD_TABLE).casefold()


def fold(text: str) -> str:
    """NFKC + unified dashes/quotes + case-fold + single spaces. Keeps punctuation."""
    text = unicodedata.normalize("NFKC", text).translate(FOLD_TABLE).casefold()
    return " ".join(text.split())


def normalize(value: Any, extra: Normalizer | None = None) -> str:
    """The comparable form of a scalar value ('' for None)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 683000000.0 and 683000000 are one number
    text = fold(str(value))
    if extra is not None:
        text = extra(text)
    return text.strip(SURROUNDING)
