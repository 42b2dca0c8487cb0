"""Chunk results as table rows, and many of them committed in one transaction from Arrow.

``result_rows`` turns one chunk's result into the rows of each table it writes -- the same
rows ``RunWrites.write_chunk_result`` inserts one statement at a time -- so both commit paths
store byte-identical records. ``ResultRows`` collects the rows of many chunks (a Ray worker
does this for its task) and hands them over as Arrow tables with fixed column types
(``to_arrow``); ``RunWrites.write_chunk_results`` (``runs.py``) commits such tables in one
transaction with one ``INSERT ... SELECT`` per table.

Why: a row-wise ``executemany`` transaction per chunk ran at 27 chunks/s (8.5 records per
chunk) on the 2-core machine, below what 4 Ray workers x 4 requests deliver; an Arrow
insert runs at tens of thousands of rows per second (README, "Scale out with Ray").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pipeline.core.schema import RecordType, Schema
from pipeline.core.types import Chunk
from pipeline.store.db import RECORD_COLUMNS, now, record_table

if TYPE_CHECKING:
    import pyarrow as pa

#: column name -> kind (str, int, float, bool, ts, list) of the fixed tables, in table order
LLM_CALLS = {
    "call_id": "str",
    "run_id": "str",
    "chunk_id": "str",
    "extraction_key": "str",
    "attempt": "int",
    "started_at": "ts",
    "latency_s": "float",
    "model": "str",
    "prompt_hash": "str",
    "schema_hash": "str",
    "tokens_in": "int",
    "tokens_out": "int",
    "status": "str",
    "error_class": "str",
    "error": "str",
    "response_text": "str",
}
EXTRACTIONS = {
    "extraction_key": "str",
    "chunk_id": "str",
    "config_hash": "str",
    "run_id": "str",
    "status": "str",
    "error": "str",
    "attempts": "int",
    "n_records": "int",
    "response": "str",
}
LLM_CACHE = {
    "cache_key": "str",
    "content_hash": "str",
    "prompt_hash": "str",
    "schema_hash": "str",
    "strategy": "str",
    "model": "str",
    "decoding": "str",
    "response": "str",
    "extraction_key": "str",
    "created_at": "ts",
}
RUN_CHUNKS = {"run_id": "str", "chunk_id": "str", "extraction_key": "str", "outcome": "str"}
FIXED = {"llm_calls": LLM_CALLS, "extractions": EXTRACTIONS, "llm_cache": LLM_CACHE, "run_chunks": RUN_CHUNKS}
_SQL_KIND = {"VARCHAR": "str", "BIGINT": "int", "INTEGER": "int", "DOUBLE": "float", "BOOLEAN": "bool", "JSON": "str"}


def record_columns(rt: RecordType) -> dict[str, str]:
    """Column name -> kind of ``rec_<type>``, in the order ``record_rows`` fills them."""
    cols = {name: _SQL_KIND[decl.split()[0]] for name, decl in RECORD_COLUMNS}
    for f in rt.fields:
        if f.name != "evidence":
            cols[f.name] = "list" if f.sql_type.endswith("[]") else _SQL_KIND.get(f.sql_type, "str")
    return cols


def record_rows(
    rt: RecordType, schema_name: str, run_id: str, chunk: Chunk, extraction_key: str, rows: Sequence[dict[str, Any]]
) -> list[list[Any]]:
    """The ``rec_<type>`` rows of one chunk's records, in ``record_columns`` order."""
    fields = [f.name for f in rt.fields if f.name != "evidence"]
    return [
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
            json.dumps(row["confidence"]) if row.get("confidence") else None,
            *[row.get(f) for f in fields],
        ]
        for i, row in enumerate(rows)
    ]


