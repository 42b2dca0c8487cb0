"""Scale-out items: the engines against a fixed-latency server (9), one DuckDB writer (10).

Item 9 runs ``pipeline extract`` as a fresh process per configuration -- the local engine at
``--concurrency`` 4 and 16, the Ray engine (its own local cluster) at 1, 2 and 4 workers x 4
-- against one OpenAI-compatible server on loopback that answers every request after a fixed
latency with two grounded records. The rate is chunks per second of the extraction phase,
measured at the server: from the first request's arrival to the last answer. The process's
wall time (imports, cluster start, reading, the last commit, shutdown) is reported beside it.

Item 10 measures the single writer: the per-chunk transaction the local engine commits
(``Store.write_chunk_result``) against the bulk commit the Ray driver uses
(``Store.write_chunk_results``, 256 chunks per transaction), with biomedical-shaped rows
(8-9 records per chunk over three record types, one logged call, the response JSON), and
how the bulk rate holds up as the tables grow.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from bench.items import ROOT, _fake_server, result

EVIDENCE = "patients with lupus nephritis received obinutuzumab"
ANSWER = {
    "conditions": [{"name": "lupus nephritis", "evidence": EVIDENCE}],
    "therapies": [{"name": "obinutuzumab", "indications": ["lupus nephritis"], "evidence": EVIDENCE}],
}
#: sentences per document; ``--max-chunk-tokens 24`` cuts one chunk per sentence
PER_DOC = 4


def _docs(folder: Path, chunks: int, tag: str) -> None:
    folder.mkdir(parents=True)
    for d in range(-(-chunks // PER_DOC)):
        n = min(PER_DOC, chunks - d * PER_DOC)
        text = " ".join(f"Report {tag}-{d}-{s}: {EVIDENCE} in trial {d}.{s}." for s in range(n))
        (folder / f"d{d:05d}.txt").write_text(text + "\n", encoding="utf-8")


def engines(latency: float, per_slot: int, configs: list[tuple[str, int, int]]) -> dict[str, Any]:
    """``configs``: (engine, workers, concurrency); each gets ``per_slot`` chunks per request slot."""
    server = _fake_server(latency, json.dumps(ANSWER))
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    rows: dict[str, dict[str, float]] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            for engine, workers, conc in configs:
                label = f"{engine} {workers}x{conc}" if engine == "ray" else f"local x{conc}"
                n = per_slot * workers * conc
                docs = Path(tmp) / label.replace(" ", "_")
                _docs(docs, n, label.replace(" ", ""))
                cmd = [sys.executable, "-m", "pipeline", "extract", str(docs), "--db", str(docs) + ".duckdb",
                       "--model", "openai:fake", "--base-url", url, "--strategy", "direct", "--no-reground",
                       "--concurrency", str(conc), "--max-chunk-tokens", "24", "--quiet"]  # fmt: skip
                if engine == "ray":
                    cmd += ["--engine", "ray", "--workers", str(workers)]
                server.spans = []
                cpu0 = _children_cpu()
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
                wall = time.perf_counter() - t0
                cpu = _children_cpu() - cpu0
                if proc.returncode != 0 or f"{n} ({n} extracted" not in proc.stdout:
                    raise RuntimeError(f"{label}: rc {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}")
                con = duckdb.connect(str(docs) + ".duckdb", read_only=True)
                stored = con.execute(
                    "SELECT (SELECT count(*) FROM rec_conditions WHERE grounded), "
                    "(SELECT count(*) FROM rec_therapies WHERE grounded), (SELECT count(*) FROM extractions)"
                ).fetchone()
                con.close()
                if stored != (n, n, n):
                    raise RuntimeError(
                        f"{label}: stored {stored}, expected {n} grounded records of each and {n} chunks"
                    )
                first = min(a for a, _ in server.spans)
                last = max(b for _, b in server.spans)
                rows[label] = {
                    "chunks": n,
                    "chunks_per_s": round(n / (last - first), 2),
                    "ideal_per_s": round(workers * conc / latency, 2),
                    "wall_s": round(wall, 2),
                    "requests": len(server.spans),
                }
                if engine == "local":  # the whole job in one process: its CPU per chunk (start-up included)
                    rows[label]["cpu_ms_per_chunk"] = round(1000 * cpu / n, 1)
    finally:
        server.shutdown()
    ray_rows = {k: v for k, v in rows.items() if k.startswith("ray")}
    base = ray_rows[min(ray_rows)]["chunks_per_s"] if ray_rows else 0.0
    for v in ray_rows.values():
        v["speedup_vs_ray_1"] = round(v["chunks_per_s"] / base, 2)
        v["efficiency"] = round(v["chunks_per_s"] / v["ideal_per_s"], 2)
    top = max(ray_rows, key=lambda k: ray_rows[k]["chunks_per_s"]) if ray_rows else None
    speedup = ray_rows[top]["speedup_vs_ray_1"] if top else 0.0
    return result(
        f"9. engines: `pipeline extract` per configuration, direct strategy, {PER_DOC}-chunk documents, {per_slot} "
        f"chunks per request slot; loopback server, {latency * 1000:.0f} ms fixed latency",
        f"{top} >= 3x ray 1x{configs[-1][2]}",
        "; ".join(f"{k}: {v['chunks_per_s']:.1f} chunks/s" for k, v in rows.items())
        + (f"; {top} = {speedup:.2f}x ray 1 worker" if top else ""),
        speedup >= 3 if top and top.startswith("ray 4") else None,
        configurations=rows,
        note="chunks/s = chunks / (first request arriving -> last answer leaving the server); wall_s is the whole "
        "process (imports, Ray start, reading, the last commit, shutdown). ideal = workers x concurrency / latency",
    )


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# -- 10. one writer ----------------------------------------------------------------------------------


def _chunk_results(schema: Any, start: int, n: int, run_id: str) -> list[dict[str, Any]]:
    from pipeline.core.types import Chunk

    sentence = "In the phase 2 trial, 24 patients with systemic lupus erythematosus received KYV-101 (CD19 CAR T). "
    out = []
    for i in range(start, start + n):
        chunk = Chunk(f"doc{i // 5:07d}", f"sha{i // 5}", i % 5, 0, 1500, sentence * 15, 380)
        records: dict[str, list[dict[str, Any]]] = {"conditions": [], "therapies": [], "organizations": []}
        for j in range(8 + i % 2):
            base = {"evidence": sentence[:90], "evidence_start": j * 100, "evidence_end": j * 100 + 90}
            base |= {"alignment": "exact", "grounded": True}
            if j % 3 == 0:
                records["conditions"].append({**base, "name": f"condition {i}-{j}", "abbreviation": "SLE"})
            elif j % 3 == 1:
                records["therapies"].append(
                    {**base, "name": f"KYV-{j}", "target": "CD19", "indications": ["lupus", "myositis"]}
                )
            else:
                records["organizations"].append({**base, "name": f"Company {j}", "kind": "company"})
        call = {
            "call_id": f"{run_id}-{i}",
            "attempt": 1,
            "started_at": datetime.now(UTC).replace(tzinfo=None),
            "latency_s": 1.0,
            "model": "openai:bench",
            "prompt_hash": "p",
            "schema_hash": "s",
            "tokens_in": 900,
            "tokens_out": 400,
            "status": "ok",
            "response_text": json.dumps(records)[:1500],
        }
        out.append(
            {
                "run_id": run_id,
                "chunk": chunk,
                "extraction_key": hashlib.sha256(f"{run_id}:{i}".encode()).hexdigest()[:24],  # as batch.digest
                "config_hash": "cfg",
                "status": "ok",
                "error": None,
                "calls": [call],
                "records": records,
                "response": records,
                "cache": {
                    "cache_key": f"{run_id}-ck{i}",
                    "prompt": "p",
                    "schema": "s",
                    "strategy": "direct",
                    "model": "openai:bench",
                    "decoding": {"temperature": 0.0},
                },
            }
        )
    return out


def _bulk(store: Any, schema: Any, chunks: int, tag: str, batch: int) -> tuple[list[float], float]:
    """Commit ``chunks`` chunk results in ``batch``-chunk transactions; (seconds per commit,
    seconds building the Arrow tables, which a Ray worker does)."""
    from pipeline.store.bulk import ResultRows

    times, build = [], 0.0
    for start in range(0, chunks, batch):
        t0 = time.perf_counter()
        rows = ResultRows(schema)
        for r in _chunk_results(schema, start, min(batch, chunks - start), tag):
            rows.add(**r)
        tables = rows.to_arrow()
        t1 = time.perf_counter()
        store.write_chunk_results(tables, schema)
        times.append(time.perf_counter() - t1)
        build += t1 - t0
    return times, build


def writer(rowwise_chunks: int, bulk_chunks: int, n_docs: int, batch: int = 256) -> dict[str, Any]:
    """The driver's writes: per-chunk vs bulk commits, with DuckDB's default checkpoints and
    with ``Store.defer_checkpoints`` (the Ray driver's setting), and registering documents."""
    from pipeline.core.schema import load_schema
    from pipeline.core.types import Chunk, Document, Span
    from pipeline.store import Store

    schema = load_schema("biomedical")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        with Store(Path(tmp) / "rowwise.duckdb") as store:
            store.ensure_record_tables(schema)
            results = _chunk_results(schema, 0, rowwise_chunks, "row")
            t0 = time.perf_counter()
            for r in results:
                store.write_chunk_result(schema=schema, **r)
            out["per_chunk_chunks_per_s"] = round(rowwise_chunks / (time.perf_counter() - t0), 1)
        per_chunk = sum(len(v) for r in results for v in r["records"].values()) / len(results)
        for label, defer in (("bulk_default_checkpoints", False), ("bulk_deferred_checkpoints", True)):
            with Store(Path(tmp) / f"{label}.duckdb") as store:
                store.ensure_record_tables(schema)
                store.con.execute("SET enable_progress_bar = false")
                if defer:
                    store.defer_checkpoints()
                times, build = _bulk(store, schema, bulk_chunks, label, batch)
                t0 = time.perf_counter()
                store.con.execute("CHECKPOINT")
                final = time.perf_counter() - t0
            tenth = max(1, len(times) // 10)
            out[label] = {
                "chunks_per_s": round(bulk_chunks / sum(times), 1),
                "first_tenth_chunks_per_s": round(tenth * batch / sum(times[:tenth]), 1),
                "last_tenth_chunks_per_s": round(tenth * batch / sum(times[-tenth:]), 1),
                "slowest_commit_s": round(max(times), 2),
                "final_checkpoint_s": round(final, 2),
            }
            out["arrow_build_chunks_per_s"] = round(bulk_chunks / build, 1)
        text = "Patients with lupus nephritis received obinutuzumab in a phase 3 trial. " * 60
        docs, chunks = [], []
        for i in range(n_docs):
            d = Document(f"doc{i:07d}", f"docs/doc{i}.txt", "text", f"{text}{i}\n", kept=[Span(0, len(text))])
            docs.append(d)
            chunks += [Chunk(d.doc_id, d.sha256, j, j * 1440, j * 1440 + 1440, text[:1440], 360) for j in range(3)]
        with Store(Path(tmp) / "docs.duckdb") as store:
            t0 = time.perf_counter()
            store.upsert_documents(docs, chunks, "chunking")
            out["register_docs_per_s"] = round(n_docs / (time.perf_counter() - t0), 1)
    default, deferred = out["bulk_default_checkpoints"], out["bulk_deferred_checkpoints"]
    return result(
        f"10. one DuckDB writer: {per_chunk:.1f} biomedical-shaped records, 1 call and the response per chunk; "
        f"{bulk_chunks:,} chunks in {batch}-chunk commits; {n_docs:,} documents of 3 chunks registered",
        "bulk >= 10x per-chunk; report where it stops keeping up",
        f"per-chunk {out['per_chunk_chunks_per_s']:.0f} chunks/s; bulk {default['chunks_per_s']:,.0f} chunks/s with "
        f"DuckDB's default checkpoints (last tenth {default['last_tenth_chunks_per_s']:,.0f}/s), "
        f"{deferred['chunks_per_s']:,.0f} chunks/s = {deferred['chunks_per_s'] * per_chunk:,.0f} records/s deferred "
        f"(last tenth {deferred['last_tenth_chunks_per_s']:,.0f}/s; final checkpoint {deferred['final_checkpoint_s']:.1f} s); "
        f"documents registered at {out['register_docs_per_s']:,.0f}/s",
        deferred["chunks_per_s"] >= 10 * out["per_chunk_chunks_per_s"],
        records_per_chunk=round(per_chunk, 2),
        **out,
        note="chunks_per_s = chunks / time inside write_chunk_results (Arrow tables built beforehand, as a worker "
        "does: arrow_build_chunks_per_s). Deferred = Store.defer_checkpoints('1GB'), as the Ray driver sets it",
    )
