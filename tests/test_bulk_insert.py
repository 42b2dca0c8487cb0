"""Store.bulk_insert_records: the bulk path stores exactly what the row-wise path would."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.schema import load_schema
from pipeline.store import Store


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
