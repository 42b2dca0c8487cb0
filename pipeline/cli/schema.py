"""``pipeline schema check SPEC``: what the pipeline will do with a schema, one line each."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Inspect a schema before extracting with it.", no_args_is_help=True, add_completion=False)


@app.command("check")
def check(
    spec: Annotated[str, typer.Argument(help="built-in name, module:Class, path/file.py:Class or a package path")],
) -> None:
    """Load a schema and report its record types, keys, bounds, strategy, prompt and views."""
    from pipeline.schema_check import check_schema

    report = check_schema(spec)
    console = Console()
    console.print(f"schema [bold]{report.name}[/] ({report.spec})", highlight=False)
    for t in report.types:
        table = Table(
            title=f"{t.name} ({'many' if t.many else 'one'} per document) -> view {t.view}", title_justify="left"
        )
        for col in ("field", "type", "key", "required", "bounds", "candidates"):
            table.add_column(col)
        for f in t.fields:
            table.add_row(
                f.name, f.sql_type, "key" if f.key else "", "yes" if f.required else "", f.bounds, f.candidates or ""
            )
        console.print(table)
    console.print(f"strategy: embedded model {report.strategy_local}; OpenAI-compatible {report.strategy_remote}")
    for name, path in report.prompts.items():
        console.print(f"prompt {name}: {path}", highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if not report.notes:
        console.print("nothing to fix")
