"""``pipeline`` console script. Errors become one line on stderr and exit code 1 here only."""

from __future__ import annotations

import logging
import os
import sys
import threading

import typer

from pipeline.core.errors import PipelineError
from pipeline.interrupt import CtrlC, raise_on_interrupt

app = typer.Typer(
    name="pipeline",
    help="Offline-first, source-grounded LLM extraction into DuckDB, scored against a gold set.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Offline-first, source-grounded LLM extraction into DuckDB, scored against a gold set."""


def _register() -> None:
    from pipeline.cli import eval as eval_cmd
    from pipeline.cli import export, extract, report, sql
    from pipeline.cli import schema as schema_cmd

    app.command("extract")(extract.extract)
    app.command("eval")(eval_cmd.eval_)
    app.command("sql")(sql.sql)
    app.command("export")(export.export)
    app.command("report")(report.report)
    app.add_typer(schema_cmd.app, name="schema")


def main() -> None:
    # instructor logs every re-ask at ERROR; each attempt is already a row in llm_calls
    logging.getLogger("instructor").setLevel(logging.CRITICAL)
    raise_on_interrupt()
    try:
        _register()
        app()
    except PipelineError as err:
        typer.secho(f"error: {err}", fg="red", file=sys.stderr)
        _exit(err.exit_code)
    except (CtrlC, KeyboardInterrupt):
        typer.secho("error: interrupted -- nothing was written; run the command again", fg="red", file=sys.stderr)
        _exit(130)


def _exit(code: int) -> None:
    """Exit now: a worker thread still waiting on a remote request after Ctrl-C (files and the
    database already closed) must not hold the process."""
    sys.stdout.flush()
    sys.stderr.flush()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        os._exit(code)
    sys.exit(code)


def run() -> None:
    """The console script (and ``python -m pipeline``): ``main``, but a failed or interrupted
    command skips the interpreter's teardown -- files and the database are closed by then,
    and unloading the model and libraries took 0.5 s of the exit after Ctrl-C."""
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise
