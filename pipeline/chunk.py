"""Split a document's main content into sentence-aligned chunks under a token budget.

Sentences come from pysbd, one paragraph (line) at a time so long documents stay linear;
tokens are counted with the model's own tokenizer. Chunks never cross a span that
cleaning dropped, so ``document.text[chunk.start:chunk.end] == chunk.text`` always holds.
Consecutive chunks of one span share ``overlap`` sentences.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections.abc import Callable, Iterator
from functools import lru_cache

from pipeline.core.types import Chunk, Document, Span

TokenCounter = Callable[[str], int]


_local = threading.local()


def _segmenter() -> object:
    """This thread's pysbd segmenter: one shared by threads mixes their texts up (a
    ``Segmenter`` keeps the text it is working on in itself; measured: 90 of 1,200 texts
    segmented wrong by 8 threads), and strategies cut sentences in worker threads."""
    seg = getattr(_local, "segmenter", None)
    if seg is None:
        import pysbd

        seg = _local.segmenter = pysbd.Segmenter(language="en", clean=False)
    return seg


#: pysbd's cost grows faster than the length of what it is given (its list-item scan rereads
#: the paragraph per match): a paragraph is handed over in pieces of about this many characters,
#: cut where a sentence plainly ends, so work stays linear in the document's length
PIECE = 2000
PLAIN_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(\[])")


def pieces(line: str) -> Iterator[tuple[int, str]]:
    """(offset, piece) of a paragraph, cut at plain sentence ends (or spaces) near ``PIECE``."""
    start = 0
    while len(line) - start > PIECE:
        window = line[start : start + 2 * PIECE]
        ends = [m.end() for m in PLAIN_END.finditer(window) if m.end() >= PIECE // 2]
        cut = ends[0] if ends else (window.rfind(" ", PIECE // 2) + 1 or len(window))
        yield start, line[start : start + cut]
        start += cut
    yield start, line[start:]


@lru_cache(maxsize=16)
def _line_breaks(text: str) -> list[int]:
    return [m.start() for m in re.finditer("\n", text)]


def line_of(text: str, pos: int) -> tuple[int, int]:
    """(start, end) of the line ``pos`` is on, the end at its line break (a scan back to the
    last line break made every lookup in a long single-line document cost its length)."""
    breaks = _line_breaks(text)
    i = bisect.bisect_left(breaks, pos)
    return (breaks[i - 1] + 1 if i else 0), (breaks[i] if i < len(breaks) else len(text))


def sentences(text: str, span: Span) -> Iterator[Span]:
    """Sentence spans inside ``span``, one line (paragraph) at a time. Each line of ``text`` is
    segmented once (``line_sentences``, cached): chunking, the strategies' units and evidence
    lookups all ask again for the same lines. A sentence only partly inside ``span`` is clipped."""
    pos = span.start
    while pos < span.end:
        line_start, line_end = line_of(text, pos)
        line = line_sentences(text, line_start, line_end)
        # from the first sentence that ends inside the span: scanning a long line's sentences
        # from its start for every span made a single-line document quadratic
        for k in range(bisect.bisect_right(line, span.start, key=lambda s: s.end), len(line)):
            s = line[k]
            if s.start >= span.end:
                break
            start, end = max(s.start, span.start), min(s.end, span.end)
            if start < end and text[start:end].strip():
                yield Span(start, end) if (start, end) == (s.start, s.end) else _stripped(text, start, end)
        pos = line_end + 1


def _stripped(text: str, start: int, end: int) -> Span:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    return Span(start + lead, start + len(piece.rstrip()))


@lru_cache(maxsize=4)  # the documents being worked on; a batch goes one document at a time
def _segmented(text: str) -> dict[int, tuple[Span, ...]]:
    return {}


def line_sentences(text: str, start: int, end: int) -> tuple[Span, ...]:
    """The sentences of the line ``text[start:end]``, in document offsets (segmented once)."""
    done = _segmented(text)
    if start not in done:
        line = text[start:end]
        done[start] = tuple(s for offset, piece in pieces(line) for s in _sentences(piece, start + offset))
    return done[start]


def _sentences(line: str, line_start: int) -> Iterator[Span]:
    if not line.strip():
        return
    cursor = 0
    for sent in _segmenter().segment(line):  # type: ignore[attr-defined]
        piece = sent.strip()
        if not piece:
            continue
        at = line.find(piece, cursor)
        if at < 0:  # pysbd altered the text; fall back to the rest of the line
            rest = line[cursor:].strip()
            if rest:
                at = line.find(rest, cursor)
                yield Span(line_start + at, line_start + at + len(rest))
            break
        yield Span(line_start + at, line_start + at + len(piece))
        cursor = at + len(piece)


def _split_long(text: str, span: Span, max_tokens: int, count: TokenCounter) -> Iterator[Span]:
    """A sentence over the budget is cut at word boundaries into pieces under it."""
    words = list(re.finditer(r"\S+", text[span.start : span.end]))
    start_i = 0
    while start_i < len(words):
        lo, hi = start_i + 1, len(words)
        while lo < hi:  # largest end index whose piece fits
            mid = (lo + hi + 1) // 2
            piece = text[span.start + words[start_i].start() : span.start + words[mid - 1].end()]
            if count(piece) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        end_i = max(lo, start_i + 1)
        yield Span(span.start + words[start_i].start(), span.start + words[end_i - 1].end())
        start_i = end_i


def chunk_document(doc: Document, count: TokenCounter, max_tokens: int = 384, overlap: int = 1) -> list[Chunk]:
    """Pack sentences of each kept span greedily into chunks of at most ``max_tokens``."""
    if max_tokens < 4:
        raise ValueError("max_tokens must be at least 4")
    text = doc.text
    chunks: list[Chunk] = []

    def emit(group: list[tuple[Span, int]]) -> None:
        start, end = group[0][0].start, group[-1][0].end
        chunks.append(Chunk(doc.doc_id, doc.sha256, len(chunks), start, end, text[start:end], count(text[start:end])))

    for kept in doc.kept:
        units: list[tuple[Span, int]] = []
        for s in sentences(text, kept):
            n = count(text[s.start : s.end])
            if n > max_tokens:
                units.extend((p, count(text[p.start : p.end])) for p in _split_long(text, s, max_tokens, count))
            else:
                units.append((s, n))
        group: list[tuple[Span, int]] = []
        total = 0
        for unit in units:
            if group and total + 1 + unit[1] > max_tokens:  # +1: the whitespace joining sentences
                emit(group)
                carry = group[-overlap:] if overlap else []
                while carry and (
                    sum(n + 1 for _, n in carry) > max_tokens // 2
                    or sum(n + 1 for _, n in carry) + unit[1] > max_tokens
                ):
                    carry = carry[1:]
                group, total = list(carry), sum(n + 1 for _, n in carry)
            group.append(unit)
            total += unit[1] + 1
        if group:
            emit(group)
    return chunks
