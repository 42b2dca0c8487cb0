"""Candidate spans: the pieces of a text that may fill a field, by kind.

A field declares ``json_schema_extra={"candidates": kind}``; ``rules`` builds records from
these spans and ``select`` constrains the model's choice to them, so every value is a span of
the text. This module holds the kinds any schema may use; a schema package adds its own
(``Domain.candidates``), and a field of a plain schema that declares none gets ``phrase``.

Generic kinds: ``date`` (ISO at the precision written), ``doi``, ``title`` (title-shaped
lines) and ``phrase`` (the content-word phrases of a sentence and their shorter ends).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import date

from pipeline.core.domain import CandidateKind
from pipeline.core.errors import SchemaError
from pipeline.core.schema import Schema

MONTHS = {
    m: i
    for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)
}


def unique(items: Iterable[str]) -> list[str]:
    """Stripped, non-empty, first occurrence (case-insensitive) of each item, in order."""
    seen: set[str] = set()
    out = []
    for item in items:
        item = item.strip(" ,;:")
        if item and item.casefold() not in seen and len(item) <= 500:
            seen.add(item.casefold())
            out.append(item)
    return out


def titles(text: str) -> list[str]:
    """Title-shaped lines: 5+ words, no final period, not a bullet or a byline."""
    return unique(
        line.strip()
        for line in text.splitlines()
        if len(line.split()) >= 5
        and not re.match(r"\s*[•·▪‣*-]\s", line)
        and not line.rstrip().endswith(".")
        and "|" not in line
        and len(line) <= 500
    )


def iso_dates(text: str) -> list[str]:
    """Dates in the text, as ISO strings at the precision written."""
    out = []
    mon = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
    for m in re.finditer(rf"\b{mon} (\d{{1,2}}), (\d{{4}})\b", text):
        out.append(_iso(int(m.group(3)), MONTHS[m.group(1).lower()], int(m.group(2))))
    for m in re.finditer(rf"\b(\d{{4}}) {mon} (\d{{1,2}})\b", text):
        out.append(_iso(int(m.group(1)), MONTHS[m.group(2).lower()], int(m.group(3))))
    for m in re.finditer(rf"\b{mon} (\d{{4}})\b", text):
        out.append(f"{int(m.group(2)):04d}-{MONTHS[m.group(1).lower()]:02d}")
    return unique(d for d in out if d)


def _iso(y: int, m: int, d: int) -> str:
    try:
        return date(y, m, d).isoformat()
    except ValueError:
        return ""


def dois(text: str) -> list[str]:
    return unique(m.group(0).rstrip(".") for m in re.finditer(r"\b10\.\d{4,9}/[^\s\"<>]+", text))


# English function words: they end a phrase. Grammar of the language, not of any domain.
FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "some",
        "any",
        "each",
        "every",
        "no",
        "not",
        "nor",
        "and",
        "or",
        "but",
        "if",
        "then",
        "than",
        "so",
        "as",
        "of",
        "in",
        "on",
        "at",
        "to",
        "from",
        "by",
        "with",
        "without",
        "within",
        "into",
        "onto",
        "over",
        "under",
        "after",
        "before",
        "during",
        "since",
        "until",
        "about",
        "against",
        "between",
        "among",
        "through",
        "via",
        "per",
        "for",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "has",
        "have",
        "had",
        "do",
        "does",
        "did",
        "will",
        "would",
        "shall",
        "should",
        "can",
        "could",
        "may",
        "might",
        "must",
        "it",
        "its",
        "it's",
        "they",
        "them",
        "their",
        "he",
        "him",
        "his",
        "she",
        "her",
        "we",
        "us",
        "our",
        "you",
        "your",
        "i",
        "me",
        "my",
        "who",
        "whom",
        "whose",
        "which",
        "what",
        "when",
        "where",
        "why",
        "how",
        "there",
        "here",
        "also",
        "both",
        "either",
        "neither",
        "such",
        "only",
        "very",
        "more",
        "most",
        "less",
        "least",
        "other",
        "others",
        "same",
        "own",
        "all",
        "while",
        "whereas",
        "because",
        "although",
        "though",
        "however",
    ]
)
_TOKEN = re.compile(r"[^\W_][\w'’+/.-]*[^\W_]|[^\W_]|%")
MAX_PHRASE_WORDS = 6
LETTER = re.compile(r"[^\W\d_]")  # a phrase names something: "2023" or "1" alone does not


def phrases(text: str) -> list[str]:
    """Runs of up to six words between punctuation and function words, with their shorter
    starts and ends ("severe nausea" gives "severe nausea", "severe" and "nausea"); a bare
    number is no phrase."""
    out: list[str] = []
    for piece in re.split(r"[,;:()\[\]\"“”!?]|\.(?:\s|$)|\s[-–—]\s", text):
        run: list[re.Match[str]] = []
        for m in [*_TOKEN.finditer(piece), None]:
            if m is not None and m.group(0).lower() not in FUNCTION_WORDS:
                run.append(m)
                continue
            for i in range(len(run)):
                for j in range(len(run), i, -1):
                    phrase = piece[run[i].start() : run[j - 1].end()]
                    if j - i <= MAX_PHRASE_WORDS and (i == 0 or j == len(run)) and LETTER.search(phrase):
                        out.append(phrase)
            run = []
    return unique(out)


GENERIC_KINDS: dict[str, CandidateKind] = {
    "date": CandidateKind(find=iso_dates),
    "doi": CandidateKind(find=dois),
    "title": CandidateKind(find=titles),
    # phrases are many and mostly not values: a small model asked to list records over them
    # lists until it runs out of tokens, so a sentence gets at most three
    "phrase": CandidateKind(find=phrases, per_unit=3),
}


def kind_of(schema: Schema, kind: str) -> CandidateKind:
    """The schema package's kind of that name, else the generic one."""
    found = schema.domain.candidates.get(kind) or GENERIC_KINDS.get(kind)
    if found is None:
        known = ", ".join(sorted({*schema.domain.candidates, *GENERIC_KINDS}))
        raise SchemaError(f"schema {schema.name!r}: unknown candidate kind {kind!r}", f"use one of: {known}")
    return found


def find(kind: CandidateKind, text: str) -> list[str]:
    """Candidates of ``kind`` in ``text`` (NFC first: web dumps carry decomposed accents)."""
    return kind.find(unicodedata.normalize("NFC", text).replace("\xa0", " "))
