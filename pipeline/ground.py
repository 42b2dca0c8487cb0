"""Ground every record's evidence to a character span of the original document.

Alignment tries, in order: ``exact`` (the quote occurs verbatim in the chunk), ``normalized``
(equal after folding case, whitespace, dashes and quotes), ``fuzzy`` (rapidfuzz partial-ratio
alignment at or above ``FUZZY_THRESHOLD``), else ``none``. Offsets are always in the
document's coordinates.
"""

from __future__ import annotations

import re
import typing
import unicodedata
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

FUZZY_THRESHOLD = 90.0

DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-")
QUOTES = dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032"), "'") | dict.fromkeys(
    map(ord, "\u201c\u201d\u201e\u201f\u2033"), '"'
)


@dataclass(frozen=True)
class Alignment:
    start: int | None
    end: int | None
    method: str  # exact | normalized | fuzzy | none
    score: float

    @property
    def grounded(self) -> bool:
        return self.method != "none"


def fold_char(c: str) -> str:
    return unicodedata.normalize("NFKC", c).translate(DASHES).translate(QUOTES).casefold()


def folded_with_map(text: str) -> tuple[str, list[int]]:
    """Text folded char by char (whitespace runs -> one space) and a map back to offsets."""
    out: list[str] = []
    index: list[int] = []
    prev_space = False
    for i, c in enumerate(text):
        if c.isspace():
            if not prev_space:
                out.append(" ")
                index.append(i)
            prev_space = True
            continue
        prev_space = False
        for fc in fold_char(c):
            out.append(fc)
            index.append(i)
    return "".join(out), index


def align(quote: str, text: str, offset: int = 0) -> Alignment:
    """Locate ``quote`` in ``text``; returned offsets are ``offset`` + position in ``text``."""
    quote = quote.strip()
    if not quote:
        return Alignment(None, None, "none", 0.0)
    at = text.find(quote)
    if at >= 0:
        return Alignment(offset + at, offset + at + len(quote), "exact", 100.0)
    fq, _ = folded_with_map(quote)
    fq = fq.strip(" ")
    ft, index = folded_with_map(text)
    at = ft.find(fq)
    if at >= 0 and fq:
        end = index[at + len(fq) - 1] + 1
        return Alignment(offset + index[at], offset + end, "normalized", 100.0)
    if len(fq) >= 12:
        res = fuzz.partial_ratio_alignment(fq, ft, score_cutoff=FUZZY_THRESHOLD)
        if res is not None and res.dest_end > res.dest_start:
            start = index[res.dest_start]
            end = index[res.dest_end - 1] + 1
            return Alignment(offset + start, offset + end, "fuzzy", float(res.score))
    return Alignment(None, None, "none", 0.0)


def contains_value(value: str, text: str) -> bool:
    """Does ``value`` occur in ``text`` after folding (case, whitespace, dashes, quotes)?"""
    fv = folded_with_map(value.strip())[0].strip(" ")
    return bool(fv) and fv in folded_with_map(text)[0]


def is_free_text(info: Any) -> bool:
    """A plain string field (not an enum, not a pattern-checked code such as a date)."""
    ann = info.annotation
    args = typing.get_args(ann) or (ann,)
    if any(typing.get_origin(a) is typing.Literal for a in args):
        return False
    if any(getattr(m, "pattern", None) for m in info.metadata):
        return False
    return str in args or any(typing.get_origin(a) is list for a in args)


WORD = re.compile(r"[^\W\d_]{2,}")
LETTER = re.compile(r"[^\W\d_]")


def unsupported(rt: Any, row: dict[str, Any], evidence: str, *texts: str) -> str | None:
    """Why ``row`` is not grounded by what it says, or None. Its evidence must quote words
    (a bare "2" locates anywhere and supports nothing), and every free-text key field of
    record type ``rt`` must hold a phrase (some letter) that occurs in the evidence or in
    one of ``texts`` (its chunk, or the document)."""
    if not WORD.search(evidence):
        return f"its evidence {evidence[:40]!r} quotes no words"
    for k in rt.key_fields if rt is not None else ():
        value = row.get(k)
        info = rt.model.model_fields.get(k)
        if info is None or not is_free_text(info) or not isinstance(value, str) or not value.strip():
            continue
        if not LETTER.search(value):
            return f"its {k} {value[:40]!r} has no letters"
        if not any(contains_value(value, t) for t in (evidence, *texts)):
            return f"its {k} {value[:80]!r} does not occur in the text"
    return None


def strip_trailing_marker(value: str) -> str:
    """'infection.4' -> 'infection': drop a citation number glued to final punctuation."""
    return re.sub(r"(?<=[A-Za-z\)])[.,;]?\d{1,3}$", "", value).strip()
