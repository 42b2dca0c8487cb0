"""Biomedical value normalization (the spec's Scoring): strip a trailing citation marker.

"infection.4" -> "infection", "patients.3–5" -> "patients", "infection [4, 5]" -> "infection";
"ARI-0001" and "CD19" stay: only a number glued to punctuation, or in brackets, is a marker.
"""

from __future__ import annotations

import re

_CITATION = re.compile(r"(?<=[^\W\d_])([.,;:)\]]?)(\d{1,3}(?:[,\u2013-]\d{1,3})*)$")
_BRACKET_CITATION = re.compile(r"\s*\[\d{1,3}(?:\s*[,\u2013-]\s*\d{1,3})*\]$")


def strip_citation_marker(text: str) -> str:
    """'infection.4' -> 'infection.', 'infection [4, 5]' -> 'infection'; 'CD19' unchanged."""
    text = _BRACKET_CITATION.sub("", text)
    m = _CITATION.search(text)
    if m and m.group(1):  # only a number glued to punctuation is a marker; CD19 is a name
        return text[: m.start(2)]
    return text
