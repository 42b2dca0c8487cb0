"""The benchmark items. Each returns a dict: item, target, measured, met (bool|None), status, details."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = ROOT / "evals" / "docs"
EVAL_DOC = EVAL_DIR / "003_15b3c25d52d80357.txt"


def result(
    item: str, target: str, measured: str, met: bool | None, status: str = "ok", **details: Any
) -> dict[str, Any]:
    return {"item": item, "target": target, "measured": measured, "met": met, "status": status, "details": details}


def skipped(item: str, target: str, reason: str) -> dict[str, Any]:
    return result(item, target, f"skipped: {reason}", None, status="skipped")


# -- 4. storage ------------------------------------------------------------------------------


def storage(n: int) -> dict[str, Any]:
    from pipeline.core.schema import load_schema
    from pipeline.store import Store

    schema = load_schema("biomedical")
    rt = next(r for r in schema.record_types if r.name == "conditions")
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        store.ensure_record_tables(schema)
        cols = store.record_columns(rt)
        extra = len(cols) - 14  # the pipeline's columns (through confidence), then the fields

        def rows() -> Any:
            for i in range(n):
                doc = f"doc{i // 100:06d}"
                yield (
                    f"r{i:08d}", f"k{i // 10}", "run1", "biomedical", doc, "sha", f"{doc}:c{i % 10}", i % 10,
                    f"Patients with condition {i % 997} were treated.", i, i + 40, "exact", i % 7 != 0, None,
                    *([f"condition {i % 997}"] + [None] * (extra - 1)),
                )  # fmt: skip

        t0 = time.perf_counter()
        written = store.bulk_insert_records(rt, rows())
        write_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        top = store.con.execute(
            "SELECT name, count(DISTINCT doc_id) AS docs, count(*) AS mentions FROM rec_conditions "
            "WHERE grounded GROUP BY name ORDER BY mentions DESC LIMIT 10"
        ).fetchall()
        query_s = time.perf_counter() - t1
    return result(
        f"4. storage: {n:,} records via Store.bulk_insert_records",
        "< 10 s",
        f"write {write_s:.2f} s ({written / write_s:,.0f} rows/s); query {query_s * 1000:.0f} ms",
        write_s < 10,
        write_s=round(write_s, 3),
        query_s=round(query_s, 4),
        query="top-10 grounded conditions by mentions (GROUP BY over rec_conditions)",
        rows=written,
        top_row=list(top[0]) if top else None,
    )


# -- 5. scorer -------------------------------------------------------------------------------


def scorer(n_docs: int) -> dict[str, Any]:
    from pipeline.core.schema import load_schema
    from pipeline.score import GoldRecord, score

    schema = load_schema("biomedical")
    rng = random.Random(0)
    names = ["systemic lupus erythematosus", "dermatomyositis", "rheumatoid arthritis", "CAR-T toxicity", "fever"]
    gold: dict[str, dict[str, list[GoldRecord]]] = {}
    preds: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for d in range(n_docs):
        doc = f"d{d}"
        gold[doc] = {rt.name: [] for rt in schema.record_types}
        preds[doc] = {rt.name: [] for rt in schema.record_types}
        g = rng.sample(names, 3)
        gold[doc]["conditions"] = [GoldRecord(i, {"name": v, "abbreviation": None}) for i, v in enumerate(g)]
        p = [*g[:2], "systematic lupus erythematosus", "lupus"]
        preds[doc]["conditions"] = [{"name": v, "abbreviation": None, "evidence": v} for v in p]
    t0 = time.perf_counter()
    card = score(schema, preds, gold, "lenient")
    s = time.perf_counter() - t0
    return result(
        f"5. scorer: {n_docs:,} gold/prediction document pairs (lenient)",
        "< 10 s",
        f"{s:.2f} s",
        s < 10,
        seconds=round(s, 3),
        records_per_doc="3 gold, 4 predicted conditions",
        micro_f1=round(card.micro.f1, 4),
    )


# -- 6. client concurrency ---------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    #: socketserver's default backlog is 5: a 6th simultaneous connect waits for a TCP SYN
    #: retry (1 s), which measured the server, not the client
    request_queue_size = 256
    daemon_threads = True
    #: (start, end) of every request, server side
    spans: list[tuple[float, float]]


def _fake_server(latency: float, content: str = "{}") -> _Server:
    """Answers every chat completion with ``content`` after ``latency`` seconds."""
    body = json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            start = time.perf_counter()
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(latency)
            server.spans.append((start, time.perf_counter()))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.spans = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def concurrency(latency: float, per_worker: int, levels: tuple[int, ...] = (1, 4, 16)) -> dict[str, Any]:
    from openai import OpenAI

    server = _fake_server(latency)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="x", max_retries=0)

        def call(_: int) -> None:
            client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])

        call(0)  # warm the connection pool
        rates: dict[int, float] = {}
        for n in levels:
            total = n * per_worker
            t0 = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(call, range(total)))
            rates[n] = total / (time.perf_counter() - t0)
    finally:
        server.shutdown()
    speedup = {n: rates[n] / rates[levels[0]] for n in levels}
    met = all(speedup[n] >= 0.8 * n for n in levels)
    return result(
        f"6a. client concurrency (thread pool around the openai client alone; loopback server, "
        f"{latency * 1000:.0f} ms fixed latency)",
        ">= 0.8·N speed-up at N = " + ", ".join(map(str, levels)),
        "; ".join(f"N={n}: {rates[n]:.1f} req/s, {speedup[n]:.2f}x" for n in levels),
        met,
        requests_per_second={str(n): round(r, 2) for n, r in rates.items()},
        speedup={str(n): round(s, 2) for n, s in speedup.items()},
        note="the client and the server alone: the ceiling for 6b",
    )


def pipeline_concurrency(latency: float, per_worker: int, levels: tuple[int, ...] = (1, 4, 16)) -> dict[str, Any]:
    """``run_extract --concurrency N`` (strategy direct, one chunk per document) against the
    same fixed-latency server: the pipeline's own worker threads, instructor parsing and
    validation, grounding and DuckDB writes included."""
    from pipeline.batch import ExtractConfig, run_extract

    server = _fake_server(latency)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    rates: dict[int, float] = {}
    walls: dict[int, float] = {}
    phase: dict[int, float] = {}
    whole: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-conc-") as tmp:
            for n in levels:
                docs = Path(tmp) / f"docs{n}"
                docs.mkdir()
                for i in range(n * per_worker):
                    text = f"Report {n}-{i}: patients with lupus nephritis received obinutuzumab in a trial.\n"
                    (docs / f"d{i:04d}.txt").write_text(text, encoding="utf-8")
                cfg = ExtractConfig(
                    model="openai:fake",
                    base_url=url,
                    response_format="json_object",
                    strategy="direct",
                    concurrency=n,
                    reground=False,
                )
                server.spans = []
                t0 = time.perf_counter()
                s = run_extract([docs], db=Path(tmp) / f"c{n}.duckdb", config=cfg, progress=False)
                walls[n] = time.perf_counter() - t0
                if s.status != "completed" or s.calls != n * per_worker:
                    raise RuntimeError(f"concurrency {n}: {s.status}, {s.calls} calls, {s.warnings[:2]}")
                first = min(a for a, _ in server.spans)
                # the extraction phase: first request in to the run's end (its last write included)
                phase[n] = t0 + walls[n] - first
                rates[n] = s.calls / phase[n]
                whole[n] = s.calls / walls[n]
    finally:
        server.shutdown()
    speedup = {n: rates[n] / rates[levels[0]] for n in levels}
    return result(
        f"6b. pipeline concurrency (run_extract --concurrency N, {per_worker}·N one-chunk documents; loopback server, "
        f"{latency * 1000:.0f} ms fixed latency)",
        ">= 0.8·N speed-up at N = " + ", ".join(map(str, levels)),
        "; ".join(f"N={n}: {rates[n]:.2f} chunks/s, {speedup[n]:.2f}x" for n in levels),
        all(speedup[n] >= 0.8 * n for n in levels),
        chunks_per_second={str(n): round(r, 3) for n, r in rates.items()},
        extraction_phase_s={str(n): round(w, 2) for n, w in phase.items()},
        whole_run_wall_s={str(n): round(w, 2) for n, w in walls.items()},
        whole_run_speedup={str(n): round(whole[n] / whole[levels[0]], 2) for n in levels},
        speedup={str(n): round(x, 2) for n, x in speedup.items()},
        note="rate = chunks / (first request arriving at the server -> run_extract returning): the extraction "
        "phase with every DuckDB write; whole_run_* also counts reading, chunking and opening the database, "
        "which grow with the number of documents (N times more at N)",
    )


# -- 7. peak memory ---------------------------------------------------------------------------


#: runs ``pipeline extract`` in a child that prints its own peak RSS (KiB) as the last stderr line
_RSS_CHILD = """
import resource, sys
from pipeline.cli.main import main
sys.argv = ["pipeline", "extract", *sys.argv[1:]]
try:
    main()
