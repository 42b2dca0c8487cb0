"""What ``pipeline extract`` writes: documents and chunks, runs, each chunk's result (its LLM
attempts, its records, its cached response) in one transaction, and the run's merged entities.

A crash leaves either all of a chunk's rows or none of them.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.core.schema import RecordType, Schema
from pipeline.core.types import Chunk, Document
from pipeline.store.bulk import EXTRACTIONS, LLM_CACHE, LLM_CALLS, RUN_CHUNKS, record_columns, result_rows
from pipeline.store.db import _NULL, RECORD_COLUMNS, StoreBase, insert_rows, now, quote, record_table

if TYPE_CHECKING:
    import pyarrow as pa


#: a chunk linked to a run again (a retry within the run) takes its latest outcome
_RELINK = " ON CONFLICT DO UPDATE SET outcome = excluded.outcome, extraction_key = excluded.extraction_key"


def _names(columns: Mapping[str, str]) -> str:
    return ", ".join(quote(c) for c in columns)


def _marks(columns: Mapping[str, str]) -> str:
    return ", ".join("?" for _ in columns)


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
            # a version stored once stays as first seen, but one stored before page spans were
            # kept (migration 007) gets them when its source is read again. One statement for all
            # the documents: one each ran at about 80 documents/s (a day for 10 million)
            insert_rows(
                self.con,
                "documents (doc_id, doc_sha256, path, format, n_chars, text, kept_spans, pages)",
                [
                    [
                        d.doc_id,
                        d.sha256,
                        d.path,
                        d.format,
                        len(d.text),
                        d.text,
                        json.dumps([[s.start, s.end] for s in d.kept]),
                        json.dumps([[p.start, p.end] for p in d.pages]) if d.pages else None,
                    ]
                    for d in docs
                ],
                tail="ON CONFLICT (doc_id, doc_sha256) DO UPDATE SET pages = excluded.pages "
                "WHERE documents.pages IS NULL AND documents.format = excluded.format",
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

    def cached_responses(self, cache_keys: Sequence[str]) -> dict[str, Any]:
        """{cache key: stored response} for those of ``cache_keys`` in the cache (one query)."""
        rows = self.con.execute(
            "SELECT cache_key, response FROM llm_cache WHERE cache_key IN (SELECT unnest(?))", [list(cache_keys)]
        ).fetchall()
        return {str(k): json.loads(r) for k, r in rows}

    def link_run_chunks(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """Many ``link_run_chunk`` rows (run_id, chunk_id, extraction_key, outcome) in one
        statement, e.g. the chunks a run reuses from earlier runs."""
        if not rows:
            return
        from pipeline.store.bulk import arrow_table

        self.con.register("_new_run_chunks", arrow_table(RUN_CHUNKS, rows))
        try:
            with self.transaction():
                self._insert_from("run_chunks", RUN_CHUNKS, tail=_RELINK)
        finally:
            self.con.unregister("_new_run_chunks")

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
        rows = result_rows(
            schema,
            run_id=run_id,
            chunk=chunk,
            extraction_key=extraction_key,
            config_hash=config_hash,
            status=status,
            error=error,
            calls=calls,
            records=records,
            response=response,
            outcome=outcome,
            cache=cache,
        )
        with self.transaction():
            insert_rows(self.con, "llm_calls", rows["llm_calls"])
            previous = self.con.execute(
                "DELETE FROM extractions WHERE extraction_key = ? RETURNING n_records", [extraction_key]
            ).fetchall()
            if any(n for (n,) in previous):  # --refresh of a stored result: replace its records
                for rt in schema.record_types:
                    self.con.execute(f"DELETE FROM {record_table(rt.name)} WHERE extraction_key = ?", [extraction_key])
            self.con.execute(
                f"INSERT INTO extractions ({_names(EXTRACTIONS)}) VALUES ({_marks(EXTRACTIONS)})",
                rows["extractions"][0],
            )
            for rt in schema.record_types:
                table = record_table(rt.name)
                if rows.get(table):
                    insert_rows(self.con, f"{table} ({_names(record_columns(rt))})", rows[table])
            if rows["llm_cache"]:
                self.con.execute(f"INSERT OR REPLACE INTO llm_cache VALUES ({_marks(LLM_CACHE)})", rows["llm_cache"][0])
            self.link_run_chunk(*rows["run_chunks"][0])

    def defer_checkpoints(self, wal: str = "1GB") -> None:
        """Let the write-ahead log grow to ``wal`` before DuckDB folds it into the file. Each
        checkpoint costs seconds once the tables hold some 100,000 chunks (7-13 s measured on
        the 2-core machine, whatever little it adds), and the default (16 MB of log, about
        2,000 chunks) cut bulk commits from 1,900 to under 300 chunks/s. Stored data are the
        same; a crash replays the log on the next open (4 s for 400 MB)."""
        self.con.execute(f"SET checkpoint_threshold = '{wal}'")

    def write_chunk_results(self, tables: Mapping[str, pa.Table], schema: Schema) -> None:
        """Many chunk results in one transaction. ``tables`` holds their rows by table name,
        as ``ResultRows.to_arrow`` makes them (several workers' tables concatenated). The
        effect is ``write_chunk_result`` for each chunk in turn: a stored result under the
        same extraction key is replaced, its records included, and the response cache keeps
        one response per cache key. An extraction key may appear only once."""
        keys = tables["extractions"].column("extraction_key").to_pylist()
        if len(set(keys)) != len(keys):
            raise ValueError("write_chunk_results: an extraction key appears twice in one commit")
        if not keys:
            return
        registered: list[str] = []
        try:
            for table, data in tables.items():
                self.con.register(f"_new_{table}", data)
                registered.append(f"_new_{table}")
            with self.transaction():
                self._insert_from("llm_calls", LLM_CALLS)
                previous = self.con.execute(
                    "DELETE FROM extractions WHERE extraction_key IN (SELECT extraction_key FROM _new_extractions) "
                    "RETURNING extraction_key, n_records"
                ).fetchall()
                replaced = [k for k, n in previous if n]
                if replaced:  # --refresh of stored results: replace their records
                    for rt in schema.record_types:
                        self.con.execute(
                            f"DELETE FROM {record_table(rt.name)} WHERE extraction_key IN (SELECT unnest(?))",
                            [replaced],
                        )
                self._insert_from("extractions", EXTRACTIONS)
                for rt in schema.record_types:
                    table = record_table(rt.name)
                    if table in tables and tables[table].num_rows:
                        self._insert_from(table, record_columns(rt))
                self._insert_from(
                    "llm_cache",
                    LLM_CACHE,
                    "OR REPLACE",
                    " QUALIFY row_number() OVER (PARTITION BY cache_key ORDER BY created_at DESC) = 1",
                )
                self._insert_from("run_chunks", RUN_CHUNKS, tail=_RELINK)
        finally:
            for name in registered:
                self.con.unregister(name)

    def _insert_from(self, table: str, columns: Mapping[str, str], verb: str = "", tail: str = "") -> None:
        cols = _names(columns)
        self.con.execute(f"INSERT {verb} INTO {table} ({cols}) SELECT {cols} FROM _new_{table}{tail}")

    def link_run_chunk(self, run_id: str, chunk_id: str, extraction_key: str, outcome: str) -> None:
        self.con.execute(
            "INSERT INTO run_chunks VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET outcome = excluded.outcome, "
            "extraction_key = excluded.extraction_key",
            [run_id, chunk_id, extraction_key, outcome],
        )

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
        list_idx = [i for i, c in enumerate(cols) if str(types[c]).endswith("[]") or types[c] == "JSON"]
        n = 0
        with tempfile.TemporaryDirectory(prefix="pipeline-bulk-") as tmp:
            path = Path(tmp) / "rows.csv"
            with path.open("w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
                for row in rows:
                    out = [_NULL if v is None else v for v in row]
                    for i in list_idx:
                        if out[i] is not _NULL and not isinstance(out[i], str):
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
