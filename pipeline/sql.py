"""``pipeline sql``: run a query against the pipeline database and format the result.

The database opens read-only unless ``write=True``. DuckDB's own error message becomes a
one-line ``PipelineError``; the friendly views are described in pipeline/store/views.py.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import duckdb

from pipeline.core.errors import InputError, PipelineError, StoreError
from pipeline.store import Store

FORMATS = ("table", "csv", "json", "markdown")
PARAM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


class QueryError(PipelineError):
    """A query DuckDB rejected."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


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
        params[m.group(1)] = m.group(2)
    return params


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


def _open(db: Path, write: bool) -> Store:
    if write and not Path(db).exists():
        raise StoreError(f"database {db} does not exist", "run `pipeline extract` first or pass --db PATH")
    return Store(db, read_only=not write)


def execute(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, str] | None = None) -> QueryResult:
    """Run ``query`` (several statements allowed; the last one's rows are returned)."""
    try:
        cur = con.execute(query, params or None)
        if cur.description is None:
            return QueryResult([], [])
        columns = [d[0] for d in cur.description]
        return QueryResult(columns, cur.fetchall())
    except duckdb.Error as exc:
        message = one_line(str(exc))
        if "read-only mode" in message:
            raise QueryError(message, "pass --write to allow changes") from exc
        raise QueryError(message) from exc


def run_query(db: Path, query: str, *, params: dict[str, str] | None = None, write: bool = False) -> QueryResult:
    """Run ``query`` against ``db``: read-only unless ``write``."""
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