finally:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def extract_in_child(doc: Path, db: Path, timeout: float) -> tuple[int, float, str]:
    """``pipeline extract DOC --db DB --quiet`` in a fresh process: (exit code, wall seconds,
    the last stderr line, which is the peak RSS in KiB when the run got that far)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(doc), "--db", str(db), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return proc.returncode, time.perf_counter() - t0, last


def peak_rss(doc: Path, db: Path) -> dict[str, Any]:
    rc, wall, last = extract_in_child(doc, db, 900)
    if rc not in (0, 2) or not last.isdigit():
        return result(
            "7. peak RSS of `pipeline extract`", "report", f"failed: rc {rc}: {last[:200]}", None, status="error"
        )
    mib = int(last) / 1024
    return result(
        f"7. peak RSS of `pipeline extract {doc.relative_to(ROOT) if doc.is_relative_to(ROOT) else doc.name}` "
        "(default strategy, fresh process)",
        "report",
        f"{mib:.0f} MiB, {wall:.1f} s wall",
        None,
        peak_rss_mib=round(mib, 1),
        wall_s=round(wall, 2),
        note="ru_maxrss of the process itself; the model is loaded (its tokenizer sizes the chunks)",
    )


# -- 11. a long document ----------------------------------------------------------------------


def long_text(copies: int) -> str:
    """The eval texts on one line ``copies`` times, each copy's sentences in its own order: no
    two chunks are the same text (the response cache would serve them)."""
    import re

    text = " ".join(" ".join(p.read_text(encoding="utf-8").split()) for p in sorted(EVAL_DIR.glob("*.txt")))
    sentences = re.split(r"(?<=\.) ", text)
    out = []
    for c in range(copies):
        order = sentences[:]
        random.Random(c).shuffle(order)
        out.append(f"Report {c}. " + " ".join(order))
    return " ".join(out)


def long_document(chars: int, tmp: Path) -> dict[str, Any]:
    """``pipeline extract`` (default strategy, fresh process) of one single-line document."""
    text = long_text(chars // 9_000 + 1)[:chars]
    folder = tmp / "long"
    folder.mkdir(exist_ok=True)
    (folder / "long.txt").write_text(text, encoding="utf-8")
    rc, wall, last = extract_in_child(folder, tmp / "long.duckdb", 3600)
    name = f"11. one single-line document of {chars / 1e6:.1f} MB (default strategy, fresh process)"
    if rc != 0 or not last.isdigit():
        return result(name, "1 MB <= 10 s", f"failed: rc {rc}: {last[:200]}", None, status="error")
    per_mb = wall / (chars / 1e6)
    return result(
        name,
        "1 MB <= 10 s (issue 14)",
        f"{wall:.1f} s ({per_mb:.0f} s/MB), {int(last) / 1024:.0f} MiB peak",
        per_mb <= 10,
        wall_s=round(wall, 1),
        peak_rss_mib=round(int(last) / 1024, 1),
        note="the eval texts shuffled per copy; the tagger (spaCy) and the model's fill are most of the time",
    )


# -- 8. PDF text extraction ---------------------------------------------------------------------


def pdf_extraction(min_pages: int) -> dict[str, Any]:
    """``read_document`` on a text-layer PDF typeset from the eval texts (reportlab, justified,
    running header and page numbers): PDFium in the reader process, paragraphs, hyphens, running
    lines and the .txt cleaner included."""
    name, target = "8. PDF text extraction", ">= 20 pages/s"
    try:
        from tests.pdfmaker import typeset
    except ImportError as exc:
        return skipped(name, target, f"the PDF maker needs the dev extra ({exc})")
    from pipeline.ingest import read_document
    from pipeline.pdf import _READER

    paras = [line for f in sorted(EVAL_DIR.glob("*.txt")) for line in f.read_text(encoding="utf-8").splitlines()]
    with tempfile.TemporaryDirectory(prefix="bench-pdf-") as tmp:
        one = typeset(Path(tmp) / "one.pdf", paras, header="The Rheumatology Review")
        per_copy = len(read_document(one).pages)
        path = typeset(Path(tmp) / "bench.pdf", paras * -(-min_pages // per_copy), header="The Rheumatology Review")
        _READER.stop()  # the first read below starts the reader process, as a fresh `pipeline extract` does
        t0 = time.perf_counter()
        doc = read_document(path)
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(3):
            t0 = time.perf_counter()
            read_document(path)
            warm.append(time.perf_counter() - t0)
    pages = len(doc.pages)
    warm_s = sorted(warm)[1]
    return result(
        f"{name}: read_document on a {pages}-page text-layer PDF",
        target,
        f"{pages / cold:.0f} pages/s with the reader process start ({cold:.2f} s), {pages / warm_s:.0f} pages/s warm",
        pages / cold >= 20,
        pages=pages,
        cold_s=round(cold, 3),
        warm_median_s=round(warm_s, 3),
        chars=len(doc.text),
        note="cold: the first PDF of a run (starts the reader process); warm: the median of 3 further reads",
    )
