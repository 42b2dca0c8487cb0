"""``pipeline extract --engine ray`` on a real Ray cluster on loopback (2 worker processes).

One cluster (``ray start --head --block``, 2 CPUs) serves the module; the driver-crash test
lets the CLI start Ray clusters of its own, as a user's run without ``--ray-address`` does.
Every process a test starts is stopped by pid or process group (never ``ray stop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psutil
import pytest

from tests.conftest import ROOT
from tests.llmstub import LLMStub
from tests.raycluster import Head, is_loopback, listening, ray_head
from tests.realserver import free_port, write_tiny

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    with ray_head(cpus=2) as h:
        yield h


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def snapshot(db: Path) -> dict[str, Any]:
    """What a run stored, minus what differs between two runs of the same job (run ids, call
    ids, timestamps): every record, every extraction, each chunk's outcome."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out: dict[str, Any] = {}
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        for table in [t for t in tables if t.startswith("rec_")] + ["extractions"]:
            cols = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [table]
                ).fetchall()
                if r[0] not in ("run_id", "created_at")
            ]
            rows = con.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
            out[table] = sorted(map(repr, rows))
        out["run_chunks"] = sorted(con.execute("SELECT chunk_id, extraction_key, outcome FROM run_chunks").fetchall())
        return out
    finally:
        con.close()


def scores(db: Path, *args: str) -> dict[str, Any]:
    proc = cli("eval", "--db", str(db), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    return {k: v for k, v in report.items() if k not in ("run_id", "scored_at", "db", "eval_id")}


def counts(db: Path) -> dict[str, Any]:
    con = duckdb.connect(str(db), read_only=True)
    q = con.execute
    try:
        return {
            "runs": q("SELECT status, n_chunks, n_chunks_reused FROM runs ORDER BY started_at").fetchall(),
            "extractions": q(
                "SELECT count(*), count(DISTINCT extraction_key), count(DISTINCT chunk_id) FROM extractions"
            ).fetchone(),
            "not_ok": q("SELECT count(*) FROM extractions WHERE status != 'ok'").fetchone()[0],  # type: ignore[index]
            "ok_calls": q(
                "SELECT count(*), count(DISTINCT extraction_key) FROM llm_calls WHERE status = 'ok'"
            ).fetchone(),
            "records": q("SELECT count(*), count(DISTINCT record_id) FROM rec_conditions").fetchone(),
            # each extraction holds exactly the records it counted: nothing partial, nothing doubled
            "mismatched": q(
                "SELECT count(*) FROM (SELECT e.extraction_key FROM extractions e LEFT JOIN rec_conditions r "
                "USING (extraction_key) GROUP BY e.extraction_key, e.n_records HAVING count(r.record_id) != e.n_records)"
            ).fetchone()[0],  # type: ignore[index]
        }
    finally:
        con.close()


def write_docs(folder: Path, n_docs: int, sentences: int) -> int:
    """``n_docs`` documents of ``sentences`` distinct sentences; returns the chunk count that
    ``--max-chunk-tokens 16`` cuts them into (one chunk per sentence)."""
    folder.mkdir()
    conditions = ["lupus nephritis", "myasthenia gravis", "pemphigus vulgaris", "systemic sclerosis"]
    for d in range(n_docs):
        text = " ".join(
            f"Patient{d}x{s} with {conditions[(d + s) % 4]} was treated in cohort {s}." for s in range(sentences)
        )
        (folder / f"d{d:03d}.txt").write_text(text + "\n", encoding="utf-8")
    return n_docs * sentences


def stub_args(tmp_path: Path, docs: Path, db: Path, stub: LLMStub) -> list[str]:
    schema, prompt = write_tiny(tmp_path)
    return [
        "extract", str(docs), "--db", str(db), "--schema", schema, "--prompt", prompt, "--model", "openai:stub",
        "--base-url", stub.base_url, "--no-reground", "--max-chunk-tokens", "16", "--quiet",
    ]  # fmt: skip


# -- the cluster itself -----------------------------------------------------------------------------


def test_cluster_listens_on_loopback_only(head: Head) -> None:
    """``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is an internal Ray flag: a Ray upgrade that drops
    it would put the servers on every interface. This catches that."""
    pids = {p.pid for p in head.processes()} | {head.proc.pid}
    addresses = listening(pids)
    assert addresses, "the cluster listens nowhere?"
    assert [a for a in addresses if not is_loopback(a)] == []


# -- same records as the local engine ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("docs", "gold"),
    [("evals/docs", "evals/gold"), ("evals/dev/docs", "evals/dev/gold"), ("evals/dev2/docs", "evals/dev2/gold")],
)
def test_same_records_and_scores_as_the_local_engine(tmp_path: Path, head: Head, docs: str, gold: str) -> None:
    """The default configuration without the fill step (embedded model's tokenizer, ``rules``):
    the workers read, clean and chunk, extract and ground; the driver commits in bulk. The
    fill's model margins depend on what else a worker's ranking context holds, so they are
    compared on their own (below)."""
    local, ray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    first = cli("extract", docs, "--db", str(local), "--quiet", "--no-fill")
    assert first.returncode == 0, first.stderr
    second = cli("extract", docs, "--db", str(ray), "--quiet", "--no-fill", "--engine", "ray",
                 "--ray-address", head.address, "--workers", "2", env=head.env)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert re.search(r"chunks\s+│ \d+ \(\d+ extracted, 0 reused", second.stdout)
    a, b = snapshot(local), snapshot(ray)
    assert sum(len(v) for k, v in a.items() if k.startswith("rec_")) > 20
    assert a == b
    assert scores(local, "--gold", gold, "--docs", docs) == scores(ray, "--gold", gold, "--docs", docs)
    con = duckdb.connect(str(ray), read_only=True)
    config = json.loads(con.execute("SELECT config FROM runs").fetchone()[0])  # type: ignore[index]
    con.close()
    assert (config["engine"], config["workers"], config["ray_address"]) == ("ray", 2, head.address)


