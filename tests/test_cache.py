"""The response cache: the same chunk text under the same prompt, schema, model and decoding
is extracted once, in any document or run; ``--refresh`` bypasses it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb

from pipeline.batch import ExtractConfig, run_extract
from pipeline.store import Store
from pipeline.store.migrations import MIGRATIONS, m001_core_tables
from tests.conftest import FakeProvider
from tests.test_extract_store import DOC, GOOD, rows, write_doc


def extract(paths: list[Path], db: Path, fake: FakeProvider, **cfg: object):  # type: ignore[no-untyped-def]
    # the fixtures keep an ungrounded record on purpose; the grounding re-ask has its own tests (test_reground.py)
    cfg.setdefault("reground", False)
    return run_extract(paths, db=db, config=ExtractConfig(**cfg), provider=fake, progress=False)  # type: ignore[arg-type]


def test_same_text_in_another_document_reuses_the_response(tmp_path: Path, db: Path) -> None:
    fake = FakeProvider(default=GOOD)
    first = extract([write_doc(tmp_path, "a.txt")], db, fake)
    second = extract([write_doc(tmp_path, "c.txt", DOC)], db, fake)  # same text, another document and run
    assert (first.calls, second.calls, second.chunks_cached, second.chunks_extracted) == (1, 0, 1, 0)
    assert second.records == first.records
    assert len(fake.requests) == 1
    # grounded against the new document, stored under its own chunk
    assert rows(db, "SELECT doc_id, evidence_start, grounded FROM rec_therapies ORDER BY doc_id") == [
        ("a", 0, True),
        ("c", 0, True),
    ]
    assert rows(db, "SELECT outcome FROM run_chunks ORDER BY outcome") == [("cached",), ("extracted",)]
    assert rows(db, "SELECT n_chunks_cached FROM runs ORDER BY started_at") == [(0,), (1,)]
    assert rows(db, "SELECT count(*) FROM llm_cache") == [(1,)]


def test_same_text_twice_in_one_run_is_one_call(tmp_path: Path, db: Path) -> None:
    fake = FakeProvider(default=GOOD)
    s = extract([write_doc(tmp_path, "a.txt"), write_doc(tmp_path, "b.txt")], db, fake)
    assert (s.calls, s.chunks_extracted, s.chunks_cached, s.records["therapies"]) == (1, 1, 1, 2)


def test_refresh_bypasses_the_cache_and_other_decoding_misses(tmp_path: Path, db: Path) -> None:
    fake = FakeProvider(default=GOOD)
    extract([write_doc(tmp_path, "a.txt")], db, fake)
    c = write_doc(tmp_path, "c.txt")
    assert extract([c], db, fake, refresh=True).calls == 1
    other = write_doc(tmp_path, "d.txt")
    assert extract([other], db, fake, max_tokens=256).calls == 1  # other decoding: another cache key
    assert extract([other], db, FakeProvider()).chunks_cached == 1  # default decoding: a's response
    assert rows(db, "SELECT count(*) FROM llm_cache") == [(2,)]


def test_failed_chunks_are_not_cached(tmp_path: Path, db: Path) -> None:
    fake = FakeProvider(["nope", "nope", "nope"], default=GOOD)
    s = extract([write_doc(tmp_path, "a.txt"), write_doc(tmp_path, "b.txt")], db, fake)
    assert (s.chunks_failed, s.chunks_extracted, s.chunks_cached, s.calls) == (1, 1, 0, 4)


def test_cache_migration_from_the_oldest_schema(db: Path) -> None:
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    m001_core_tables(con)
    con.execute("INSERT INTO _migrations VALUES ('001_core_tables', ?)", [datetime.now()])
    con.execute("INSERT INTO runs (run_id, started_at, status) VALUES ('old', now(), 'completed')")
    con.close()
    with Store(db):
        pass
    assert [r[0] for r in rows(db, "SELECT name FROM _migrations ORDER BY name")] == [m[0] for m in MIGRATIONS]
    assert rows(db, "SELECT run_id, n_chunks_cached FROM runs") == [("old", 0)]
    assert rows(db, "SELECT count(*) FROM llm_cache") == [(0,)]
