"""``pipeline sql``: run a query against the pipeline database and format the result.

The database opens read-only unless ``write=True``. Either way the query runs on a connection
that DuckDB itself keeps inside that one file (``SANDBOX``): no file read or written, no other
database attached, no extension installed or loaded, and these settings locked. DuckDB's own
error message becomes a one-line ``PipelineError``; the friendly views are described in
pipeline/store/views.py.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import duckdb

from pipeline.core.errors import InputError, PipelineError, StoreError
from pipeline.store import Store

FORMATS = ("table", "csv", "json", "markdown")
PARAM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
#: --param values written as numbers: an integer stays text unless DuckDB cannot use text there
#: (``$n + 1``); a plain decimal is bound as a DECIMAL (as text, ``$k > 1.5`` on an integer would
#: round it: DuckDB casts text to the other side's type)
INTEGER = re.compile(r"^[+-]?\d+$")
DECIMAL = re.compile(r"^-?(0|[1-9]\d*)\.\d+$")

#: DuckDB's own switches, set before the user's SQL runs and then locked: with external access
#: off, COPY/EXPORT/read_csv/ATTACH of a file/INSTALL/LOAD all fail (the open database file keeps
#: working); no extension is installed or loaded behind a query's back (json is built in); and
#: ``lock_configuration`` makes every later SET/RESET/PRAGMA of a setting an error.
SANDBOX = (
    ("enable_external_access", "false"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("allow_community_extensions", "false"),
    ("lock_configuration", "true"),
)


class QueryError(PipelineError):
    """A query DuckDB rejected."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    warnings: list[str] = field(default_factory=list)


def one_line(message: str) -> str:
    """DuckDB's message without its ``LINE n:`` excerpt and caret, on one line."""
    keep = [line.strip() for line in message.splitlines() if not line.startswith("LINE ")]
    return " ".join(line for line in keep if line and not line.startswith("^"))


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``["name=value", ...]`` -> ``{"name": "value"}``, for ``$name`` in the query."""
    params: dict[str, str] = {}
    for item in items:
        m = PARAM.match(item)
        if not m:
            raise InputError(f"bad --param {item!r}", "write it as name=value and use $name in the query")
        if m.group(1) in params:
            raise InputError(f"--param {m.group(1)} given twice", "pass each name once")
        params[m.group(1)] = m.group(2)
    return params


def bind_value(value: str, *, integers: bool = False) -> str | int | Decimal:
    """A --param value as bound: a plain decimal (``1.25``) as a DECIMAL, an integer as an
    integer when ``integers``, anything else as text (``007`` keeps its zeros)."""
    if integers and INTEGER.match(value):
        return int(value)
    if DECIMAL.match(value) and len(value) <= 38:  # DuckDB's widest DECIMAL
        return Decimal(value)
    return value


def read_query(query: str | None, file: Path | None, stdin: TextIO | None = None) -> str:
    """The query text from the argument, a ``.sql`` file (``--file`` or a path argument) or stdin (``-``)."""
    if query is not None and file is not None:
        raise InputError("both a query and --file given", "pass one of them")
    if file is None and query is not None and query.strip().lower().endswith(".sql") and not query.strip().count(" "):
        file = Path(query.strip())
    if file is not None:
        if not file.is_file():
            raise InputError(f"query file {file} does not exist", "check the path")
        text = file.read_text(encoding="utf-8")
    elif query == "-":
        text = (stdin or sys.stdin).read()
    elif query is not None:
        text = query
    else:
        raise InputError("no query given", "pass a query, --file F.sql, or - to read it from stdin")
    if not text.strip():
        raise InputError("the query is empty", "write a SQL statement")
    return text


def sandbox(con: duckdb.DuckDBPyConnection) -> None:
    """Apply ``SANDBOX`` to ``con``'s database: from here on it reaches nothing but its own file."""
    for name, value in SANDBOX:
        con.execute(f"SET {name} = {value}")


def _open(db: Path, write: bool) -> Store:
    if write and not Path(db).exists():
        raise StoreError(f"database {db} does not exist", "run `pipeline extract` first or pass --db PATH")
    store = Store(db, read_only=not write)
    try:
        sandbox(store.con)
    except BaseException:
        store.close()
        raise
    return store