def call_row(call: Mapping[str, Any], run_id: str, chunk_id: str, extraction_key: str) -> list[Any]:
    """One ``llm_calls`` row (an attempt logged by ``AttemptLog``)."""
    return [
        call["call_id"],
        run_id,
        chunk_id,
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


def cache_row(cache: Mapping[str, Any], chunk: Chunk, extraction_key: str, response: Any) -> list[Any]:
    """One ``llm_cache`` row: the response under its cache key and what the key was made of."""
    return [
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
    ]


def result_rows(
    schema: Schema,
    *,
    run_id: str,
    chunk: Chunk,
    extraction_key: str,
    config_hash: str,
    status: str,
    error: str | None,
    calls: Sequence[Mapping[str, Any]],
    records: Mapping[str, Sequence[dict[str, Any]]],
    response: Any,
    outcome: str | None = None,
    cache: Mapping[str, Any] | None = None,
) -> dict[str, list[list[Any]]]:
    """Every row one chunk's result writes, by table (see ``RunWrites.write_chunk_result``)."""
    out: dict[str, list[list[Any]]] = {
        "llm_calls": [call_row(c, run_id, chunk.chunk_id, extraction_key) for c in calls],
        "extractions": [
            [
                extraction_key,
                chunk.chunk_id,
                config_hash,
                run_id,
                status,
                error,
                len(calls),
                sum(len(v) for v in records.values()),
                json.dumps(response) if response is not None else None,
            ]
        ],
        "llm_cache": [],
        "run_chunks": [
            [run_id, chunk.chunk_id, extraction_key, outcome or ("extracted" if status == "ok" else "failed")]
        ],
    }
    for rt in schema.record_types:
        rows = records.get(rt.name, [])
        if rows:
            out[record_table(rt.name)] = record_rows(rt, schema.name, run_id, chunk, extraction_key, list(rows))
    if cache is not None and status == "ok" and response is not None:
        out["llm_cache"].append(cache_row(cache, chunk, extraction_key, response))
    return out


class ResultRows:
    """The rows of many chunk results, turned into Arrow tables for ``write_chunk_results``."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.columns: dict[str, dict[str, str]] = {**FIXED}
        for rt in schema.record_types:
            self.columns[record_table(rt.name)] = record_columns(rt)
        self.rows: dict[str, list[list[Any]]] = {name: [] for name in self.columns}
        self.chunks = 0

    def add(self, **result: Any) -> None:
        """One chunk's result (the keyword arguments of ``result_rows``)."""
        for table, rows in result_rows(self.schema, **result).items():
            self.rows[table].extend(rows)
        self.chunks += 1

    def to_arrow(self) -> dict[str, pa.Table]:
        """{table: Arrow table} for every table with rows."""
        return {
            table: arrow_table(self.columns[table], rows) for table, rows in self.rows.items() if rows or table in FIXED
        }


_probed = False


def pyarrow() -> ModuleType:
    """``pyarrow``, imported on first use (0.4 s). ``store.db`` records pandas as missing with a
    ``None`` in ``sys.modules``; pyarrow's lazy pandas probe would take that for the module, so
    it probes once with the marker lifted (pandas is not installed either way)."""
    global _probed
    import pyarrow as pa

    if not _probed:
        marker = sys.modules.get("pandas", False)
        if marker is None:
            del sys.modules["pandas"]
        try:
            pa.array([], type=pa.string())  # pyarrow looks for pandas here, once
        finally:
            if marker is None:
                sys.modules["pandas"] = None
        _probed = True
    module: ModuleType = pa
    return module


def arrow_table(columns: Mapping[str, str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """``rows`` as an Arrow table with one fixed type per column kind, so that tables from
    different workers concatenate and DuckDB sees the same types whatever the values."""
    pa = pyarrow()
    types = {
        "str": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "ts": pa.timestamp("us"),
        "list": pa.list_(pa.string()),
    }
    arrays = []
    for i, kind in enumerate(columns.values()):
        values = [_coerce(row[i], kind) for row in rows]
        arrays.append(pa.array(values, type=types[kind]))
    return pa.Table.from_arrays(arrays, names=list(columns))


def _coerce(value: Any, kind: str) -> Any:
    """A value as DuckDB would cast it into a column of ``kind`` (record fields only: the
    fixed tables' values already have their column's type)."""
    if value is None:
        return None
    if kind == "str" and not isinstance(value, str):
        return _text(value)
    if kind == "list":
        return [None if v is None else v if isinstance(v, str) else _text(v) for v in value]
    if kind == "float" and isinstance(value, int):
        return float(value)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
