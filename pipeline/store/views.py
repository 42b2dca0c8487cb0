"""Friendly SQL over the record tables: one view per record type.

A view is named after its record type (``people``, ``organizations``, ...) and holds the
*grounded* records of each document's latest finished run of that schema, one row per
extracted mention, joined with the document's path and title and the evidence offsets.
``page`` and ``pages`` are computed here from the document's page spans (``documents.pages``,
PDF only) and the evidence offsets, so they hold for every run without a column per record
table: ``pages`` lists the 1-based pages the evidence's characters lie on (two at a page
turn), ``page`` is the first of them; both are NULL for a document without pages.
Records reused from an earlier run are included: a run's records are found through
``run_chunks``, not through the ``run_id`` that wrote them. ``all_records`` puts every
record type's view together (type, key-field label, fields as JSON, evidence).

The same SELECT, for one chosen run instead of the latest, feeds ``pipeline export``.
Everything here is derived from the schema's record types; nothing names a domain's type.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipeline.core.errors import StoreError
from pipeline.core.schema import RecordType, Schema
from pipeline.store.db import quote, table_names

#: tables the pipeline owns; a view never takes one of these names
CORE_TABLES = frozenset(
    {
        "_migrations",
        "documents",
        "chunks",
        "runs",
        "run_documents",
        "run_chunks",
        "extractions",
        "llm_calls",
        "llm_cache",
        "entities",
        "entity_mentions",
    }
)
#: the view of every record type together
ALL_RECORDS = "all_records"
#: the view of each document's merged records (one per real-world thing) in its latest run
ALL_ENTITIES = "all_entities"
#: name prefixes reserved for tables (``rec_<type>`` records, ``eval_*`` scores, ``_*`` bookkeeping)
RESERVED_PREFIXES = ("rec_", "eval_", "_")
#: document columns added to every view (a schema field of the same name wins)
DOC_COLUMNS = ("doc_title", "doc_path")
#: one row per page of every document with pages: doc_id, doc_sha256, page (1-based), page_start, page_end
PAGE_ROWS = (
    "SELECT doc_id, doc_sha256, CAST(i AS INTEGER) AS page, s[i][1] AS page_start, s[i][2] AS page_end FROM "
    "(SELECT doc_id, doc_sha256, s, unnest(range(1, len(s) + 1)) AS i FROM "
    "(SELECT doc_id, doc_sha256, CAST(pages AS BIGINT[][]) AS s FROM documents WHERE pages IS NOT NULL))"
)
#: the pages that hold text (an empty page, e.g. a scan without text, holds no offset)
TEXT_PAGES = f"SELECT * FROM ({PAGE_ROWS}) WHERE page_start < page_end"
#: per document version with empty pages: their numbers
BLANK_PAGES = (
    f"SELECT doc_id, doc_sha256, list(page) AS pages FROM ({PAGE_ROWS}) WHERE page_start = page_end "
    "GROUP BY doc_id, doc_sha256"
)
FINISHED = "('completed', 'completed_with_failures')"


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def view_name(record_type: str, taken: set[str]) -> str:
    """``record_type``, or ``<record_type>_records`` when that name belongs to a table."""
    for name in (record_type, f"{record_type}_records"):
        free = name not in CORE_TABLES and name not in (ALL_RECORDS, ALL_ENTITIES) and name not in taken
        if free and not name.startswith(RESERVED_PREFIXES):
            return name
    raise StoreError(
        f"record type {record_type!r} has no free view name ({record_type} and {record_type}_records are taken or reserved)",
        "rename the record type in the schema",
    )


def title_record_type(schema: Schema) -> RecordType | None:
    """A one-per-document record type with a string ``title`` field (e.g. an article), if any."""
    for rt in schema.record_types:
        if not rt.many and any(f.name == "title" and f.sql_type == "VARCHAR" for f in rt.fields):
            return rt
    return None


def latest_runs_sql(schema_name: str) -> str:
    """(doc_id, run_id): each document's latest finished run of the schema."""
    return (
        "SELECT rd.doc_id, rd.run_id FROM run_documents rd JOIN runs ru ON ru.run_id = rd.run_id "
        f"WHERE ru.status IN {FINISHED} AND ru.schema_name = {sql_string(schema_name)} "
        "QUALIFY row_number() OVER (PARTITION BY rd.doc_id ORDER BY ru.started_at DESC, ru.run_id DESC) = 1"
    )


def run_sql(run_id: str) -> str:
    """(doc_id, run_id): every document of one run."""
    return f"SELECT doc_id, run_id FROM run_documents WHERE run_id = {sql_string(run_id)}"


@dataclass(frozen=True)
class PageSql:
    """SQL that finds the pages of a range of a document version: ``joins`` to add to a FROM,
    then ``page`` and ``pages`` as expressions over them."""

    joins: str
    page: str
    pages: str