def _refused(exc: duckdb.Error) -> QueryError:
    """DuckDB's message on one line, with the way out where the sandbox or read-only mode said no."""
    message = one_line(str(exc))
    if "read-only mode" in message:
        return QueryError(message, "pass --write to allow changes")
    if isinstance(exc, duckdb.PermissionException):
        return QueryError(
            message,
            "pipeline sql reads and changes only its --db file: no other files, databases or extensions "
            "(use `pipeline export` to write files)",
        )
    if "configuration has been locked" in message:
        return QueryError(message, "pipeline sql runs with DuckDB's settings fixed; write the query without SET/PRAGMA")
    return QueryError(message)


def execute(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, str] | None = None) -> QueryResult:
    """Run ``query`` (several statements allowed; the last one's rows are returned).

    ``params`` bind ``$name`` in the last statement (``bind_value``): text, which DuckDB casts
    to the type of what the query compares it with (a VARCHAR id keeps its leading zeros), or a
    DECIMAL for a plain decimal. Where DuckDB cannot give text a type (``$n + 1``), integers are
    bound as integers instead. A name the query does not use is a warning, not an error.
    """
    params = dict(params or {})
    try:
        statements = con.extract_statements(query)
        if not statements:
            raise InputError("the query has no SQL statement", "write a SQL statement")
        early = sorted(set[str]().union(*(s.named_parameters for s in statements[:-1])))
        if early:
            raise InputError(
                f"${early[0]} is used before the last statement", "parameters bind in the last statement only"
            )
        used = set(statements[-1].named_parameters)
        warnings = [
            f"--param {name} is not used by the query (no ${name} in it)" for name in params if name not in used
        ]
        bound = {k: bind_value(v) for k, v in params.items() if k in used}
        for statement in statements[:-1]:
            con.execute(statement.query)
        last = statements[-1].query
        try:
            cur = con.execute(last, bound or None)
        except duckdb.BinderException as exc:
            if not bound or "STRING_LITERAL" not in str(exc):  # not about a --param bound as text
                raise
            numbers = {k: bind_value(v, integers=True) for k, v in params.items() if k in used}
            if numbers == bound:
                raise QueryError(
                    one_line(str(exc)),
                    "DuckDB cannot tell the type of a text --param here; write CAST($name AS INTEGER) in the query",
                ) from exc
            cur = con.execute(last, numbers)
        if cur.description is None:
            return QueryResult([], [], warnings)
        columns = [d[0] for d in cur.description]
        return QueryResult(columns, cur.fetchall(), warnings)
    except duckdb.Error as exc:
        raise _refused(exc) from exc


def run_query(db: Path, query: str, *, params: dict[str, str] | None = None, write: bool = False) -> QueryResult:
    """Run ``query`` against ``db``: read-only unless ``write``, never outside ``db`` (``SANDBOX``).

    The settings belong to the database instance, which ends with this call; a connection this
    process already holds to ``db`` (DuckDB shares the instance) would be sandboxed with it."""
    with _open(db, write) as store:
        return execute(store.con, query, params)


def list_tables(db: Path) -> QueryResult:
    """Every table and view of ``db`` with its columns (name type, ...)."""
    with _open(db, write=False) as store:
        return execute(
            store.con,
            "SELECT t.table_name AS name, lower(replace(t.table_type, 'BASE ', '')) AS kind, "
            "string_agg(c.column_name || ' ' || c.data_type, ', ' ORDER BY c.ordinal_position) AS columns "
            "FROM information_schema.tables t JOIN information_schema.columns c "
            "ON c.table_schema = t.table_schema AND c.table_name = t.table_name "
            "WHERE t.table_schema = 'main' GROUP BY ALL ORDER BY kind DESC, name",
        )


# -- output formats ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-ready value."""
    if isinstance(value, datetime | date | time | Decimal):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def cell(value: Any) -> str:
    """A value as text: '' for NULL, JSON for lists and structs."""
    if value is None:
        return ""
    if isinstance(value, list | tuple | dict):
        return json.dumps(_plain(value), ensure_ascii=False)
    plain = _plain(value)
    return plain if isinstance(plain, str) else json.dumps(plain)


def to_csv(result: QueryResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([cell(v) for v in row] for row in result.rows)
    return buf.getvalue()


def to_json(result: QueryResult) -> str:
    rows = [{c: _plain(v) for c, v in zip(result.columns, row, strict=True)} for row in result.rows]
    return json.dumps(rows, ensure_ascii=False, indent=2) + "\n"


def to_markdown(result: QueryResult) -> str:
    def esc(text: str) -> str:
        return " ".join(text.replace("|", "\\|").split())

    lines = ["| " + " | ".join(esc(c) for c in result.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in result.columns) + "|")
    lines += ["| " + " | ".join(esc(cell(v)) for v in row) + " |" for row in result.rows]
    return "\n".join(lines) + "\n"
