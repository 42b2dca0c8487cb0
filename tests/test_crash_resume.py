"""SIGKILL a real ``pipeline extract`` mid-batch, run it again, and check nothing is lost,
doubled or half-written. The pipeline talks to a real llama_cpp.server through the fault
proxy, which delays each request so the kill lands while one is in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import ROOT
from tests.faultproxy import FaultProxy, delay
from tests.realserver import SERVER_FLAGS, write_tiny
from tests.test_openai_provider import cli

pytestmark = pytest.mark.server

TEXTS = {
    "a": "KYV-101 is being tested in patients with myasthenia gravis.\n",
    "b": "Lupus nephritis patients received obinutuzumab.\n",
    "c": "Rituximab is approved for pemphigus vulgaris.\n",
}


def test_sigkill_mid_batch_then_rerun(tmp_path: Path, llama_server: str) -> None:
    schema, prompt = write_tiny(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in TEXTS.items():
        (docs / f"{name}.txt").write_text(text, encoding="utf-8")
    db = tmp_path / "crash.duckdb"
    with FaultProxy(llama_server.removesuffix("/v1"), memo=True) as proxy:
        # the 1st request answers after 0.5 s; later ones are held, so the kill lands while
        # chunk 2 is in flight, after chunk 1's commit (made while chunk 2 was being sent)
        proxy.plan(delay(0.5), default=delay(60))
        args = [str(docs), "--db", str(db), "--schema", schema, "--prompt", prompt, "--model", "openai:gemma"]
        args += ["--base-url", proxy.base_url, *SERVER_FLAGS, "--no-reground", "--quiet"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        first = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "extract", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 240
            while len(proxy.arrived) < 2:  # the 2nd request is out and held: chunk 2 in flight
                assert first.poll() is None, "the first run ended before it could be killed"
                assert time.monotonic() < deadline, "the first run made no second request"
                time.sleep(0.05)
            time.sleep(2.0)  # chunk 1's commit runs beside the 2nd request (milliseconds; 2 s for a loaded machine)
            os.kill(first.pid, signal.SIGKILL)
        finally:
            first.kill()
            first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL

        proxy.plan()
        second = cli(*args, env={})
        assert second.returncode == 0, second.stderr
        assert "3 (2 extracted, 1 reused, 0 from cache, 0 failed)" in second.stdout

    con = duckdb.connect(str(db), read_only=True)
    q = con.execute
    runs = q("SELECT status, n_chunks_reused FROM runs ORDER BY started_at").fetchall()
    assert runs == [("interrupted", 0), ("completed", 1)]
    # every chunk extracted exactly once, under one extraction key
    per_chunk = q("SELECT chunk_id, count(*), min(status) FROM extractions GROUP BY chunk_id ORDER BY 1").fetchall()
    assert [(c.split(":")[0], n, s) for c, n, s in per_chunk] == [("a", 1, "ok"), ("b", 1, "ok"), ("c", 1, "ok")]
    # one successful call per chunk: the killed in-flight request left no row
    assert q("SELECT count(*), count(DISTINCT chunk_id) FROM llm_calls WHERE status = 'ok'").fetchone() == (3, 3)
    # no partial or duplicate records: each extraction holds exactly the records it counted
    mismatched = q(
        "SELECT e.extraction_key FROM extractions e LEFT JOIN rec_conditions r USING (extraction_key) "
        "GROUP BY e.extraction_key, e.n_records HAVING count(r.record_id) != e.n_records"
    ).fetchall()
    assert mismatched == []
    assert q("SELECT count(*) = count(DISTINCT (chunk_id, ordinal)) FROM rec_conditions").fetchone() == (True,)
    outcomes = q("SELECT r.status, rc.outcome FROM run_chunks rc JOIN runs r USING (run_id) ORDER BY 1, 2").fetchall()
    first_run, second_run = [("interrupted", "extracted")], [("completed", "extracted")] * 2 + [("completed", "reused")]
    assert outcomes == sorted(first_run + second_run)
    con.close()
