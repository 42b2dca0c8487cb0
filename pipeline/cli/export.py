"""``pipeline export``: one file per record type for one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.extract import DEFAULT_DB


def export(
    out: Annotated[Path, typer.Option(help="folder to write <record_type>.<format> files into")],
    format: Annotated[str, typer.Option("--format", "-f", help="parquet | csv | jsonl")] = "parquet",
    run: Annotated[str, typer.Option(help="latest or a run id")] = "latest",
    db: Annotated[Path, typer.Option(help="DuckDB file to read")] = DEFAULT_DB,
    schema: Annotated[str | None, typer.Option(help="schema to read the run with (default: the run's)")] = None,
    include_ungrounded: Annotated[bool, typer.Option(help="also export records whose evidence was not found")] = False,
) -> None:
    """Export a run's records: one file per record type."""
    from pipeline.export import run_export

    summary = run_export(db=db, out=out, fmt=format, run=run, schema=schema, include_ungrounded=include_ungrounded)
    for name, (path, rows) in summary.files.items():
        typer.echo(f"{path}\t{rows} {name}")
    total = sum(rows for _, rows in summary.files.values())
    typer.echo(f"run {summary.run_id}: {total} records in {len(summary.files)} files under {summary.out}", err=True)
