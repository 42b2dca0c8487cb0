"""``pipeline export``: one file per record type for one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.extract import DEFAULT_DB
from pipeline.core.errors import InputError
from pipeline.sql import one_line


def export(
    out: Annotated[Path, typer.Option(help="folder to write <record_type>.<format> files into")],
    format: Annotated[str, typer.Option("--format", "-f", help="parquet | csv | jsonl")] = "parquet",
    run: Annotated[str, typer.Option(help="latest or a run id")] = "latest",
    db: Annotated[Path, typer.Option(help="DuckDB file to read")] = DEFAULT_DB,
    schema: Annotated[str | None, typer.Option(help="schema to read the run with (default: the run's)")] = None,
    include_ungrounded: Annotated[bool, typer.Option(help="also export records whose evidence was not found")] = False,
) -> None:
    """Export a run's records: one file per record type."""
    import duckdb

    from pipeline.export import run_export

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file", "pass a folder: export writes one file per record type into it")
    fix = "pass --out with a folder you can write to"
    try:
        summary = run_export(db=db, out=out, fmt=format, run=run, schema=schema, include_ungrounded=include_ungrounded)
    except OSError as exc:  # the folder could not be made
        if exc.filename is None or Path(exc.filename) not in {out, *out.parents}:
            raise
        raise cannot_write(out, exc, fix) from exc
    except duckdb.IOException as exc:  # a file in it could not be written
        raise InputError(f"cannot write {out}: {one_line(str(exc))}", fix) from exc
    for name, (path, rows) in summary.files.items():
        typer.echo(f"{path}\t{rows} {name}")
    total = sum(rows for _, rows in summary.files.values())
    typer.echo(f"run {summary.run_id}: {total} records in {len(summary.files)} files under {summary.out}", err=True)


def cannot_write(out: Path, exc: OSError, fix: str) -> InputError:
    """``cannot write OUT: <reason>``, naming the path in the way when it is not OUT itself."""
    where = f" ({exc.filename})" if exc.filename is not None and Path(exc.filename) != out else ""
    return InputError(f"cannot write {out}: {exc.strerror or exc}{where}", fix)
