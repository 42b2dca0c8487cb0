"""Ordered, named migrations. Append only: never rename, reorder or edit a shipped one.

Each runs once, inside a transaction, and is recorded by name in ``_migrations``. A database
that has a migration this code does not know was written by a newer version of the tool.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

Migration = tuple[str, Callable[[duckdb.DuckDBPyConnection], None]]


def m001_core_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS documents (
            doc_id VARCHAR NOT NULL,
            doc_sha256 VARCHAR NOT NULL,
            path VARCHAR,
            format VARCHAR,
            n_chars BIGINT,
            text VARCHAR,
            kept_spans JSON,
            first_seen TIMESTAMP DEFAULT current_timestamp,
            PRIMARY KEY (doc_id, doc_sha256)
        );
        CREATE TABLE IF NOT EXISTS chunks (
            chunk_id VARCHAR PRIMARY KEY,
            doc_id VARCHAR NOT NULL,
            doc_sha256 VARCHAR NOT NULL,
            idx INTEGER NOT NULL,
            start_offset BIGINT NOT NULL,
            end_offset BIGINT NOT NULL,
            text VARCHAR NOT NULL,
            content_hash VARCHAR NOT NULL,
            n_tokens INTEGER
        );
        CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR PRIMARY KEY,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            status VARCHAR NOT NULL,
            model VARCHAR,
            strategy VARCHAR,
            schema_name VARCHAR,
            schema_hash VARCHAR,
            prompt_hash VARCHAR,
            config JSON,
            config_hash VARCHAR,
            pid INTEGER,
            tool_version VARCHAR,
            n_documents INTEGER DEFAULT 0,
            n_chunks INTEGER DEFAULT 0,
            n_chunks_failed INTEGER DEFAULT 0,
            n_chunks_reused INTEGER DEFAULT 0,
            n_calls INTEGER DEFAULT 0,
            tokens_in BIGINT DEFAULT 0,
            tokens_out BIGINT DEFAULT 0,
            seconds DOUBLE DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS run_documents (
            run_id VARCHAR NOT NULL,
            doc_id VARCHAR NOT NULL,
            doc_sha256 VARCHAR NOT NULL,
            PRIMARY KEY (run_id, doc_id)
        );
        CREATE TABLE IF NOT EXISTS extractions (
            extraction_key VARCHAR PRIMARY KEY,
            chunk_id VARCHAR NOT NULL,
            config_hash VARCHAR NOT NULL,
            run_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            error VARCHAR,
            attempts INTEGER,
            n_records INTEGER,
            response JSON,
            created_at TIMESTAMP DEFAULT current_timestamp
        );
        CREATE TABLE IF NOT EXISTS run_chunks (
            run_id VARCHAR NOT NULL,
            chunk_id VARCHAR NOT NULL,
            extraction_key VARCHAR NOT NULL,
            outcome VARCHAR NOT NULL,
            PRIMARY KEY (run_id, chunk_id)
        );
        CREATE TABLE IF NOT EXISTS llm_calls (
            call_id VARCHAR PRIMARY KEY,
            run_id VARCHAR NOT NULL,
            chunk_id VARCHAR,
            extraction_key VARCHAR,
            attempt INTEGER NOT NULL,
            started_at TIMESTAMP NOT NULL,
            latency_s DOUBLE,
            model VARCHAR,
            prompt_hash VARCHAR,
            schema_hash VARCHAR,
            tokens_in INTEGER,
            tokens_out INTEGER,
            status VARCHAR NOT NULL,
            error_class VARCHAR,
            error VARCHAR,
            response_text VARCHAR
        );
        """
    )


