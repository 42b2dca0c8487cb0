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


MIGRATIONS: list[Migration] = [
    ("001_core_tables", m001_core_tables),
    ("003_llm_cache", m003_llm_cache),
]
