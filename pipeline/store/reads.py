"""What the reading commands (``eval``, ``report``, ``export``) read: a run, its schema, its
documents and its records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.errors import StoreError
from pipeline.core.schema import RecordType, Schema, load_schema
from pipeline.core.types import Chunk, Span
from pipeline.store.db import StoreBase, quote, record_table
from pipeline.store.views import has_column, has_page_spans, record_select, run_sql, sql_string

#: a run whose records the reading commands use by default
FINISHED = ("completed", "completed_with_failures")


class Reads(StoreBase):
    """Reads of one run."""

    def resolve_run(self, run: str, notes: list[str] | None = None) -> str:
        """``latest``: the latest *finished* run (a note says so when a newer run is
        unfinished); else the run with that id."""
        if run != "latest":
            row = self.con.execute("SELECT run_id FROM runs WHERE run_id = ?", [run]).fetchone()
            if row is None:
                raise StoreError(f"no run {run!r} in {self.path}", "list runs with `pipeline sql 'SELECT * FROM runs'`")
            return str(row[0])
        rows = self.con.execute("SELECT run_id, status FROM runs ORDER BY started_at DESC, run_id DESC").fetchall()
        if not rows:
            raise StoreError(f"no runs in {self.path}", "run `pipeline extract` first")
        finished = next((r for r in rows if r[1] in FINISHED), None)
        if finished is None:
            raise StoreError(
                f"no finished run in {self.path} (the latest, {rows[0][0]}, is {rows[0][1]})",
                "run `pipeline extract` again to finish it, or pass --run RUN_ID",
            )
        newer = rows[: rows.index(finished)]
        if newer and notes is not None:
            notes.append(
                f"using run {finished[0]}, the latest finished one; newer run {newer[0][0]} is {newer[0][1]} "
                f"(pass --run {newer[0][0]} to read it anyway)"
            )
        return str(finished[0])

    def chunked(self, docs: list[tuple[str, str]], chunking: str) -> dict[tuple[str, str], list[Chunk]]:
        """The chunks each (doc_id, sha256) was cut into under ``chunking``, where stored."""
        if "chunkings" not in self.table_names():
            return {}
        rows = self.con.execute(
            "SELECT k.doc_id, k.doc_sha256, c.chunk_id, c.idx, c.start_offset, c.end_offset, c.text, c.n_tokens "
            "FROM chunkings k, unnest(CAST(k.chunk_ids AS VARCHAR[])) AS u(chunk_id) "
            "JOIN chunks c ON c.chunk_id = u.chunk_id "
            "WHERE k.config = ? AND (k.doc_id, k.doc_sha256) IN (SELECT unnest(?), unnest(?)) "
            "ORDER BY k.doc_id, c.idx",
            [chunking, [d for d, _ in docs], [s for _, s in docs]],
        ).fetchall()
        out: dict[tuple[str, str], list[Chunk]] = {}
        for doc_id, sha, _, idx, start, end, text, n_tokens in rows:
            out.setdefault((doc_id, sha), []).append(Chunk(doc_id, sha, idx, start, end, text, n_tokens))
        return out

    def run_info(self, run_id: str) -> dict[str, Any]:
        """The run's row of ``runs``."""
        cur = self.con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        names = [d[0] for d in cur.description]
        row = cur.fetchone()
        if row is None:
            raise StoreError(f"no run {run_id!r} in {self.path}", "list runs with `pipeline sql 'SELECT * FROM runs'`")
        return dict(zip(names, row, strict=True))

    def run_schema(self, run_id: str, schema: str | None = None) -> Schema:
        """The schema to read a run with: ``schema`` if given, else the one the run used."""
        info = self.run_info(run_id)
        loaded = load_schema(schema or info.get("schema_spec") or info["schema_name"])
        if info["schema_name"] and loaded.name != info["schema_name"] and info.get("schema_spec"):
            raise StoreError(
                f"run {run_id} used schema {info['schema_name']!r}, not {loaded.name!r}",
                f"pass --schema {info['schema_spec']} (or leave --schema out)",
            )
        return loaded

    def run_documents(self, run_id: str) -> list[tuple[str, str, str]]:
        """(doc_id, path, text) of every document of the run, by doc_id."""
        rows = self.con.execute(
            "SELECT d.doc_id, d.path, d.text FROM run_documents rd JOIN documents d "
            "ON d.doc_id = rd.doc_id AND d.doc_sha256 = rd.doc_sha256 WHERE rd.run_id = ? ORDER BY d.doc_id",
            [run_id],
        ).fetchall()
        return [(str(r[0]), str(r[1] or ""), str(r[2] or "")) for r in rows]

    def run_document_pages(self, run_id: str) -> dict[str, list[Span]]:
        """{doc_id: page spans} of the run's documents that have pages (PDF); see ``Document.pages``."""
        if not has_page_spans(self.con):  # a database from before migration 007, opened read-only
            return {}
        rows = self.con.execute(
            "SELECT d.doc_id, d.pages FROM run_documents rd JOIN documents d "
            "ON d.doc_id = rd.doc_id AND d.doc_sha256 = rd.doc_sha256 WHERE rd.run_id = ? AND d.pages IS NOT NULL",
            [run_id],
        ).fetchall()
        return {str(doc_id): [Span(int(a), int(b)) for a, b in json.loads(pages)] for doc_id, pages in rows}

    def run_document_hashes(self, run_id: str) -> dict[str, str]:
        """{doc_id: sha256 of the text the run extracted}."""
        rows = self.con.execute("SELECT doc_id, doc_sha256 FROM run_documents WHERE run_id = ?", [run_id]).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def document_text(self, doc_id: str, sha256: str) -> str | None:
        row = self.con.execute(
            "SELECT text FROM documents WHERE doc_id = ? AND doc_sha256 = ?", [doc_id, sha256]
        ).fetchone()
        return str(row[0]) if row else None

    def copy_records(
        self,
        schema: Schema,
        rt: RecordType,
        run_id: str,
        path: Path,
        options: str,
        *,
        grounded_only: bool = True,
        lists_as_json: bool = False,
    ) -> int:
        """Write one record type of a run, with the columns of its view, to ``path`` with
        DuckDB's ``COPY ... TO`` (``options``: the format clause); return the rows written.
        ``lists_as_json``: list columns as JSON text (for CSV, as ``pipeline sql -f csv``)."""
        tables = self.table_names()
        select = record_select(
            schema,
            rt,
            run_sql(run_id),
            grounded_only=grounded_only,
            tables=tables,
            page_spans=has_page_spans(self.con),
            confidence=has_column(self.con, f"rec_{rt.name}", "confidence"),
        )
        lists = [f.name for f in rt.fields if f.is_list and f.name != "evidence"]
        lists += [] if "pages" in rt.value_fields else ["pages"]
        if lists_as_json and lists:
            select = (
                f"SELECT * REPLACE ({', '.join(f'to_json({quote(n)}) AS {quote(n)}' for n in lists)}) FROM ({select})"
            )
        row = self.con.execute(f"COPY ({select}) TO {sql_string(str(path))} {options}").fetchone()
        return int(row[0]) if row else 0

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
        tables = self.table_names()
        for rt in schema.record_types:
            table = record_table(rt.name)
            if table not in tables:
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
                if isinstance(rec.get("confidence"), str):  # JSON comes back as text
                    rec["confidence"] = json.loads(rec["confidence"])
                out.setdefault(rec["doc_id"], {t.name: [] for t in schema.record_types})[rt.name].append(rec)
        return out