def filled(db: Path) -> dict[str, dict[str, Any]]:
    """record_id -> its columns (no run id), with ``confidence`` parsed."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out: dict[str, dict[str, Any]] = {}
        tables = [
            r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'rec_%'").fetchall()
        ]
        for table in tables:
            cur = con.execute(f"SELECT * EXCLUDE (run_id) FROM {table}")
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                rec = dict(zip(names, row, strict=True))
                rec["confidence"] = json.loads(rec["confidence"]) if rec["confidence"] else {}
                out[rec["record_id"]] = rec
        return out
    finally:
        con.close()


def test_fill_on_the_workers_decides_as_the_local_engine(tmp_path: Path, head: Head) -> None:
    """With the fill step (the default): the same records, the same rule-filled values and key
    scores. A model-ranked value may differ: the fill judges a thing once per document and
    process, and a document's chunks may run on two workers, where the local engine judges
    the first mention and reuses it (seen: a byline's "author" vs the later appositive "a
    freelance medical writer", margins 8.7 and 1.7). At most a quarter may differ."""
    local, ray = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    assert cli("extract", "evals/docs", "--db", str(local), "--quiet").returncode == 0
    second = cli("extract", "evals/docs", "--db", str(ray), "--quiet", "--engine", "ray",
                 "--ray-address", head.address, "--workers", "2", env=head.env)  # fmt: skip
    assert second.returncode == 0, second.stderr
    a, b = filled(local), filled(ray)
    assert a.keys() == b.keys() and len(a) > 20
    ranked = differ = 0
    for rid, rec in a.items():
        other = b[rid]
        for name, value in rec.items():
            if name == "confidence":
                continue
            margins = [m for m in (rec["confidence"].get(name), other["confidence"].get(name)) if m is not None]
            ranked += bool(margins)
            if value != other[name]:  # only a value the model ranked may differ
                assert margins, (rid, name, value, other[name])
                differ += 1
    assert ranked > 5 and differ <= ranked // 4
    key = ("micro", "per_type")
    sa, sb = scores(local, "--gold", "evals/gold"), scores(ray, "--gold", "evals/gold")
    assert {k: sa[k] for k in key} == {k: sb[k] for k in key}


def test_rerun_reuses_and_cache_serves_repeated_text(tmp_path: Path, head: Head) -> None:
    """A rerun makes no calls; a chunk whose text is in flight elsewhere waits and is served
    from the response cache (as in the local engine)."""
    docs = tmp_path / "docs"
    n = write_docs(docs, 4, 2)
    (docs / "copy.txt").write_text((docs / "d000.txt").read_text(encoding="utf-8"), encoding="utf-8")
    db = tmp_path / "r.duckdb"
    ray_args = ["--engine", "ray", "--ray-address", head.address, "--workers", "2", "--concurrency", "2"]
    with LLMStub(latency=0.05) as stub:
        first = cli(*stub_args(tmp_path, docs, db, stub), *ray_args, env=head.env)
        assert first.returncode == 0, first.stderr
        assert f"{n + 2} ({n} extracted, 0 reused, 2 from cache, 0 failed)" in first.stdout
        assert stub.arrived == n
        second = cli(*stub_args(tmp_path, docs, db, stub), *ray_args, env=head.env)
        assert second.returncode == 0, second.stderr
        assert f"{n + 2} (0 extracted, {n + 2} reused, 0 from cache, 0 failed)" in second.stdout
        assert stub.arrived == n


def test_retry_policy_and_call_log_hold_on_the_workers(tmp_path: Path, head: Head) -> None:
    """Every chunk's first request gets a 503: the worker retries it under the run's policy and
    both attempts are rows in llm_calls, as with the local engine."""
    docs = tmp_path / "docs"
    n = write_docs(docs, 3, 2)
    db = tmp_path / "f.duckdb"
    with LLMStub(latency=0.01, fail_first=True) as stub:
        args = [*stub_args(tmp_path, docs, db, stub), "--engine", "ray", "--ray-address", head.address]
        run = cli(*args, "--workers", "2", "--concurrency", "2", env=head.env)
    assert run.returncode == 0, run.stderr
    assert f"{n} ({n} extracted, 0 reused, 0 from cache, 0 failed)" in run.stdout
    assert re.search(rf"LLM calls\s+│ {2 * n} \({n} failed attempts\)", run.stdout)
    con = duckdb.connect(str(db), read_only=True)
    attempts = con.execute(
        "SELECT list(status || ':' || coalesce(error_class, '') ORDER BY attempt) FROM llm_calls GROUP BY chunk_id"
    ).fetchall()
    con.close()
    assert sorted(a for (a,) in attempts) == [["error:InternalServerError", "ok:"]] * n


def test_relative_paths_mean_what_they_mean_to_the_driver(tmp_path: Path, head: Head) -> None:
    """The workers read the documents, the schema file and the prompt: relative paths resolve
    in the driver's working folder (the cluster was started elsewhere), and the stored paths
    are the ones given, as with the local engine."""
    write_tiny(tmp_path)
    write_docs(tmp_path / "docs", 2, 1)
    with LLMStub(latency=0.01) as stub:
        args = ["extract", "docs", "--db", "r.duckdb", "--schema", "conds.py:Conditions", "--prompt", "conds.j2"]
        args += ["--model", "openai:stub", "--base-url", stub.base_url, "--no-reground", "--quiet"]
        run = cli(*args, "--engine", "ray", "--ray-address", head.address, env=head.env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    con = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    assert con.execute("SELECT path FROM documents ORDER BY 1").fetchall() == [("docs/d000.txt",), ("docs/d001.txt",)]
    assert con.execute("SELECT count(*) FROM rec_conditions WHERE grounded").fetchone() == (2,)
    con.close()


# -- faults ---------------------------------------------------------------------------------------------


def test_worker_killed_mid_batch_every_chunk_stored_once(tmp_path: Path, head: Head) -> None:
    """SIGKILL one worker process while its requests are in flight: Ray restarts it and retries
    its tasks; every chunk ends up stored exactly once, with one successful call logged."""
    docs = tmp_path / "docs"
    n = write_docs(docs, 10, 3)
    db = tmp_path / "k.duckdb"
    with LLMStub(latency=0.05, hold_from=9) as stub:
        args = [*stub_args(tmp_path, docs, db, stub), "--engine", "ray", "--ray-address", head.address]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **head.env}
        run = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args, "--workers", "2", "--concurrency", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 240
            while stub.in_flight < 4:  # both workers wait on held requests: mid-task
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, "the workers never had requests in flight"
                time.sleep(0.05)
            workers = head.actor_processes("Worker")
            assert len(workers) == 2, [w.cmdline() for w in workers]
            victim = workers[0]
            victim.kill()
            psutil.wait_procs([victim], timeout=10)
            arrived_at_kill = stub.arrived
            stub.release()
            out, err = run.communicate(timeout=240)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert run.returncode == 0, err
    assert f"{n} ({n} extracted, 0 reused, 0 from cache, 0 failed)" in out
    assert stub.arrived > n >= arrived_at_kill  # the killed worker's chunks were asked for again
    assert any(k > 1 for k in stub.texts.values())
    c = counts(db)
    assert c["runs"] == [("completed", n, 0)]
    assert c["extractions"] == (n, n, n) and c["not_ok"] == 0
    assert c["ok_calls"] == (n, n)  # the dead attempts left no rows: they were never committed
    assert c["records"][0] == c["records"][1] == n and c["mismatched"] == 0
    deadline = time.monotonic() + 20
    while head.actor_processes("Worker") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert head.actor_processes("Worker") == []  # the driver's workers end with it


def _group_alive(pgid: int) -> list[int]:
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
    return out


def test_driver_sigkill_then_rerun_no_duplicates(tmp_path: Path) -> None:
    """The CLI's own local Ray (no --ray-address): SIGKILL the driver mid-run. The rerun stops
    what the dead cluster left running, marks the run interrupted, and does only the chunks that
    were not committed: each chunk stored once."""
    docs = tmp_path / "docs"
    n = write_docs(docs, 30, 2)
    db = tmp_path / "d.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    with LLMStub(latency=0.3) as stub:
        args = [sys.executable, "-m", "pipeline", *stub_args(tmp_path, docs, db, stub)]
        args += ["--engine", "ray", "--workers", "2", "--concurrency", "2"]
        first = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                                 start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 240
            while stub.arrived < 36:  # past the first commits (every second), well before the end
                assert first.poll() is None, "the first run ended before it could be killed"
                assert time.monotonic() < deadline, "the first run made too few requests"
                time.sleep(0.05)
            cluster = {p.pid for p in psutil.Process(first.pid).children(recursive=True)}
            addresses = listening(cluster)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
            assert addresses and [a for a in addresses if not is_loopback(a)] == []

            second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
            assert second.returncode == 0, second.stderr
            done = re.search(r"(\d+) \((\d+) extracted, (\d+) reused, 0 from cache, 0 failed\)", second.stdout)
            assert done, second.stdout
            total, extracted, reused = map(int, done.groups())
            assert total == n and extracted + reused == n and 0 < reused < n
            deadline = time.monotonic() + 20
            while _group_alive(first.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _group_alive(first.pid) == []  # nothing of the killed run's cluster is left
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(first.pid, signal.SIGKILL)
    c = counts(db)
    assert c["runs"] == [("interrupted", 0, 0), ("completed", n, reused)]  # the killed run wrote no totals
    assert c["extractions"] == (n, n, n) and c["not_ok"] == 0
    assert c["ok_calls"] == (n, n)
    assert c["records"][0] == c["records"][1] == n and c["mismatched"] == 0


def test_ctrl_c_commits_what_arrived_and_stops_the_cluster(tmp_path: Path) -> None:
    """Ctrl-C in a terminal reaches the driver and the local cluster's processes (one process
    group): the results that arrived are committed, the run is marked interrupted with one
    line and exit code 130, and nothing of the cluster is left running."""
    docs = tmp_path / "docs"
    n = write_docs(docs, 30, 2)
    db = tmp_path / "c.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    with LLMStub(latency=0.3) as stub:
        args = [sys.executable, "-m", "pipeline", *stub_args(tmp_path, docs, db, stub)]
        args += ["--engine", "ray", "--workers", "2", "--concurrency", "2"]
        run = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               start_new_session=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 240
            while stub.arrived < 20:
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, "the run made too few requests"
                time.sleep(0.05)
            os.killpg(run.pid, signal.SIGINT)
            _, err = run.communicate(timeout=120)
            assert run.returncode == 130
            assert re.fullmatch(
                r"error: interrupted -- run \S+ is marked interrupted; run the same command again to do only what "
                r"is missing\n",
                err,
            ), err
            deadline = time.monotonic() + 20
            while _group_alive(run.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _group_alive(run.pid) == []
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
    c = counts(db)
    assert c["runs"][0][0] == "interrupted"
    stored = c["extractions"][0]
    assert 0 < stored < n and c["extractions"] == (stored, stored, stored) and c["mismatched"] == 0
    assert c["not_ok"] == 0  # chunks cut off by the stop are left for the rerun, not stored as failed
    assert c["ok_calls"] == (stored, stored)


# -- bad options ------------------------------------------------------------------------------------------


def test_no_cluster_at_the_address_is_a_one_line_error(tmp_path: Path) -> None:
    port = free_port()
    t0 = time.monotonic()
    proc = cli("extract", "evals/docs", "--db", str(tmp_path / "x.duckdb"), "--engine", "ray",
               "--ray-address", f"127.0.0.1:{port}")  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: no Ray cluster at 127.0.0.1:{port} (Connection refused) -- start one with `ray start --head` "
        "(see README, 'Scale out with Ray') or leave out --ray-address"
    ]
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "x.duckdb").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ray-address", "127.0.0.1:1"], "error: --ray-address is an option of the ray engine"),
        (["--workers", "2"], "error: --workers is an option of the ray engine"),
        (["--engine", "spark"], "error: unknown engine 'spark' -- use one of: local, ray"),
        (["--engine", "ray", "--workers", "0"], "error: --workers 0 is not a positive number"),
        (
            ["--engine", "ray", "--ray-address", "ray://h:1"],
            "error: --ray-address 'ray://h:1' is not HOST:PORT or auto",
        ),
    ],
)
def test_engine_options_are_checked_first(tmp_path: Path, args: list[str], message: str) -> None:
    proc = cli("extract", "evals/docs", "--db", str(tmp_path / "x.duckdb"), *args)
    assert proc.returncode == 1
    assert proc.stderr.startswith(message), proc.stderr
    assert not (tmp_path / "x.duckdb").exists()