def m002_eval_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Scores of ``pipeline eval``, keyed by ``eval_id`` = run id, gold-set hash, mode and
    whether ungrounded records were scored. Re-scoring replaces the rows of that key."""
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS eval_runs (
            eval_id VARCHAR PRIMARY KEY,
            run_id VARCHAR NOT NULL,
            gold_hash VARCHAR NOT NULL,
            mode VARCHAR NOT NULL,
            include_ungrounded BOOLEAN NOT NULL,
            schema_name VARCHAR,
            gold_dir VARCHAR,
            scored_at TIMESTAMP NOT NULL,
            n_gold_documents INTEGER,
            n_missing_documents INTEGER,
            n_unscored_documents INTEGER,
            micro_precision DOUBLE,
            micro_recall DOUBLE,
            micro_f1 DOUBLE,
            macro_f1 DOUBLE,
            grounding_rate DOUBLE,
            report JSON
        );
        CREATE TABLE IF NOT EXISTS eval_type_scores (
            eval_id VARCHAR NOT NULL,
            record_type VARCHAR NOT NULL,
            tp INTEGER NOT NULL,
            fp INTEGER NOT NULL,
            fn INTEGER NOT NULL,
            precision DOUBLE,
            recall DOUBLE,
            f1 DOUBLE,
            PRIMARY KEY (eval_id, record_type)
        );
        CREATE TABLE IF NOT EXISTS eval_field_scores (
            eval_id VARCHAR NOT NULL,
            record_type VARCHAR NOT NULL,
            field VARCHAR NOT NULL,
            correct DOUBLE NOT NULL,
            total INTEGER NOT NULL,
            accuracy DOUBLE,
            PRIMARY KEY (eval_id, record_type, field)
        );
        CREATE TABLE IF NOT EXISTS eval_items (
            eval_id VARCHAR NOT NULL,
            doc_id VARCHAR NOT NULL,
            record_type VARCHAR NOT NULL,
            outcome VARCHAR NOT NULL, -- found | missed | absorbed | spurious
            gold_index INTEGER,        -- position in the gold file's list (NULL for spurious)
            record_id VARCHAR,         -- the prediction (NULL for missed)
            similarity DOUBLE,
            key JSON
        );
        """
    )


def m003_llm_cache(con: duckdb.DuckDBPyConnection) -> None:
    """Responses keyed by chunk text, prompt template, schema, model and decoding, so the same
    text is extracted once; and the per-run count of chunks served from it."""
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS llm_cache (
            cache_key VARCHAR PRIMARY KEY,
            content_hash VARCHAR NOT NULL,
            prompt_hash VARCHAR NOT NULL,
            schema_hash VARCHAR NOT NULL,
            strategy VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            decoding JSON NOT NULL,
            response JSON NOT NULL,
            extraction_key VARCHAR,
            created_at TIMESTAMP NOT NULL
        );
        ALTER TABLE runs ADD COLUMN IF NOT EXISTS n_chunks_cached INTEGER DEFAULT 0;
        """
    )


def m004_entities(con: duckdb.DuckDBPyConnection) -> None:
    """One row per real-world thing per document and run (merged mentions), and its mentions."""
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS entities (
            entity_id VARCHAR PRIMARY KEY,
            run_id VARCHAR NOT NULL,
            doc_id VARCHAR NOT NULL,
            record_type VARCHAR NOT NULL,
            label VARCHAR NOT NULL,       -- the key fields, as first written in the document
            fields JSON NOT NULL,         -- the merged record
            n_mentions INTEGER NOT NULL,
            first_start BIGINT
        );
        CREATE TABLE IF NOT EXISTS entity_mentions (
            entity_id VARCHAR NOT NULL,
            record_id VARCHAR NOT NULL,
            evidence VARCHAR,
            evidence_start BIGINT,
            evidence_end BIGINT,
            PRIMARY KEY (entity_id, record_id)
        );
        """
    )


def m005_schema_spec(con: duckdb.DuckDBPyConnection) -> None:
    """How to load a run's schema again (``runs.schema_name`` is now the schema's own name)."""
    con.execute("ALTER TABLE runs ADD COLUMN IF NOT EXISTS schema_spec VARCHAR")


def m006_chunkings(con: duckdb.DuckDBPyConnection) -> None:
    """Which chunks a document was cut into under one chunking configuration (token budget,
    overlap, tokenizer): a rerun finds them here without loading the tokenizer's model."""
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS chunkings (
            doc_id VARCHAR NOT NULL,
            doc_sha256 VARCHAR NOT NULL,
            config VARCHAR NOT NULL,
            chunk_ids JSON NOT NULL,
            PRIMARY KEY (doc_id, doc_sha256, config)
        )
        """
    )


def m007_pages(con: duckdb.DuckDBPyConnection) -> None:
    """Page spans of a document with pages (PDF): ``[[start, end], ...]``, page ``i + 1`` at index
    ``i``, offsets into ``text``; NULL for a document without pages. Documents stored before this
    migration get theirs when ``pipeline extract`` reads them again."""
    con.execute("ALTER TABLE documents ADD COLUMN IF NOT EXISTS pages JSON")


MIGRATIONS: list[Migration] = [
    ("001_core_tables", m001_core_tables),
    ("002_eval_tables", m002_eval_tables),
    ("003_llm_cache", m003_llm_cache),
    ("004_entities", m004_entities),
    ("005_schema_spec", m005_schema_spec),
    ("006_chunkings", m006_chunkings),
    ("007_pages", m007_pages),
]
