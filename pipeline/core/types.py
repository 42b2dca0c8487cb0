"""Data that crosses stage boundaries: documents and chunks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Span:
    """A half-open character range ``[start, end)`` into a document's text."""

    start: int
    end: int


@dataclass
class Document:
    """One input document. ``text`` is what every offset in the pipeline points into.

    For ``.txt`` and ``.md`` files that is the file's text as read; for ``.html`` it is the
    main-content text extracted from the markup; for ``.pdf`` it is the pages' text, built by
    ``pipeline.pdf``. ``kept`` lists the spans of ``text`` that survived boilerplate cleaning;
    extraction only ever sees text inside them.

    ``pages`` is empty unless the source has pages (PDF). Then page ``i + 1`` is ``pages[i]``,
    a span into ``text``; spans are sorted and disjoint (the separator between two pages belongs
    to neither). ``pipeline.pdf.pages_of(doc.pages, start, end)`` turns offsets into page numbers.
    """

    doc_id: str
    path: str
    format: str
    text: str
    kept: list[Span] = field(default_factory=list)
    pages: list[Span] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def sha256(self) -> str:
        return sha256(self.text)

    @property
    def cleaned_text(self) -> str:
        return "\n".join(self.text[s.start : s.end] for s in self.kept)


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences of one document, under the token budget."""

    doc_id: str
    doc_sha256: str
    index: int
    start: int
    end: int
    text: str
    n_tokens: int

    @property
    def content_hash(self) -> str:
        return sha256(self.text)

    @property
    def chunk_id(self) -> str:
        where = sha256(f"{self.doc_sha256}:{self.start}:{self.end}")[:10]
        return f"{self.doc_id}:{self.index:04d}:{where}"
