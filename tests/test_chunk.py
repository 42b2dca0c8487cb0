from __future__ import annotations

import pytest

from pipeline.chunk import chunk_document
from pipeline.core.types import Document, Span
from pipeline.ingest import read_document
from tests.conftest import SEED_000, SEED_003


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize("budget", [24, 64, 384])
@pytest.mark.parametrize("path", [SEED_000, SEED_003], ids=["000", "003"])
def test_offsets_and_budget(path, budget: int) -> None:  # type: ignore[no-untyped-def]
    doc = read_document(path)
    chunks = chunk_document(doc, words, max_tokens=budget, overlap=1)
    assert chunks
    for i, c in enumerate(chunks):
        assert doc.text[c.start : c.end] == c.text
        assert c.index == i and c.doc_id == doc.doc_id
        assert c.n_tokens == words(c.text) <= budget
        assert any(s.start <= c.start and c.end <= s.end for s in doc.kept), "chunk crosses a dropped span"
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_every_kept_sentence_is_in_some_chunk() -> None:
    doc = read_document(SEED_003)
    chunks = chunk_document(doc, words, max_tokens=40, overlap=0)
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    for span in doc.kept:
        seg = doc.text[span.start : span.end]
        for i, ch in enumerate(seg):
            if not ch.isspace():
                assert span.start + i in covered


def test_overlap_repeats_last_sentence() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    doc = Document("d", "d.txt", "text", text, [Span(0, len(text))])
    chunks = chunk_document(doc, words, max_tokens=8, overlap=1)
    assert [c.text for c in chunks] == [
        "One two three. Four five six.",
        "Four five six. Seven eight nine.",
        "Seven eight nine. Ten eleven twelve.",
    ]


def test_long_sentence_split_at_words() -> None:
    text = " ".join(f"w{i}" for i in range(50)) + "."
    doc = Document("d", "d.txt", "text", text, [Span(0, len(text))])
    chunks = chunk_document(doc, words, max_tokens=16, overlap=0)
    assert all(c.n_tokens <= 16 for c in chunks)
    assert " ".join(c.text for c in chunks) == text


def test_chunk_ids_change_with_document_text() -> None:
    a = Document("d", "d.txt", "text", "Alpha beta. Gamma.", [Span(0, 18)])
    b = Document("d", "d.txt", "text", "Alpha beta. Delta.", [Span(0, 18)])
    assert chunk_document(a, words)[0].chunk_id != chunk_document(b, words)[0].chunk_id


def test_sentences_are_the_same_from_many_threads() -> None:
    """Strategies cut sentences in worker threads (``--concurrency``, Ray workers): a pysbd
    segmenter shared by threads mixed their texts up."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.chunk import sentences
    from pipeline.core.types import Span

    texts = [
        f"Report {i}-{j}: patients with lupus nephritis received obinutuzumab in trial {i}.{j}. Dr. Smith et al. "
        f"saw {j} cases. The FDA approved it in 2020. " * (1 + j % 3)
        for i in range(40)
        for j in range(8)
    ]

    def cut(text: str) -> list[Span]:
        return list(sentences(text, Span(0, len(text))))

    serial = [cut(t) for t in texts]
    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(cut, texts)) == serial
