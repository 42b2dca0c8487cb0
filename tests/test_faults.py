"""Fault injection between the pipeline and a real llama_cpp.server (``tests/faultproxy.py``).

Each case checks the chunk's whole attempt history in ``llm_calls``: it recovers within its
retry budget, or, once the budget is spent, is recorded as failed with its error while the
batch goes on, the CLI exits 2, and a re-run retries only what failed.

Set ``FAULT_MATRIX=path.jsonl`` to append one line per case (the README's fault matrix).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.batch import ExtractConfig, RunSummary, run_extract
from tests.faultproxy import PASS, RESET, TRUNCATE, Action, FaultProxy, content, hang, status
from tests.realserver import SERVER_FLAGS, write_tiny
from tests.test_openai_provider import cli

pytestmark = pytest.mark.server

TEXT_A = "KYV-101 is being tested in patients with myasthenia gravis.\n"
TEXT_B = "Lupus nephritis patients received obinutuzumab.\n"
NOT_THE_SCHEMA = '{"conditions": [{"name": "", "evidence": "x", "severity": "high"}]}'


@pytest.fixture(scope="module")
def proxy(llama_server: str) -> Iterator[FaultProxy]:
    with FaultProxy(llama_server.removesuffix("/v1"), memo=True) as p:
        yield p


@pytest.fixture
def setup(tmp_path: Path, proxy: FaultProxy) -> dict[str, Any]:
    schema, prompt = write_tiny(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(TEXT_A, encoding="utf-8")
    (docs / "b.txt").write_text(TEXT_B, encoding="utf-8")
    return {"schema": schema, "prompt": prompt, "a": docs / "a.txt", "b": docs / "b.txt", "db": tmp_path / "f.duckdb"}


def run(setup: dict[str, Any], proxy: FaultProxy, docs: list[str], **retry: Any) -> RunSummary:
    cfg = ExtractConfig(
        schema=setup["schema"],
        prompt=setup["prompt"],
        model="openai:gemma",
        base_url=proxy.base_url,
        response_format="json_object",
        fold_system=True,
        max_tokens=96,
        # Transport faults only: the grounding re-ask (tests/test_reground.py) would add calls.
        reground=False,
        **{"timeout": 240.0, "max_attempts": 4, "max_seconds": 480.0, "max_retries": 2, **retry},
    )
    return run_extract([setup[d] for d in docs], db=setup["db"], config=cfg, progress=False)


def attempts(db: Path, doc: str = "a") -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT attempt, status, error_class, tokens_in, tokens_out FROM llm_calls "
            "WHERE chunk_id LIKE ? ORDER BY run_id, started_at",
            [f"{doc}:%"],
        ).fetchall()
    finally:
        con.close()


def record(case: str, outcome: str, rows: list[tuple[Any, ...]]) -> None:
    if out := os.environ.get("FAULT_MATRIX"):
        with open(out, "a", encoding="utf-8") as f:
            line = {
                "case": case,
                "outcome": outcome,
                "attempts": [f"{r[1]}:{r[2] or ''}".rstrip(":") for r in rows],
                "tokens_in": sum(r[3] for r in rows),
                "tokens_out": sum(r[4] for r in rows),
            }
            f.write(json.dumps(line) + "\n")


@pytest.fixture(scope="module", autouse=True)
def warm(proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> None:
    """One clean pass over both texts: the two real generations the other cases replay."""
    tmp = tmp_path_factory.mktemp("warm")
    proxy.plan()
    s = run(
        {**{"db": tmp / "w.duckdb"}, **_docs(tmp)},
        proxy,
        ["a", "b"],
    )
    assert s.status == "completed" and s.calls == 2, s
    record("no fault (baseline)", "ok", attempts(tmp / "w.duckdb"))


def _docs(tmp: Path) -> dict[str, Any]:
    schema, prompt = write_tiny(tmp)
    (tmp / "a.txt").write_text(TEXT_A, encoding="utf-8")
    (tmp / "b.txt").write_text(TEXT_B, encoding="utf-8")
    return {"schema": schema, "prompt": prompt, "a": tmp / "a.txt", "b": tmp / "b.txt"}


RECOVERS: list[tuple[str, Action, str, dict[str, Any]]] = [
    ("429 Retry-After: 1", status(429, retry_after="1"), "RateLimitError", {}),
    ("500", status(500), "InternalServerError", {}),
    ("502", status(502), "InternalServerError", {}),
    ("503", status(503), "InternalServerError", {}),
    ("hang past the timeout", hang(10), "APITimeoutError", {"timeout": 2.0}),
    ("connection reset", RESET, "APIConnectionError", {}),
]


@pytest.mark.parametrize(("case", "fault", "error_class", "opts"), RECOVERS, ids=[r[0] for r in RECOVERS])
def test_transport_fault_recovers(
    setup: dict[str, Any], proxy: FaultProxy, case: str, fault: Action, error_class: str, opts: dict[str, Any]
) -> None:
    proxy.plan(fault, fault)
    s = run(setup, proxy, ["a"], **opts)
    rows = attempts(setup["db"])
    record(case, s.status, rows)
    assert s.status == "completed" and s.records == {"conditions": 1}
    assert [r[:3] for r in rows] == [(1, "error", error_class), (2, "error", error_class), (3, "ok", None)]
    assert rows[-1][3] > 50 and rows[-1][4] > 0  # the real answer's tokens
    assert (s.calls, s.calls_failed) == (3, 2)
    seen = proxy.completions()
    if fault.retry_after:
        assert seen[1].at - seen[0].at >= 1.0 and seen[2].at - seen[1].at >= 1.0  # Retry-After honoured


def test_truncated_json_is_reasked(setup: dict[str, Any], proxy: FaultProxy) -> None:
    proxy.plan(TRUNCATE)
    s = run(setup, proxy, ["a"])
    rows = attempts(setup["db"])
    record("truncated JSON", s.status, rows)
    assert s.status == "completed" and s.records == {"conditions": 1}
    assert [r[:3] for r in rows] == [(1, "invalid", "ValidationError"), (2, "ok", None)]
    assert all(r[3] > 50 and r[4] > 0 for r in rows)  # the failed attempt's tokens count too
    assert s.tokens_in == sum(r[3] for r in rows)


def test_schema_invalid_json_is_reasked_with_the_error(setup: dict[str, Any], proxy: FaultProxy) -> None:
    proxy.plan(content(NOT_THE_SCHEMA))
    s = run(setup, proxy, ["a"])
    rows = attempts(setup["db"])
    record("schema-invalid JSON", s.status, rows)
    assert s.status == "completed" and s.records == {"conditions": 1}
    assert [r[:3] for r in rows] == [(1, "invalid", "ValidationError"), (2, "ok", None)]


def failed_error(db: Path) -> str:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT error FROM extractions WHERE status = 'failed'").fetchone()
        return str(row[0]) if row else ""
    finally:
        con.close()


def test_transport_budget_exhausted_then_rerun_retries_only_the_failed_chunk(
    setup: dict[str, Any], proxy: FaultProxy
) -> None:
    proxy.plan(status(503), status(503), status(503))
    s = run(setup, proxy, ["a", "b"], max_attempts=3)
    rows = attempts(setup["db"])
    record("503 on every attempt (max_attempts 3)", s.status, rows)
    assert (s.status, s.chunks_failed, s.chunks_extracted) == ("completed_with_failures", 1, 1)
    assert [r[:3] for r in rows] == [(i, "error", "InternalServerError") for i in (1, 2, 3)]
    assert failed_error(setup["db"]).startswith("InternalServerError: Error code: 503")
    assert failed_error(setup["db"]).endswith("(3 attempts)")
    proxy.plan()
    again = run(setup, proxy, ["a", "b"])
    assert (again.status, again.calls, again.chunks_extracted, again.chunks_reused) == ("completed", 1, 1, 1)
    assert [c.path for c in proxy.completions()] == ["/v1/chat/completions"]


def test_invalid_output_budget_exhausted(setup: dict[str, Any], proxy: FaultProxy) -> None:
    proxy.plan(content(NOT_THE_SCHEMA), content("{"), content("not json at all"))
    s = run(setup, proxy, ["a", "b"], max_retries=2)
    rows = attempts(setup["db"])
    record("invalid output on every attempt (max_retries 2)", s.status, rows)
    assert (s.status, s.chunks_failed, s.chunks_extracted) == ("completed_with_failures", 1, 1)
    assert [r[:2] for r in rows] == [(1, "invalid"), (2, "invalid"), (3, "invalid")]
    assert failed_error(setup["db"]).endswith("(3 attempts)")


def test_retry_after_past_the_chunk_budget_fails_at_once(setup: dict[str, Any], proxy: FaultProxy) -> None:
    proxy.plan(status(429, retry_after="600"))
    t0 = time.monotonic()
    s = run(setup, proxy, ["a", "b"], max_seconds=20.0)
    rows = attempts(setup["db"])
    record("429 Retry-After: 600 > max_seconds 20", s.status, rows)
    assert time.monotonic() - t0 < 20  # did not sleep 600 s, nor 20
    assert (s.status, s.chunks_failed) == ("completed_with_failures", 1)
    assert [r[:3] for r in rows] == [(1, "error", "RateLimitError")]


def test_cli_exits_2_on_failures_and_rerun_finishes(setup: dict[str, Any], proxy: FaultProxy) -> None:
    args = [str(setup["a"]), str(setup["b"]), "--db", str(setup["db"]), "--schema", setup["schema"]]
    args += ["--prompt", setup["prompt"], "--model", "openai:gemma", "--base-url", proxy.base_url]
    args += [*SERVER_FLAGS, "--no-reground", "--quiet"]
    proxy.plan(RESET, RESET)
    first = cli(*args, "--max-attempts", "2", env={})
    assert first.returncode == 2, first.stderr
    assert "2 (1 extracted, 0 reused, 0 from cache, 1 failed)" in first.stdout
    assert "3 (2 failed attempts)" in first.stdout
    assert "completed_with_failures" in first.stdout
    proxy.plan(PASS)
    second = cli(*args, env={})
    assert second.returncode == 0, second.stderr
    assert "2 (1 extracted, 1 reused, 0 from cache, 0 failed)" in second.stdout
