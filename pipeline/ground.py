"""Ground every record's evidence to a character span of the original document.

Alignment tries, in order: ``exact`` (the quote occurs verbatim in the chunk), ``normalized``
(equal after folding case, whitespace, dashes and quotes with ``pipeline.core.normalize``'s
table), ``fuzzy`` (rapidfuzz partial-ratio alignment at or above ``FUZZY_THRESHOLD``), else
``none``. Offsets are always in the document's coordinates.

A record is grounded when its evidence is located and quotes words, and every free-text key
value is a phrase that occurs in its evidence or its chunk (``unsupported``).
"""

from __future__ import annotations

import re
import typing
import unicodedata
from array import array
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rapidfuzz import fuzz

from pipeline.core.normalize import fold_char

if TYPE_CHECKING:
    from pipeline.core.schema import Schema
    from pipeline.core.types import Chunk, Document

FUZZY_THRESHOLD = 90.0
#: what grounding adds to a record
GROUNDING_KEYS = ("evidence_start", "evidence_end", "alignment", "grounded")


@dataclass(frozen=True)
class Alignment:
    start: int | None
    end: int | None
    method: str  # exact | normalized | fuzzy | none
    score: float

    @property
    def grounded(self) -> bool:
        return self.method != "none"


WHITESPACE = re.compile(r"\s+")
ASCII_FOLD = {ord("`"): "'"}  # the one ASCII character FOLD_TABLE changes


@lru_cache(maxsize=16)  # the same chunk and document texts are folded for every record
def folded_with_map(text: str) -> tuple[str, array[int]]:
    """Text folded char by char (whitespace runs -> one space) and a map back to offsets.
    A combining mark is composed with the character before it, as NFKC does for a string.
    The map is an array of 4-byte offsets (documents are at most 50 MB): a list of Python
    ints held 36 bytes per character, 360 MB for a 10 MB document."""
    if text.isascii():  # the common case, without a Python call per character
        return _folded_ascii(text)
    out: list[str] = []
    index = array("i")
    prev_space = False
    for i, c in enumerate(text):
        if c.isspace():
            if not prev_space:
                out.append(" ")
                index.append(i)
            prev_space = True
            continue
        prev_space = False
        if out and unicodedata.combining(c):
            composed = fold_char(out[-1] + c)
            if len(composed) == 1:
                out[-1] = composed
                continue
        for fc in fold_char(c):
            out.append(fc)
            index.append(i)
    return "".join(out), index


def _folded_ascii(text: str) -> tuple[str, array[int]]:
    low = text.translate(ASCII_FOLD).lower()
    parts: list[str] = []
    index = array("i")
    pos = 0
    for m in WHITESPACE.finditer(low):
        parts.append(low[pos : m.start()])
        index.extend(range(pos, m.start()))
        parts.append(" ")
        index.append(m.start())
        pos = m.end()
    parts.append(low[pos:])
    index.extend(range(pos, len(low)))
    return "".join(parts), index


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


def ground_records(
    records: dict[str, list[dict[str, Any]]], chunk: Chunk, doc: Document, schema: Schema | None = None
) -> list[str]:
    """Add evidence offsets (document coordinates), alignment method and grounded flag to
    every record; return one line per ungrounded record saying why, for a re-ask."""
    types = {rt.name: rt for rt in schema.record_types} if schema is not None else {}
    problems: list[str] = []
    for name, rows in records.items():
        rt = types.get(name)
        for i, row in enumerate(rows):
            evidence = row.get("evidence") or ""
            a = align(evidence, chunk.text, chunk.start)
            if not a.grounded:  # evidence quoted from elsewhere in the document still counts
                a = align(evidence, doc.text)
            reason = None if a.grounded else f"its evidence {evidence[:120]!r} is not a verbatim quote of the text"
            if reason is None:  # a key value may come from elsewhere in the document (its title, say)
                reason = unsupported(rt, row, evidence, chunk.text, doc.text)
            row.update(
                evidence_start=a.start, evidence_end=a.end, alignment=a.method, grounded=a.grounded and reason is None
            )
            if reason is not None:
                problems.append(f"{name}[{i}]: {reason}")
    return problems