def page_sql(doc_id: str, doc_sha256: str, start: str, end: str, tag: str = "pg") -> PageSql:
    """The pages of ``[start, end)`` (SQL expressions) in the document version ``doc_id``,
    ``doc_sha256``, as ``pipeline.pdf.PageMap`` gives them for a non-empty range: ``pages``, the
    sorted 1-based pages the range overlaps (an empty page overlaps nothing), ``page`` the first;
    NULL when the document has no pages or the range lies only between pages.

    Two ASOF joins find the first page that ends after ``start`` and the last that starts before
    ``end`` (a sorted search, not a test of every page of the document per record); the pages
    between them, less empty ones, are the list. ``tag`` names the joined relations (unique per
    FROM)."""
    first, last, blank = f"{tag}_first", f"{tag}_last", f"{tag}_blank"

    def same(alias: str) -> str:
        return f"{alias}.doc_id = {doc_id} AND {alias}.doc_sha256 = {doc_sha256}"

    joins = (
        f"ASOF LEFT JOIN ({TEXT_PAGES}) {first} ON {same(first)} AND {start} < {first}.page_end "
        f"ASOF LEFT JOIN ({TEXT_PAGES}) {last} ON {same(last)} AND {end} > {last}.page_start "
        f"LEFT JOIN ({BLANK_PAGES}) {blank} ON {same(blank)} "
    )
    found = f"{first}.page_start < {end}"
    pages = (
        f"CASE WHEN {found} THEN CAST(list_filter(range({first}.page, {last}.page + 1), "
        f"lambda i: NOT list_contains(coalesce({blank}.pages, []), i)) AS INTEGER[]) END"
    )
    return PageSql(joins, f"CASE WHEN {found} THEN {first}.page END", pages)


def entity_pages_select(runs: str) -> str:
    """(entity_id, pages): the sorted pages of every mention of each merged record of the
    (doc_id, run_id) pairs ``runs`` yields; pages NULL for a document without pages."""
    found = page_sql("rd.doc_id", "rd.doc_sha256", "m.evidence_start", "m.evidence_end")
    return (
        f"SELECT m.entity_id, list_sort(list_distinct(flatten(list({found.pages}) "
        f"FILTER (WHERE {found.pages} IS NOT NULL)))) AS pages "
        f"FROM ({runs}) es JOIN entities me ON me.run_id = es.run_id AND me.doc_id = es.doc_id "
        "JOIN entity_mentions m ON m.entity_id = me.entity_id "
        "JOIN run_documents rd ON rd.run_id = me.run_id AND rd.doc_id = me.doc_id "
        f"{found.joins}GROUP BY m.entity_id"
    )


def has_page_spans(con: duckdb.DuckDBPyConnection) -> bool:
    """Does ``documents`` have its ``pages`` column (migration 007)? A database opened read-only
    may be older; its records then have no pages."""
    row = con.execute(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = 'documents' AND column_name = 'pages'"
    ).fetchone()
    return bool(row and row[0])


def has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    """Does ``table`` have ``column``? (A database opened read-only may predate it.)"""
    row = con.execute(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ? AND column_name = ?",
        [table, column],
    ).fetchone()
    return bool(row and row[0])


