"""``pipeline export``: one file per record type for one run (parquet, csv or jsonl).

Rows are those of the friendly views (pipeline/store/views.py), but for the chosen run
rather than each document's latest: grounded records only unless ``include_ungrounded``.
Every file has the views' ``page`` and ``pages`` columns (NULL for a document without pages).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core.errors import InputError, StoreError
from pipeline.store import Store

FORMATS = {"parquet": "(FORMAT parquet)", "csv": "(FORMAT csv, HEADER true)", "jsonl": "(FORMAT json)"}


@dataclass
class ExportSummary:
    run_id: str
    out: Path
    files: dict[str, tuple[Path, int]] = field(default_factory=dict)  # record type -> (file, rows)
    notes: list[str] = field(default_factory=list)


def run_export(
    *,
    db: str | Path,
    out: str | Path,
    fmt: str = "parquet",
    run: str = "latest",
    schema: str | None = None,
    include_ungrounded: bool = False,
) -> ExportSummary:
    """Write ``<out>/<record_type>.<fmt>`` for every record type of the run's schema."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    out = Path(out)
    notes: list[str] = []
    with Store(db, read_only=True) as store:
        run_id = store.resolve_run(run, notes)
        loaded = store.run_schema(run_id, schema)
        tables = store.table_names()
        missing = [rt.name for rt in loaded.record_types if f"rec_{rt.name}" not in tables]
        if missing:
            raise StoreError(
                f"{store.path} has no records of type {', '.join(missing)}",
                "pass --schema with the schema the run used",
            )
        out.mkdir(parents=True, exist_ok=True)
        summary = ExportSummary(run_id, out, notes=notes)
        for rt in loaded.record_types:
            path = out / f"{rt.name}.{fmt}"
            rows = store.copy_records(
                loaded, rt, run_id, path, FORMATS[fmt], grounded_only=not include_ungrounded, lists_as_json=fmt == "csv"
            )
            summary.files[rt.name] = (path, rows)
    return summary
