from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.batch import ExtractConfig, run_extract
from pipeline.core.errors import StoreError
from pipeline.store import Store
from pipeline.store.migrations import MIGRATIONS
from tests.conftest import FakeProvider

DOC = "KYV-101 is a CD19 CAR T cell therapy. Kyverna Therapeutics develops KYV-101 for myasthenia gravis."

GOOD = {
    "therapies": [
        {
            "name": "KYV-101",
            "target": "CD19",
            "indications": ["myasthenia gravis"],
            "evidence": "KYV-101 is a CD19 CAR T cell therapy.",
        }
    ],
    "conditions": [{"name": "myasthenia gravis", "evidence": "develops KYV-101 for myasthenia  gravis"}],
    "organizations": [{"name": "Kyverna Therapeutics", "kind": "company", "evidence": "not in the text at all"}],
}


def write_doc(tmp_path: Path, name: str = "kyv.txt", text: str = DOC) -> Path:
    path = tmp_path / "docs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def extract(paths: list[Path], db: Path, fake: FakeProvider, **cfg: Any):  # type: ignore[no-untyped-def]
    # the fixtures keep an ungrounded record on purpose; the grounding re-ask has its own tests (test_reground.py)
    cfg.setdefault("reground", False)
    return run_extract(paths, db=db, config=ExtractConfig(**cfg), provider=fake, progress=False)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_records_land_with_provenance(tmp_path: Path, db: Path, fake: FakeProvider) -> None:
    fake.push(GOOD)
    summary = extract([write_doc(tmp_path)], db, fake)
    assert summary.status == "completed"
    assert (summary.documents, summary.chunks, summary.calls) == (1, 1, 1)
    assert summary.records["therapies"] == 1 and summary.records["conditions"] == 1
    (therapy,) = rows(
        db,
        "SELECT name, target, indications, evidence, evidence_start, evidence_end, alignment, grounded, doc_id FROM rec_therapies",
    )
    assert therapy == (
        "KYV-101",
        "CD19",
        ["myasthenia gravis"],
        "KYV-101 is a CD19 CAR T cell therapy.",
        0,
        37,
        "exact",
        True,
        "kyv",
    )
    (cond,) = rows(db, "SELECT evidence_start, evidence_end, alignment FROM rec_conditions")
    assert DOC[cond[0] : cond[1]] == "develops KYV-101 for myasthenia gravis" and cond[2] == "normalized"
    (org,) = rows(db, "SELECT grounded, alignment FROM rec_organizations")
    assert org == (False, "none")
    (call,) = rows(
        db,
        "SELECT status, attempt, tokens_in, tokens_out, model, prompt_hash IS NOT NULL, schema_hash FROM llm_calls",
    )
    assert call[:5] == ("ok", 1, 10, 5, "fake:queued") and call[5]
    (run,) = rows(db, "SELECT status, n_calls, tokens_in, tokens_out, model FROM runs")
    assert run == ("completed", 1, 10, 5, "fake:queued")
    (chunk,) = rows(db, "SELECT start_offset, end_offset, text FROM chunks")
    assert DOC[chunk[0] : chunk[1]] == chunk[2]


def test_rerun_is_idempotent_and_makes_no_calls(tmp_path: Path, db: Path, fake: FakeProvider) -> None:
    doc = write_doc(tmp_path)
    fake.push(GOOD)
    extract([doc], db, fake)
    before = Store(db).table_counts()
    second = extract([doc], db, fake)
    after = Store(db).table_counts()
    assert second.calls == 0 and second.chunks_reused == 1 and len(fake.requests) == 1
    assert second.records == {k: v for k, v in extract([doc], db, fake).records.items()}
    for table in ["documents", "chunks", "llm_calls", "extractions", "rec_therapies", "rec_conditions"]:
        assert after[table] == before[table], table
    assert after["runs"] == before["runs"] + 1