def record_select(
    schema: Schema,
    rt: RecordType,
    runs: str,
    *,
    grounded_only: bool = True,
    tables: set[str] | None = None,
    page_spans: bool = True,
    confidence: bool = True,
) -> str:
    """SELECT the records of ``rt`` for the (doc_id, run_id) pairs the query ``runs`` yields.

    Columns: doc_id, the record's fields, evidence and its offsets, page (where the evidence
    starts) and pages (every page it lies on), alignment, grounded, doc_title, doc_path,
    doc_sha256, run_id (the run the row belongs to), record_id, chunk_id, and confidence (JSON
    {field: margin} of the fields the embedded model chose). ``page_spans=False`` (a database
    from before migration 007) gives NULL pages; ``confidence=False`` (a record table from before
    the fill step) NULL confidence.
    """
    table = f"rec_{rt.name}"
    fields = [f"r.{quote(name)}" for name in rt.value_fields]
    title_rt = title_record_type(schema)
    title_join = ""
    title_sql = "NULL"
    if title_rt is not None and (tables is None or f"rec_{title_rt.name}" in tables):
        title_join = (
            "LEFT JOIN (SELECT trc.run_id, t.doc_id, arg_min(t.title, t.evidence_start) AS title "
            f"FROM run_chunks trc JOIN rec_{title_rt.name} t ON t.extraction_key = trc.extraction_key "
            "WHERE coalesce(t.grounded, false) GROUP BY trc.run_id, t.doc_id) tt "
            "ON tt.run_id = sel.run_id AND tt.doc_id = r.doc_id "
        )
        title_sql = "tt.title"
    first_line = (
        "nullif(trim(split_part(ltrim(substr(d.text, "
        "CAST(json_extract(d.kept_spans, '$[0][0]') AS BIGINT) + 1, 400), chr(10) || chr(13) || ' '), chr(10), 1)), '')"
    )
    extras = {
        "doc_title": f"coalesce({title_sql}, {first_line}) AS doc_title",
        "doc_path": "d.path AS doc_path",
    }
    doc_cols = [sql for name, sql in extras.items() if name not in rt.value_fields]
    page_join = ""
    page_cols = {"page": "CAST(NULL AS INTEGER) AS page", "pages": "CAST(NULL AS INTEGER[]) AS pages"}
    if page_spans:
        # over the whole record table, joined by record_id: below the view's joins DuckDB expects a
        # few rows and runs the ASOF joins as a loop over every page of the document (0.5-0.8 s for
        # a full scan of 20,000 records on 500 20-page PDFs); here they are sorted searches
        # (0.04-0.10 s there and for 20,000 records of one 5,000-page PDF; 0.01-0.03 s without pages)
        found = page_sql("r0.doc_id", "r0.doc_sha256", "r0.evidence_start", "r0.evidence_end")
        page_join = (
            f"LEFT JOIN (SELECT r0.record_id, {found.page} AS page, {found.pages} AS pages FROM {table} r0 "
            f"{found.joins}) pgs ON pgs.record_id = r.record_id "
        )
        page_cols = {"page": "pgs.page AS page", "pages": "pgs.pages AS pages"}
    pages = [sql for name, sql in page_cols.items() if name not in rt.value_fields]
    cols = [
        "r.doc_id",
        *fields,
        "r.evidence",
        "r.evidence_start",
        "r.evidence_end",
        *pages,
        "r.alignment",
        "r.grounded",
        "r.confidence" if confidence else "CAST(NULL AS JSON) AS confidence",
        *doc_cols,
        "r.doc_sha256",
        "sel.run_id",
        "r.record_id",
        "r.chunk_id",
    ]
    where = "WHERE coalesce(r.grounded, false) " if grounded_only else ""
    return (
        f"SELECT {', '.join(cols)} FROM ({runs}) sel "
        "JOIN run_chunks rc ON rc.run_id = sel.run_id "
        f"JOIN {table} r ON r.extraction_key = rc.extraction_key AND r.doc_id = sel.doc_id "
        "JOIN documents d ON d.doc_id = r.doc_id AND d.doc_sha256 = r.doc_sha256 "
        f"{title_join}{page_join}{where}"
        "ORDER BY r.doc_id, r.evidence_start NULLS LAST, r.chunk_id, r.ordinal"
    )


def all_records_select(schema: Schema, names: dict[str, str]) -> str:
    """Every record type's view in one: type, key-field label, fields as JSON, evidence, pages, document."""
    parts = []
    for rt in schema.record_types:
        label = ", ".join(f"CAST(v.{quote(k)} AS VARCHAR)" for k in rt.key_fields)
        fields = ", ".join(f"{quote(f)} := v.{quote(f)}" for f in rt.value_fields)
        # a schema field named page or pages took the computed column's place in that view
        page = "CAST(NULL AS INTEGER)" if "page" in rt.value_fields else "v.page"
        pages = "CAST(NULL AS INTEGER[])" if "pages" in rt.value_fields else "v.pages"
        parts.append(
            f"SELECT v.doc_id, {sql_string(rt.name)} AS record_type, concat_ws(' · ', {label}) AS label, "
            f"to_json(struct_pack({fields})) AS fields, v.evidence, v.evidence_start, v.evidence_end, "
            f'{page} AS page, {pages} AS pages, v.alignment, v.run_id, v.record_id FROM "{names[rt.name]}" v'
        )
    return " UNION ALL ".join(parts)


def ensure_views(con: duckdb.DuckDBPyConnection, schema: Schema) -> dict[str, str]:
    """Create or refresh one view per record type of ``schema``, and ``all_records`` over them;
    return {record type: view name}. The record tables must exist (``Store.ensure_record_tables``)."""
    tables = table_names(con)
    missing = [f"rec_{rt.name}" for rt in schema.record_types if f"rec_{rt.name}" not in tables]
    if missing:
        raise StoreError(f"record tables {', '.join(missing)} do not exist", "run `pipeline extract` first")
    names: dict[str, str] = {}
    latest = latest_runs_sql(schema.name)
    for rt in schema.record_types:
        name = view_name(rt.name, tables)
        con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {record_select(schema, rt, latest, tables=tables)}')
        names[rt.name] = name
    if ALL_RECORDS not in tables:
        con.execute(f"CREATE OR REPLACE VIEW {ALL_RECORDS} AS {all_records_select(schema, names)}")
    if ALL_ENTITIES not in tables:
        con.execute(
            f"CREATE OR REPLACE VIEW {ALL_ENTITIES} AS SELECT e.doc_id, e.record_type, e.label, e.fields, "
            f"e.n_mentions, e.first_start, ep.pages, e.run_id, e.entity_id FROM ({latest}) sel "
            "JOIN entities e ON e.run_id = sel.run_id AND e.doc_id = sel.doc_id "
            f"LEFT JOIN ({entity_pages_select(latest)}) ep ON ep.entity_id = e.entity_id "
            "ORDER BY e.doc_id, e.record_type, e.first_start NULLS LAST"
        )
    return names
