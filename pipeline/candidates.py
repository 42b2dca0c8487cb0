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
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from typing import Any

from pipeline.core.domain import CandidateKind, Finder
from pipeline.core.errors import SchemaError
from pipeline.core.schema import Schema


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


#: an image caption or credit line ("(Photo: ...)", "Image credit: ...", "© Getty Images"): no title
CAPTION = re.compile(
    r"(?i)\b(?:photo(?:graph)?|image|picture|credit|courtesy|illustration|source)\s*(?:credit\s*)?[:(]|"
    r"\((?:photo|image|credit)\b|©|\bgetty images\b|\bshutterstock\b|\b(?:pictured|shown) (?:here|above|below)\b"
)


def titles(text: str) -> list[str]:
    """Title-shaped lines: 5+ words, no final period, not a bullet, a byline or an image caption."""
    return unique(
        line.strip()
        for line in text.splitlines()
        if len(line.split()) >= 5
        and not re.match(r"\s*[•·▪‣*-]\s", line)
        and not line.rstrip().endswith(".")
        and "|" not in line
        and not CAPTION.search(line)
        and len(line) <= 500
    )


_MON = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])"
_YEAR = r"(?:1[89]\d\d|20\d\d)"
#: the shapes dates are written in; the date library reads each and says its precision.
#: Numeric day/month orders ("01/02/2025") are ambiguous and left out, as are bare years.
DATE_SHAPES = re.compile(
    rf"\b(?:{_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"  # 2025-01-30
    rf"|{_MON} {_DAY}(?:st|nd|rd|th)?,? {_YEAR}"  # Jan. 30, 2025
    rf"|{_DAY}(?:st|nd|rd|th)? (?:of )?{_MON},? {_YEAR}"  # 10 November 2017
    rf"|{_YEAR} {_MON} {_DAY}(?![\d:])"  # 2025 Aug 8 (PubMed)
    rf"|{_YEAR} {_MON}"  # 1991 Apr
    rf"|{_MON},? {_YEAR})\b"  # March 2025
)


def date_spans(text: str) -> list[str]:
    """Dates written with a month name or in ISO form, as written ("10 November 2017")."""
    return unique(m.group(0) for m in DATE_SHAPES.finditer(text) if iso_date(m.group(0)))


@cache
def _date_reader() -> Any:
    from dateparser.date import DateDataParser  # BSD-3-Clause; imported on first use (0.3 s)

    return DateDataParser(languages=["en"], settings={"RETURN_AS_TIMEZONE_AWARE": False})


@cache
def iso_date(written: str) -> str | None:
    """A written date as ISO at the precision written: "10 November 2017" -> "2017-11-10",
    "1991 Apr" -> "1991-04"; None where it is no date."""
    data = _date_reader().get_date_data(written)
    if data.date_obj is None:
        return None
    fmt = {"year": "%Y", "month": "%Y-%m"}.get(data.period or "day", "%Y-%m-%d")
    return str(data.date_obj.strftime(fmt))


def iso_dates(text: str) -> list[str]:
    """Dates in the text, as ISO strings at the precision written."""
    return unique(d for d in (iso_date(s) for s in date_spans(text)) if d)


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
    "date": CandidateKind(find=date_spans, value=iso_date),
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


def nfc(text: str) -> str:
    """NFC and plain spaces: web dumps carry decomposed accents and no-break spaces."""
    return unicodedata.normalize("NFC", text).replace("\xa0", " ")


class Locator:
    """Where a unit (a sentence, a chunk) of ``document`` starts, for a document finder.

    Units are asked for in document order, so a search starts a little before the last unit
    found and falls back to the whole document: a search from the start each time made every
    lookup cost the document's length (quadratic for a long document). A unit written twice is
    found at the copy nearest after the last one, not always at the first. -1: not in it."""

    #: characters before the last unit where a search starts (chunk overlap, a chunk-wide unit)
    BACK = 20_000

    def __init__(self, document: str) -> None:
        self.document = document
        self.last = 0

    def __call__(self, unit: str) -> int:
        at = self.document.find(unit, max(0, self.last - self.BACK))
        if at < 0:
            at = self.document.find(unit)
        if at >= 0:
            self.last = at
        return at


def find(kind: CandidateKind, text: str, document: str | None = None) -> list[str]:
    """Candidates of ``kind`` in ``text``, a piece of ``document`` when given (a kind may learn
    names from the whole document: ``CandidateKind.in_document``)."""
    return list(_find(kind, text, document if kind.in_document is not None else None))


@lru_cache(maxsize=4096)  # a chunk-wide field asks for the same chunk's candidates once per sentence
def _find(kind: CandidateKind, text: str, document: str | None) -> tuple[str, ...]:
    if document is not None and kind.in_document is not None:
        return tuple(_in_document(kind, document)(nfc(text)))
    return tuple(kind.find(nfc(text)))


@lru_cache(maxsize=16)
def _in_document(kind: CandidateKind, document: str) -> Finder:
    """The kind's finder for one document, built once: it reads the whole document (names it
    introduces, a tagger's pass), and rebuilding it for each sentence made the work per
    document quadratic in its length (a 200 KB document: 69 s)."""
    assert kind.in_document is not None
    return kind.in_document(nfc(document))


def value_of(kind: CandidateKind, span: str) -> str | None:
    """The field value a candidate span stands for (``CandidateKind.value``; else the span)."""
    return kind.value(span) if kind.value is not None else span


def values(kind: CandidateKind, text: str, document: str | None = None) -> list[str]:
    """The field values of the candidates of ``kind`` in ``text``, first occurrence of each."""
    return unique(v for v in (value_of(kind, c) for c in find(kind, text, document)) if v)


@lru_cache(maxsize=64)
def aliases(kind: CandidateKind, document: str) -> Mapping[str, str]:
    """{casefolded alias: name} of the values of ``kind`` that ``document`` says name one thing
    (read once per document)."""
    return kind.aliases(nfc(document)) if kind.aliases is not None else {}
