"""``pipeline sql``: query the pipeline database (read-only unless --write; never any other file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.cli.extract import DEFAULT_DB
from pipeline.core.errors import InputError
from pipeline.sql import (
    FORMATS,
    QueryResult,
    cell,
    list_tables,
    parse_params,
    read_query,
    run_query,
    to_csv,
    to_json,
    to_markdown,
)

#: longest cell shown by --format table; the other formats print values whole
TABLE_CELL_CHARS = 120


def sql(
    query: Annotated[str | None, typer.Argument(help="SQL text, a path ending in .sql, or - for stdin")] = None,
    db: Annotated[Path, typer.Option(help="DuckDB file to query")] = DEFAULT_DB,
    format: Annotated[str, typer.Option("--format", "-f", help="table | csv | json | markdown")] = "table",
    param: Annotated[list[str] | None, typer.Option(help="name=value, used as $name in the query")] = None,
    file: Annotated[Path | None, typer.Option(help="read the query from this file")] = None,
    write: Annotated[bool, typer.Option(help="allow statements that change this database (and no other file)")] = False,
    tables: Annotated[bool, typer.Option(help="list tables and views with their columns")] = False,
) -> None:
    """Run SQL against the pipeline database. Views: one per record type (see README)."""
    if format not in FORMATS:
        raise InputError(f"unknown format {format!r}", f"use one of: {', '.join(FORMATS)}")
    if tables:
        if query is not None or file is not None:
            raise InputError("--tables takes no query", "drop the query or --tables")
        print_result(list_tables(db), format, truncate=False)
        return
    text = read_query(query, file)
    result = run_query(db, text, params=parse_params(param or []), write=write)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    print_result(result, format)


def print_result(result: QueryResult, fmt: str, *, truncate: bool = True) -> None:
    if not result.columns:
        return
    writers = {"csv": to_csv, "json": to_json, "markdown": to_markdown}
    if fmt in writers:
        typer.echo(writers[fmt](result), nl=False)
        return
    table = Table(*result.columns, caption=f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}")
    for row in result.rows:
        table.add_row(*[_short(v, TABLE_CELL_CHARS if truncate else None) for v in row])
    Console().print(table)


def _short(value: object, limit: int | None) -> Text:
    if value is None:
        return Text("NULL", style="dim")
    text = " ".join(cell(value).split())
    return Text(text if limit is None or len(text) <= limit else text[: limit - 1] + "…")
