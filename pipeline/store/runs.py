"""What ``pipeline extract`` writes: documents and chunks, runs, each chunk's result (its LLM
attempts, its records, its cached response) in one transaction, and the run's merged entities.

A crash leaves either all of a chunk's rows or none of them.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.core.schema import RecordType, Schema
from pipeline.core.types import Chunk, Document
from pipeline.store.db import _NULL, RECORD_COLUMNS, StoreBase, insert_rows, now, quote, record_table


class RunWrites(StoreBase):
    """The writes of the extraction job."""

    def upsert_documents(self, docs: Sequence[Document], chunks: Sequence[Chunk], chunking: str | None = None) -> None:
        """Store the documents and their chunks; with ``chunking`` (the chunking configuration's
        key) also which chunks each document was cut into, for ``Reads.chunked``."""
        self._upsert_documents(docs, chunks)
        if chunking is not None:
            by_doc: dict[tuple[str, str], list[str]] = {(d.doc_id, d.sha256): [] for d in docs}
            for c in chunks:
                by_doc.setdefault((c.doc_id, c.doc_sha256), []).append(c.chunk_id)
            insert_rows(
                self.con,
                "chunkings",
                [[doc_id, sha, chunking, json.dumps(ids)] for (doc_id, sha), ids in by_doc.items()],
                tail="ON CONFLICT DO NOTHING",
            )

    def _upsert_documents(self, docs: Sequence[Document], chunks: Sequence[Chunk]) -> None:
        with self.transaction():
            for d in docs:
                spans = json.dumps([[s.start, s.end] for s in d.kept])
                pages = json.dumps([[p.start, p.end] for p in d.pages]) if d.pages else None
                # a version stored once stays as first seen, but one stored before page spans were
                # kept (migration 007) gets them when its source is read again
                self.con.execute(
                    "INSERT INTO documents (doc_id, doc_sha256, path, format, n_chars, text, kept_spans, pages) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (doc_id, doc_sha256) DO UPDATE SET pages = excluded.pages "
                    "WHERE documents.pages IS NULL AND documents.format = excluded.format",
                    [d.doc_id, d.sha256, d.path, d.format, len(d.text), d.text, spans, pages],
                )
            insert_rows(
                self.con,
                "chunks",
                [
                    [
                        c.chunk_id,
                        c.doc_id,
                        c.doc_sha256,
                        c.index,
                        c.start,
                        c.end,
                        c.text,
                        c.content_hash,
                        c.n_tokens,
                    ]
                    for c in chunks
                ],
                tail="ON CONFLICT DO NOTHING",
            )

    def start_run(self, run_id: str, meta: dict[str, Any], docs: Sequence[Document]) -> None:
        with self.transaction():
            self.con.execute(
                "INSERT INTO runs (run_id, started_at, status, model, strategy, schema_name, schema_spec, schema_hash, "
                "prompt_hash, config, config_hash, pid, tool_version, n_documents) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    now(),
                    meta["model"],
                    meta["strategy"],
                    meta["schema_name"],
                    meta["schema_spec"],
                    meta["schema_hash"],
                    meta["prompt_hash"],
                    json.dumps(meta["config"], sort_keys=True),
                    meta["config_hash"],
                    meta["pid"],
                    __version__,
                    len(docs),
                ],
            )
            insert_rows(self.con, "run_documents", [[run_id, d.doc_id, d.sha256] for d in docs])

    def mark_stale_runs(self) -> None:
        """Runs still 'running' were interrupted: DuckDB's file lock means no other process
        can be writing while this one has the database open."""
        self.con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")

    def finish_run(self, run_id: str, status: str, totals: dict[str, Any]) -> None:
        sets = ", ".join(f"{k} = ?" for k in totals)
        self.con.execute(
            f"UPDATE runs SET status = ?, finished_at = ?, {sets} WHERE run_id = ?",
            [status, now(), *totals.values(), run_id],
        )

    def completed_extractions(self, extraction_keys: Sequence[str]) -> set[str]:
        """Which of ``extraction_keys`` already have a successful extraction (one query)."""
        rows = self.con.execute(
            "SELECT extraction_key FROM extractions WHERE status = 'ok' AND extraction_key IN (SELECT unnest(?))",
            [list(extraction_keys)],
        ).fetchall()
        return {str(r[0]) for r in rows}

    def cached_keys(self, cache_keys: Sequence[str]) -> set[str]:
        """Which of ``cache_keys`` have a cached response (one query)."""
        rows = self.con.execute(
            "SELECT cache_key FROM llm_cache WHERE cache_key IN (SELECT unnest(?))", [list(cache_keys)]
        ).fetchall()
        return {str(r[0]) for r in rows}

    def cached_response(self, cache_key: str) -> Any | None:
        """The stored response for ``cache_key`` (see ``batch.cache_key``), or None."""
        row = self.con.execute("SELECT response FROM llm_cache WHERE cache_key = ?", [cache_key]).fetchone()
        return json.loads(row[0]) if row else None

    def write_chunk_result(
        self,
        *,
        run_id: str,
        chunk: Chunk,
        extraction_key: str,
        config_hash: str,
        schema: Schema,
        status: str,
        error: str | None,
        calls: Sequence[dict[str, Any]],
        records: dict[str, list[dict[str, Any]]],
        response: Any,
        outcome: str | None = None,
        cache: dict[str, Any] | None = None,
    ) -> None:
        """Everything about one chunk, in one transaction; replaces a previous failed try.

        ``outcome`` (default: extracted/failed by ``status``) goes in ``run_chunks``; with
        ``cache`` (its ``cache_key`` and what the key was made of) an ok response is also stored
        in the response cache."""
        n_records = sum(len(v) for v in records.values())
        with self.transaction():
            insert_rows(
                self.con,
                "llm_calls",
                [
                    [
                        call["call_id"],
                        run_id,
                        chunk.chunk_id,
                        extraction_key,
                        call["attempt"],
                        call["started_at"],
                        call["latency_s"],
                        call["model"],
                        call["prompt_hash"],
                        call["schema_hash"],
                        call["tokens_in"],
                        call["tokens_out"],
                        call["status"],
                        call.get("error_class"),
                        call.get("error"),
                        call.get("response_text"),
                    ]
                    for call in calls
                ],
            )
            previous = self.con.execute(
                "DELETE FROM extractions WHERE extraction_key = ? RETURNING n_records", [extraction_key]
            ).fetchall()
            if any(n for (n,) in previous):  # --refresh of a stored result: replace its records
                for rt in schema.record_types:
                    self.con.execute(f"DELETE FROM {record_table(rt.name)} WHERE extraction_key = ?", [extraction_key])
            self.con.execute(
                "INSERT INTO extractions (extraction_key, chunk_id, config_hash, run_id, status, error, attempts, "
                "n_records, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    extraction_key,
                    chunk.chunk_id,
                    config_hash,
                    run_id,
                    status,
                    error,
                    len(calls),
                    n_records,
                    json.dumps(response) if response is not None else None,
                ],
            )
            for rt in schema.record_types:
                rows = records.get(rt.name, [])
                if rows:
                    self._insert_records(rt, schema.name, run_id, chunk, extraction_key, rows)
            if cache is not None and status == "ok" and response is not None:
                self._cache_response(cache, chunk, extraction_key, response)
            outcome = outcome or ("extracted" if status == "ok" else "failed")
            self.link_run_chunk(run_id, chunk.chunk_id, extraction_key, outcome)

    def _cache_response(self, cache: dict[str, Any], chunk: Chunk, extraction_key: str, response: Any) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO llm_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                cache["cache_key"],
                chunk.content_hash,
                cache["prompt"],
                cache["schema"],
                cache["strategy"],
                cache["model"],
                json.dumps(cache["decoding"], sort_keys=True),
                json.dumps(response),
                extraction_key,
                now(),
            ],
        )

    def link_run_chunk(self, run_id: str, chunk_id: str, extraction_key: str, outcome: str) -> None:
        self.con.execute(
            "INSERT INTO run_chunks VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET outcome = excluded.outcome, "
            "extraction_key = excluded.extraction_key",
            [run_id, chunk_id, extraction_key, outcome],
        )

    def _insert_records(
        self,
        rt: RecordType,
        schema_name: str,
        run_id: str,
        chunk: Chunk,
        extraction_key: str,
        rows: list[dict[str, Any]],
    ) -> None:
        fields = [f.name for f in rt.fields if f.name != "evidence"]
        base = [name for name, _ in RECORD_COLUMNS]
        cols = base + fields
        values = []
        for i, row in enumerate(rows):
            values.append(
                [
                    f"{extraction_key[:16]}:{rt.name}:{i}",
                    extraction_key,
                    run_id,
                    schema_name,
                    chunk.doc_id,
                    chunk.doc_sha256,
                    chunk.chunk_id,
                    i,
                    row.get("evidence"),
                    row.get("evidence_start"),
                    row.get("evidence_end"),
                    row.get("alignment"),
                    row.get("grounded"),
                    *[row.get(f) for f in fields],
                ]
            )
        insert_rows(self.con, f"{record_table(rt.name)} ({', '.join(quote(c) for c in cols)})", values)

    @staticmethod
    def record_columns(rt: RecordType) -> list[str]:
        """Column order of ``rec_<type>`` rows as :meth:`bulk_insert_records` takes them."""
        return [name for name, _ in RECORD_COLUMNS] + [f.name for f in rt.fields if f.name != "evidence"]

    def bulk_insert_records(self, rt: RecordType, rows: Iterable[Sequence[Any]]) -> int:
        """Insert many record rows (each in :meth:`record_columns` order) in one statement.

        Row-wise ``executemany`` runs at a few hundred rows a second in DuckDB's Python
        client, and pandas/Arrow are not dependencies, so the rows are streamed to a
        temporary CSV file (``csv`` module, list values as JSON) and loaded with one
        ``INSERT ... SELECT FROM read_csv``, in one transaction. Returns the rows written.
        """
        table = record_table(rt.name)
        cols = self.record_columns(rt)
        types = dict(
            self.con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]
            ).fetchall()
        )
        list_idx = [i for i, c in enumerate(cols) if str(types[c]).endswith("[]")]
        n = 0
        with tempfile.TemporaryDirectory(prefix="pipeline-bulk-") as tmp:
            path = Path(tmp) / "rows.csv"
            with path.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
                for row in rows:
                    out = [_NULL if v is None else v for v in row]
                    for i in list_idx:
                        if out[i] is not _NULL:
                            out[i] = json.dumps(out[i])
                    writer.writerow(out)
                    n += 1
            if n == 0:
                return 0
            read_types = {c: ("VARCHAR" if str(types[c]).endswith("[]") else str(types[c])) for c in cols}
            spec = "{" + ", ".join(f"'{c}': '{t}'" for c, t in read_types.items()) + "}"
            select = ", ".join(
                f"CAST(CAST({quote(c)} AS JSON) AS {types[c]})" if str(types[c]).endswith("[]") else quote(c)
                for c in cols
            )
            with self.transaction():
                self.con.execute(
                    f"INSERT INTO {table} ({', '.join(quote(c) for c in cols)}) SELECT {select} FROM read_csv(?, header = false, "
                    f"columns = {spec}, delim = ',', auto_detect = false, quote = '\"', escape = '\"', nullstr = '\\N', allow_quoted_nulls = false)",
                    [str(path)],
                )
        return n

    # -- reads -------------------------------------------------------------------------

    def write_entities(self, run_id: str, entities: Sequence[dict[str, Any]]) -> None:
        """Replace the run's merged records. Each entity: entity_id, doc_id, record_type,
        label, fields (dict), first_start, mentions (list of record_id/evidence/offsets)."""
        with self.transaction():
            self.con.execute(
                "DELETE FROM entity_mentions WHERE entity_id IN (SELECT entity_id FROM entities WHERE run_id = ?)",
                [run_id],
            )
            self.con.execute("DELETE FROM entities WHERE run_id = ?", [run_id])
            if not entities:
                return
            insert_rows(
                self.con,
                "entities",
                [
                    [
                        e["entity_id"],
                        run_id,
                        e["doc_id"],
                        e["record_type"],
                        e["label"],
                        json.dumps(e["fields"], ensure_ascii=False, default=str),
                        len(e["mentions"]),
                        e["first_start"],
                    ]
                    for e in entities
                ],
            )
            insert_rows(
                self.con,
                "entity_mentions",
                [
                    [e["entity_id"], m["record_id"], m["evidence"], m["evidence_start"], m["evidence_end"]]
                    for e in entities
                    for m in e["mentions"]
                ],
                verb="INSERT OR IGNORE",
            )

    # -- friendly views (``pipeline sql``; see pipeline/store/views.py) -----------------