def test_refresh_calls_again_without_duplicates(tmp_path: Path, db: Path, fake: FakeProvider) -> None:
    doc = write_doc(tmp_path)
    fake.push(GOOD, GOOD)
    extract([doc], db, fake)
    again = extract([doc], db, fake, refresh=True)
    assert again.calls == 1
    assert rows(db, "SELECT count(*) FROM rec_therapies") == [(1,)]


def test_invalid_output_is_reasked_and_every_attempt_logged(tmp_path: Path, db: Path, fake: FakeProvider) -> None:
    bad = {"trials": [{"therapy": "KYV-101", "phase": "two", "evidence": "KYV-101"}]}
    fake.push(bad, GOOD)
    summary = extract([write_doc(tmp_path)], db, fake)
    assert summary.status == "completed" and summary.calls == 2 and summary.calls_failed == 1
    attempts = rows(db, "SELECT attempt, status, error_class FROM llm_calls ORDER BY attempt")
    assert [a[:2] for a in attempts] == [(1, "invalid"), (2, "ok")]
    assert attempts[0][2] is not None
    last = fake.requests[1]["messages"][-1]
    assert last["role"] == "user" and "trials.0.phase" in last["content"]


def test_failed_chunk_recorded_and_batch_goes_on(tmp_path: Path, db: Path, fake: FakeProvider) -> None:
    a = write_doc(tmp_path, "a.txt")
    b = write_doc(tmp_path, "b.txt", DOC + " It is given once.")  # other text: not served from a's cache
    fake.push("not json", "still not json", "{", GOOD)
    summary = extract([a, b], db, fake, max_retries=2)  # 1 attempt + 2 re-asks, all invalid
    assert summary.status == "completed_with_failures"
    assert (summary.chunks_failed, summary.chunks_extracted) == (1, 1)
    assert rows(db, "SELECT status FROM extractions ORDER BY chunk_id") == [("failed",), ("ok",)]
    # a re-run retries only the failed chunk
    fake.push(GOOD)
    again = extract([a, b], db, fake)
    assert (again.calls, again.chunks_reused, again.status) == (1, 1, "completed")
    assert rows(db, "SELECT count(*) FROM rec_therapies") == [(2,)]


def test_migrations_recorded_in_order(db: Path) -> None:
    with Store(db):
        pass
    assert [r[0] for r in rows(db, "SELECT name FROM _migrations ORDER BY name")] == [m[0] for m in MIGRATIONS]
    with Store(db):  # re-opening applies nothing twice
        pass
    assert len(rows(db, "SELECT * FROM _migrations")) == len(MIGRATIONS)


def test_newer_database_is_refused(db: Path) -> None:
    with Store(db) as store:
        store.con.execute("INSERT INTO _migrations VALUES ('999_from_the_future', now())")
    with pytest.raises(StoreError, match="newer version of pipeline"):
        Store(db)


def test_bad_input_leaves_database_as_it_was(tmp_path: Path, db: Path, fake: FakeProvider) -> None:
    doc = write_doc(tmp_path)
    fake.push(GOOD)
    extract([doc], db, fake)
    before = Store(db).table_counts()
    empty = write_doc(tmp_path, "empty.txt", "")
    with pytest.raises(Exception, match="file is empty"):
        extract([doc, empty], db, fake)
    assert Store(db).table_counts() == before


def test_a_killed_process_leaves_a_database_that_opens(tmp_path: Path) -> None:
    """DuckDB 1.5 cannot replay some DDL from its write-ahead log (adding a JSON column):
    schema changes are checkpointed, so a process killed after them leaves a readable file."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    db = tmp_path / "killed.duckdb"
    code = (
        "import os\n"
        "from pipeline.core.schema import load_schema\n"
        "from pipeline.store import Store\n"
        f"store = Store({str(db)!r})\n"
        "store.ensure_record_tables(load_schema('biomedical'))\n"
        "store.con.execute(\"INSERT INTO runs (run_id, started_at, status) VALUES ('r', now(), 'running')\")\n"
        "os._exit(9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 9 and (tmp_path / "killed.duckdb.wal").exists()
    with Store(db, read_only=True) as store:
        assert store.con.execute("SELECT run_id, status FROM runs").fetchall() == [("r", "running")]
