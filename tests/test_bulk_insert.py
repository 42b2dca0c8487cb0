"""The bulk paths of the store write exactly what the row-wise paths would: ``bulk_insert_records``
(records from CSV) and ``write_chunk_results`` (many chunk results from Arrow tables)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.schema import Schema, load_schema
from pipeline.core.types import Chunk
from pipeline.store import Store
from pipeline.store.bulk import ResultRows


def test_bulk_insert_round_trips_values(tmp_path: Path) -> None:
    schema = load_schema("biomedical")
    rt = next(r for r in schema.record_types if any(f.is_list for f in r.fields))
    with Store(tmp_path / "t.duckdb") as store:
        store.ensure_record_tables(schema)
        cols = store.record_columns(rt)
        rows = []
        for i in range(3):
            row: dict[str, object] = {c: None for c in cols}
            row.update(
                record_id=f"r{i}",
                extraction_key="k",
                run_id="run",
                schema_name=schema.name,
                doc_id="d",
                doc_sha256="s",
                chunk_id="c",
                ordinal=i,
                evidence='a "quoted", comma\nand newline' if i == 0 else "",
                evidence_start=i,
                grounded=i % 2 == 0,
            )
            for f in rt.fields:
                if f.name != "evidence":
                    row[f.name] = (["x, y", 'q"'] if i == 0 else []) if f.is_list else (None if i else "v")
            rows.append([row[c] for c in cols])
        assert store.bulk_insert_records(rt, iter(rows)) == 3
        assert store.bulk_insert_records(rt, []) == 0
        got = store.con.execute(f"SELECT {', '.join(cols)} FROM rec_{rt.name} ORDER BY ordinal").fetchall()
    assert [list(r) for r in got] == rows


def _value(sql_type: str, j: int) -> Any:
    return {"VARCHAR[]": ["a, b", 'q"'] if j else [], "BIGINT": j, "DOUBLE": j + 0.5, "BOOLEAN": j % 2 == 1}.get(
        sql_type, f"v{j} 'quoted'"
    )


def _results(schema: Schema, run_id: str, variant: int) -> list[dict[str, Any]]:
    """Three chunk results: records of every type (lists, NULLs, numbers), a failed chunk with
    its attempts, and a cached response; ``variant`` changes the records (a --refresh)."""
    out: list[dict[str, Any]] = []
    for i in range(3):
        chunk = Chunk("doc", "sha", i, i * 100, i * 100 + 50, f"text {i}", 12)
        records: dict[str, list[dict[str, Any]]] = {}
        for rt in schema.record_types:
            rows = []
            for j in range(i + variant):
                row: dict[str, Any] = {"evidence": f"ev {rt.name} {j}", "evidence_start": j, "evidence_end": j + 5}
                row |= {"alignment": "exact", "grounded": j % 2 == 0}
                for f in rt.fields:
                    if f.name != "evidence":
                        row[f.name] = None if j % 3 == 2 else _value(f.sql_type, j)
                rows.append(row)
            records[rt.name] = rows
        call = {
            "call_id": f"call-{run_id}-{i}",
            "attempt": 1,
            "started_at": datetime(2026, 1, 1, 12, 0, i),
            "latency_s": 0.5,
            "model": "fake",
            "prompt_hash": "p",
            "schema_hash": "s",
            "tokens_in": 10,
            "tokens_out": 5,
            "status": "ok" if i != 1 else "error",
            "error_class": None if i != 1 else "APITimeoutError",
            "error": None if i != 1 else "timed out",
            "response_text": '{"x": 1}',
        }
        cache = {"cache_key": f"ck{i}", "prompt": "p", "schema": "s", "strategy": "direct", "model": "fake"}
        out.append(
            dict(
                run_id=run_id,
                chunk=chunk,
                extraction_key=f"key{i}",
                config_hash="cfg",
                status="failed" if i == 1 else "ok",
                error="APITimeoutError: timed out (1 attempts)" if i == 1 else None,
                calls=[call],
                records={} if i == 1 else records,
                response=None if i == 1 else {"records": i, "variant": variant},
                outcome="cached" if i == 2 else None,
                cache={**cache, "decoding": {"temperature": 0.0}},
            )
        )
    return out


def _tables(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in sorted(store.table_names()):
        cols = [
            c
            for (c,) in store.con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table],
            ).fetchall()
            if c not in ("created_at", "applied_at")  # the time of the write
        ]
        rows = store.con.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
        out[table] = sorted(rows, key=repr)
    return out


def test_bulk_commit_writes_what_the_per_chunk_path_writes(tmp_path: Path) -> None:
    """``write_chunk_results`` (the Ray engine's commit of many chunks from Arrow tables) leaves
    every table exactly as ``write_chunk_result`` chunk by chunk does, a --refresh included."""
    schema = load_schema("biomedical")
    stores = [Store(tmp_path / "rowwise.duckdb"), Store(tmp_path / "bulk.duckdb")]
    for store in stores:
        store.ensure_record_tables(schema)
    for run_id, variant in (("run1", 1), ("run2", 2)):
        results = _results(schema, run_id, variant)
        for result in results:
            stores[0].write_chunk_result(schema=schema, **result)
        rows = ResultRows(schema)
        for result in results:
            rows.add(**result)
        stores[1].write_chunk_results(rows.to_arrow(), schema)
    rowwise, bulk = (_tables(s) for s in stores)
    for s in stores:
        s.close()
    assert rowwise["rec_therapies"] and len(rowwise["extractions"]) == 3 and len(rowwise["llm_calls"]) == 6
    assert rowwise == bulk


def test_bulk_commit_refuses_a_key_twice(tmp_path: Path) -> None:
    schema = load_schema("biomedical")
    rows = ResultRows(schema)
    result = _results(schema, "run1", 1)[0]
    rows.add(**result)
    rows.add(**result)
    with Store(tmp_path / "t.duckdb") as store, pytest.raises(ValueError, match="appears twice"):
        store.ensure_record_tables(schema)
        store.write_chunk_results(rows.to_arrow(), schema)
