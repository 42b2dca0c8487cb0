"""``pipeline report``: one self-contained HTML page to review a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.export import cannot_write
from pipeline.cli.extract import DEFAULT_DB
from pipeline.core.errors import InputError

DEFAULT_GOLD = Path("evals/gold")


def report(
    db: Annotated[Path, typer.Option(help="DuckDB file to read")] = DEFAULT_DB,
    run: Annotated[str, typer.Option(help="latest or a run id")] = "latest",
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("report.html"),
    gold: Annotated[
        Path | None, typer.Option(help="folder of <doc_id>.json gold files (default: evals/gold if present)")
    ] = None,
    schema: Annotated[str | None, typer.Option(help="schema to read the run with (default: the run's)")] = None,
) -> None:
    """Write an HTML page: documents with records highlighted at their evidence, gold misses marked."""
    from pipeline.report import build_report

    if gold is None and DEFAULT_GOLD.is_dir():
        gold = DEFAULT_GOLD
    if out.is_dir():
        raise InputError(f"--out {out} is a folder", f"pass a file path, such as {out / 'report.html'}")
    try:
        s = build_report(db=db, run=run, out=out, gold=gold, schema=schema)
    except OSError as exc:
        if exc.filename is None or Path(exc.filename) not in {out, *out.parents}:
            raise
        raise cannot_write(out, exc, "pass --out with a path you can write to") from exc
    gold_note = f", gold for {s.gold_documents}" if gold else ", no gold"
    typer.echo(
        f"{s.path}: run {s.run_id}, {s.documents} documents, {s.records} records ({s.grounded} grounded){gold_note}"
    )
