"""Friendly SQL over the record tables: one view per record type.

A view is named after its record type (``people``, ``organizations``, ...) and holds the
*grounded* records of each document's latest finished run of that schema, one row per
extracted mention, joined with the document's path and title and the evidence offsets.
Records reused from an earlier run are included: a run's records are found through
``run_chunks``, not through the ``run_id`` that wrote them. ``all_records`` puts every
record type's view together (type, key-field label, fields as JSON, evidence).

The same SELECT, for one chosen run instead of the latest, feeds ``pipeline export``.
Everything here is derived from the schema's record types; nothing names a domain's type.
"""

from __future__ import annotations

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


def record_select(
    schema: Schema,
    rt: RecordType,
    runs: str,
    *,
    grounded_only: bool = True,
    tables: set[str] | None = None,
) -> str:
    """SELECT the records of ``rt`` for the (doc_id, run_id) pairs the query ``runs`` yields.

    Columns: doc_id, the record's fields, evidence and its offsets, alignment, grounded,
    doc_title, doc_path, doc_sha256, run_id (the run the row belongs to), record_id, chunk_id.
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
    cols = [
        "r.doc_id",
        *fields,
        "r.evidence",
        "r.evidence_start",
        "r.evidence_end",
        "r.alignment",
        "r.grounded",
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
        f"{title_join}{where}"
        "ORDER BY r.doc_id, r.evidence_start NULLS LAST, r.chunk_id, r.ordinal"
    )


def all_records_select(schema: Schema, names: dict[str, str]) -> str:
    """Every record type's view in one: type, key-field label, fields as JSON, evidence, document."""
    parts = []
    for rt in schema.record_types:
        label = ", ".join(f"CAST(v.{quote(k)} AS VARCHAR)" for k in rt.key_fields)
        fields = ", ".join(f"{quote(f)} := v.{quote(f)}" for f in rt.value_fields)
        parts.append(
            f"SELECT v.doc_id, {sql_string(rt.name)} AS record_type, concat_ws(' · ', {label}) AS label, "
            f"to_json(struct_pack({fields})) AS fields, v.evidence, v.evidence_start, v.evidence_end, "
            f'v.alignment, v.run_id, v.record_id FROM "{names[rt.name]}" v'
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
            f"e.n_mentions, e.first_start, e.run_id, e.entity_id FROM ({latest}) sel "
            "JOIN entities e ON e.run_id = sel.run_id AND e.doc_id = sel.doc_id "
            "ORDER BY e.doc_id, e.record_type, e.first_start NULLS LAST"
        )
    return names
