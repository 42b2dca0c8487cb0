"""``pipeline eval``: score a run against the gold set, or compare two runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.core.errors import InputError

if TYPE_CHECKING:  # the scorer (scipy) loads only when `eval` runs: other commands start faster
    from pipeline.evaluate import EvalReport
    from pipeline.score import Comparison

DEFAULT_DB = Path("data/pipeline.duckdb")


def eval_(
    db: Annotated[Path, typer.Option(help="DuckDB file written by `pipeline extract`")] = DEFAULT_DB,
    run: Annotated[str | None, typer.Option(help="run id, or 'latest' (the default)")] = None,
    gold: Annotated[Path, typer.Option(help="folder of <doc_id>.json gold files")] = Path("evals/gold"),
    docs: Annotated[Path, typer.Option(help="folder of the gold documents' texts")] = Path("evals/docs"),
    mode: Annotated[str, typer.Option(help="lenient (fuzzy, fuzz.ratio >= 90) | strict (equal)")] = "lenient",
    json_: Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")] = False,
    include_ungrounded: Annotated[
        bool, typer.Option(help="also score records whose evidence was not found in the text")
    ] = False,
    schema: Annotated[str | None, typer.Option(help="schema to read the run with [default: the run's own]")] = None,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(metavar="RUN_A RUN_B", help="per-type F1 deltas and flipped gold records, B against A"),
    ] = None,
) -> None:
    """Score a run's records against the gold set; store and print the scores."""
    from pipeline.evaluate import compare_runs, evaluate

    if compare is not None and run is not None:
        raise InputError("--run and --compare both given", "--compare RUN_A RUN_B names both runs; drop --run")
    common: dict[str, Any] = {
        "db": db,
        "gold_dir": gold,
        "docs_dir": docs,
        "mode": mode,
        "schema": schema,
        "include_ungrounded": include_ungrounded,
    }
    console = Console()
    if compare is not None:
        comparison = compare_runs(run_a=compare[0], run_b=compare[1], **common)
        if comparison.run_a == comparison.run_b:
            typer.echo(f"warning: A and B are the same run {comparison.run_a}: every delta is 0", err=True)
        if json_:
            typer.echo(comparison.model_dump_json(indent=2))
        else:
            print_comparison(comparison, console)
        return
    report = evaluate(run=run or "latest", **common)
    if json_:
        typer.echo(report.model_dump_json(indent=2))
    else:
        print_report(report, console)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _label(key: dict[str, Any]) -> str:
    """Key fields as one line; a gold field with alternatives shows its first."""
    return " | ".join(str(v[0] if isinstance(v, list) and v else v) for v in key.values())


def print_report(r: EvalReport, console: Console) -> None:
    for w in r.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    title = (
        f"eval run {r.run_id} ({r.mode}, gold {r.gold_dir} {r.gold_hash}, "
        f"{len(r.documents) - len(r.missing_documents)} of {len(r.documents)} gold documents in the run)"
    )
    table = Table(title=title, title_justify="left")
    for col in ("type", "tp", "fp", "fn", "precision", "recall", "F1"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for name, s in r.per_type.items():
        if s.tp + s.fp + s.fn:
            table.add_row(name, str(s.tp), str(s.fp), str(s.fn), _pct(s.precision), _pct(s.recall), _pct(s.f1))
    m = r.micro
    table.add_section()
    table.add_row("micro", str(m.tp), str(m.fp), str(m.fn), _pct(m.precision), _pct(m.recall), _pct(m.f1))
    table.add_row("macro F1", "", "", "", "", "", _pct(r.macro_f1))
    console.print(table)
    g = r.grounding
    console.print(
        f"grounding rate {_pct(g.rate)} ({g.grounded} of {g.total} records' evidence found in the text"
        + (f"; {g.flag_disagrees} disagree with the stored flag" if g.flag_disagrees else "")
        + f"); undergeneration {_pct(m.undergeneration)}, overgeneration {_pct(m.overgeneration)}"
    )
    fields = Table(title="field accuracy on found pairs", title_justify="left")
    for col in ("type", "field", "accuracy", "pairs"):
        fields.add_column(col, justify="left" if col in ("type", "field") else "right")
    for name, per_field in r.per_field.items():
        for field, fs in per_field.items():
            if fs.total:
                fields.add_row(name, field, _pct(fs.accuracy), str(fs.total))
    if fields.row_count:
        console.print(fields)
    print_confidence(r, console)
    for doc_id, per_type in r.documents.items():
        lines = []
        for name, res in per_type.items():
            lines += [f"  missed   {name}: {_label(x.key)}" for x in res.missed]
            lines += [f"  spurious {name}: {_label(x.key)}" for x in res.spurious]
        status = " (not in the run: everything missed)" if doc_id in r.missing_documents else ""
        if lines or status:
            console.print(f"[bold]{doc_id}[/]{status}", highlight=False)
            console.print("\n".join(lines), highlight=False, markup=False)
    if r.unscored:
        console.print(f"unscored (no gold file): {', '.join(r.unscored)}", highlight=False)


def print_confidence(r: EvalReport, console: Console) -> None:
    """Accuracy by the model's margin (best minus second option, nats), per field it ranked."""
    from pipeline.score import BANDS, NO_MARGIN

    labels = [*(b for b, _ in BANDS), NO_MARGIN]
    table = Table(
        title="field accuracy by confidence (the model's margin in nats; correct/pairs)", title_justify="left"
    )
    for col in ("type", "field", *labels):
        table.add_column(col, justify="left" if col in ("type", "field") else "right")
    for name, per_field in r.per_field_confidence.items():
        for field, bands in per_field.items():
            cells = [f"{bands[b].correct:g}/{bands[b].total}" if b in bands else "-" for b in labels]
            table.add_row(name, field, *cells)
    if table.row_count:
        console.print(table)


def print_comparison(c: Comparison, console: Console) -> None:
    table = Table(title=f"F1 {c.run_a} (A) -> {c.run_b} (B), {c.mode}", title_justify="left")
    for col in ("type", "A", "B", "delta"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for name, d in c.per_type.items():
        table.add_row(name, _pct(d.a), _pct(d.b), f"{d.delta:+.2f}")
    table.add_section()
    table.add_row("micro", _pct(c.micro_f1.a), _pct(c.micro_f1.b), f"{c.micro_f1.delta:+.2f}")
    console.print(table)
    for word, flips in (("found only by B", c.gained), ("found only by A", c.lost)):
        console.print(f"{len(flips)} gold records {word}")
        for f in flips:
            console.print(f"  {f.doc_id} {f.record_type}: {_label(f.key)}", highlight=False, markup=False)
