"""The DuckDB store: one real database file holding documents, chunks, runs, every LLM
call attempt and the extracted records (one ``rec_<type>`` table per record type).

Writes for one chunk go in one transaction (``chunk_transaction``), so a crash leaves either
all of a chunk's rows or none of them.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipeline import __version__
from pipeline.core.errors import StoreError
from pipeline.core.schema import RecordType, Schema
from pipeline.core.types import Chunk, Document
from pipeline.store.migrations import MIGRATIONS
from pipeline.store.views import ensure_views

# duckdb's Python client tries `import pandas` for every bound parameter; without pandas each
# try walks sys.path again and took half of a chunk's write time (bench item 6b). Recording
# the absence once makes those imports fail at once, as they would anyway.
if importlib.util.find_spec("pandas") is None:
    sys.modules.setdefault("pandas", None)  # type: ignore[arg-type]

RECORD_COLUMNS = [
    ("record_id", "VARCHAR PRIMARY KEY"),
    ("extraction_key", "VARCHAR NOT NULL"),
    ("run_id", "VARCHAR NOT NULL"),
    ("schema_name", "VARCHAR NOT NULL"),
    ("doc_id", "VARCHAR NOT NULL"),
    ("doc_sha256", "VARCHAR NOT NULL"),
    ("chunk_id", "VARCHAR NOT NULL"),
    ("ordinal", "INTEGER NOT NULL"),
    ("evidence", "VARCHAR"),
    ("evidence_start", "BIGINT"),
    ("evidence_end", "BIGINT"),
    ("alignment", "VARCHAR"),
    ("grounded", "BOOLEAN"),
]


class _CsvNull(int):
    """Written unquoted as ``\\N`` by ``csv.QUOTE_NONNUMERIC`` (numbers are not quoted), so a
    NULL stays distinct from the quoted empty string (Python 3.11 has no ``QUOTE_STRINGS``)."""

    def __str__(self) -> str:
        return "\\N"


_NULL = _CsvNull(0)
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def record_table(record_type: str) -> str:
    if not IDENT.match(record_type):
        raise StoreError(f"record type {record_type!r} is not a valid SQL identifier", "rename the schema field")
    return f"rec_{record_type}"


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the database file, turning DuckDB's failures into one-line errors."""
    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(f"database {path} does not exist", "run `pipeline extract` first or pass --db PATH")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        msg = str(exc)
        if "lock" in msg.lower():
            holder = re.search(r"PID (\d+)", msg)
            who = f" (PID {holder.group(1)})" if holder else ""
            raise StoreError(
                f"database {path} is locked by another process{who}",
                "wait for that process to finish, or pass --db with another file",
            ) from exc
        raise StoreError(
            f"cannot open database {path}: {msg.splitlines()[0]}", "check the path and permissions"
        ) from exc
    except duckdb.Error as exc:
        raise StoreError(
            f"cannot open database {path}: {str(exc).splitlines()[0]}",
            "the file is not a DuckDB database of this DuckDB version; pass --db with another file",
        ) from exc


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply pending migrations in order; return the names applied."""
    con.execute("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    done = {r[0] for r in con.execute("SELECT name FROM _migrations").fetchall()}
    known = {name for name, _ in MIGRATIONS}
    unknown = sorted(done - known)
    if unknown:
        raise StoreError(
            f"database was written by a newer version of pipeline (unknown migration {unknown[-1]})",
            f"upgrade pipeline (this is {__version__}) or pass --db with another file",
        )
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            fn(con)
            con.execute("INSERT INTO _migrations VALUES (?, ?)", [name, now()])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


class Store:
    """Read/write access to one pipeline database. Use as a context manager."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.con = connect(self.path, read_only=read_only)
        if read_only:
            names = {r[0] for r in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            if "_migrations" not in names:
                raise StoreError(f"{self.path} is not a pipeline database", "pass --db with a pipeline database")
            known = {name for name, _ in MIGRATIONS}
            done = {r[0] for r in self.con.execute("SELECT name FROM _migrations").fetchall()}
            if done - known:
                raise StoreError(
                    f"database was written by a newer version of pipeline (unknown migration {sorted(done - known)[-1]})",
                    f"upgrade pipeline (this is {__version__})",
                )
        else:
            migrate(self.con)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # -- schema-dependent record tables ------------------------------------------------

    def ensure_record_tables(self, schema: Schema) -> None:
        """Create ``rec_<type>`` tables, adding columns a schema needs that are missing."""
        for rt in schema.record_types:
            table = record_table(rt.name)
            cols = ", ".join(f"{name} {decl}" for name, decl in RECORD_COLUMNS)
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")
            have = {
                r[0]: r[1]
                for r in self.con.execute(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
                    [table],
                ).fetchall()
            }
            for f in rt.fields:
                if f.name == "evidence":
                    continue
                if not IDENT.match(f.name) or f.name in dict(RECORD_COLUMNS):
                    raise StoreError(
                        f"field {rt.name}.{f.name} cannot be stored (reserved or not an identifier)",
                        "rename the field in the schema",
                    )
                if f.name not in have:
                    self.con.execute(f"ALTER TABLE {table} ADD COLUMN {f.name} {f.sql_type}")
                elif have[f.name] != f.sql_type:
                    raise StoreError(
                        f"{table}.{f.name} is {have[f.name]} in the database but {f.sql_type} in schema {schema.name!r}",
                        "use another --db for this schema, or rename the field",
                    )

    # -- writes ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def upsert_documents(self, docs: Sequence[Document], chunks: Sequence[Chunk]) -> None:
        with self.transaction():
            for d in docs:
                spans = json.dumps([[s.start, s.end] for s in d.kept])
                self.con.execute(
                    "INSERT INTO documents (doc_id, doc_sha256, path, format, n_chars, text, kept_spans) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [d.doc_id, d.sha256, d.path, d.format, len(d.text), d.text, spans],
                )
            self.con.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
            )

    def start_run(self, run_id: str, meta: dict[str, Any], docs: Sequence[Document]) -> None:
        with self.transaction():
            self.con.execute(
                "INSERT INTO runs (run_id, started_at, status, model, strategy, schema_name, schema_hash, "
                "prompt_hash, config, config_hash, pid, tool_version, n_documents) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    now(),
                    meta["model"],
                    meta["strategy"],
                    meta["schema_name"],
                    meta["schema_hash"],
                    meta["prompt_hash"],
                    json.dumps(meta["config"], sort_keys=True),
                    meta["config_hash"],
                    meta["pid"],
                    __version__,
                    len(docs),
                ],
            )
            self.con.executemany(
                "INSERT INTO run_documents VALUES (?, ?, ?)", [[run_id, d.doc_id, d.sha256] for d in docs]
            )

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
        cache_key: str | None = None,
    ) -> None:
        """Everything about one chunk, in one transaction; replaces a previous failed try.

        ``outcome`` (default: extracted/failed by ``status``) goes in ``run_chunks``; with
        ``cache_key`` an ok response is also stored in the response cache."""
        n_records = sum(len(v) for v in records.values())
        with self.transaction():
            for call in calls:
                self.con.execute(
                    "INSERT INTO llm_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            if cache_key is not None and status == "ok" and response is not None:
                self._cache_response(cache_key, chunk, run_id, extraction_key, response)
            outcome = outcome or ("extracted" if status == "ok" else "failed")
            self.link_run_chunk(run_id, chunk.chunk_id, extraction_key, outcome)

    def _cache_response(self, cache_key: str, chunk: Chunk, run_id: str, extraction_key: str, response: Any) -> None:
        run = self.con.execute(
            "SELECT prompt_hash, schema_hash, strategy, model, config ->> 'decoding' FROM runs WHERE run_id = ?",
            [run_id],
        ).fetchone()
        prompt_hash, schema_hash, strategy, model, decoding = run if run else ("", "", "", "", "{}")
        self.con.execute(
            "INSERT OR REPLACE INTO llm_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                cache_key,
                chunk.content_hash,
                prompt_hash,
                schema_hash,
                strategy,
                model,
                decoding,
                json.dumps(response),
                extraction_key,
                now(),
            ],
        )

    def cached_response(self, cache_key: str) -> Any | None:
        """The stored response for ``cache_key`` (see ``batch.cache_key``), or None."""
        row = self.con.execute("SELECT response FROM llm_cache WHERE cache_key = ?", [cache_key]).fetchone()
        return json.loads(row[0]) if row else None

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
        placeholders = ", ".join("?" for _ in cols)
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
        self.con.executemany(f"INSERT INTO {record_table(rt.name)} ({', '.join(cols)}) VALUES ({placeholders})", values)

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
                f"CAST(CAST({c} AS JSON) AS {types[c]})" if str(types[c]).endswith("[]") else c for c in cols
            )
            with self.transaction():
                self.con.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM read_csv(?, header = false, "
                    f"columns = {spec}, delim = ',', auto_detect = false, quote = '\"', escape = '\"', nullstr = '\\N', allow_quoted_nulls = false)",
                    [str(path)],
                )
        return n

    # -- reads -------------------------------------------------------------------------

    def table_counts(self) -> dict[str, int]:
        names = [
            r[0]
            for r in self.con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY table_name"
            ).fetchall()
        ]
        return {n: int(self.con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n in names}  # type: ignore[index]

    def resolve_run(self, run: str) -> str:
        if run == "latest":
            row = self.con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
            if row is None:
                raise StoreError(f"no runs in {self.path}", "run `pipeline extract` first")
            return str(row[0])
        row = self.con.execute("SELECT run_id FROM runs WHERE run_id = ?", [run]).fetchone()
        if row is None:
            raise StoreError(f"no run {run!r} in {self.path}", "list runs with `pipeline sql 'SELECT * FROM runs'`")
        return str(row[0])

    def run_records(
        self, run_id: str, schema: Schema, *, include_ungrounded: bool = False
    ) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """Records of a run: {doc_id: {record_type: [record dict, ...]}} for every run document."""
        docs = [
            r[0]
            for r in self.con.execute(
                "SELECT doc_id FROM run_documents WHERE run_id = ? ORDER BY doc_id", [run_id]
            ).fetchall()
        ]
        out: dict[str, dict[str, list[dict[str, Any]]]] = {d: {rt.name: [] for rt in schema.record_types} for d in docs}
        for rt in schema.record_types:
            table = record_table(rt.name)
            exists = self.con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()
            if not exists or not exists[0]:
                continue
            grounded = "" if include_ungrounded else " AND coalesce(r.grounded, false)"
            cur = self.con.execute(
                f"SELECT r.* FROM {table} r JOIN run_chunks rc ON rc.extraction_key = r.extraction_key "
                f"WHERE rc.run_id = ?{grounded} ORDER BY r.doc_id, r.chunk_id, r.ordinal",
                [run_id],
            )
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                rec = dict(zip(names, row, strict=True))
                out.setdefault(rec["doc_id"], {t.name: [] for t in schema.record_types})[rt.name].append(rec)
        return out

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
            self.con.executemany(
                "INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
            self.con.executemany(
                "INSERT OR IGNORE INTO entity_mentions VALUES (?, ?, ?, ?, ?)",
                [
                    [e["entity_id"], m["record_id"], m["evidence"], m["evidence_start"], m["evidence_end"]]
                    for e in entities
                    for m in e["mentions"]
                ],
            )

    # -- friendly views (``pipeline sql``; see pipeline/store/views.py) -----------------

    def ensure_views(self, schema: Schema) -> dict[str, str]:
        """Create or refresh one view per record type; return {record type: view name}."""
        with self.transaction():
            return ensure_views(self.con, schema)
