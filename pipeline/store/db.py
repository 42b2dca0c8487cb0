"""The DuckDB store's base: opening the file, migrations, transactions, record tables.

``pipeline.store.Store`` is the only way into the database. It is assembled from one module
per job: ``runs`` (what ``extract`` writes), ``reads`` (what the reading commands read),
``evals`` (what ``eval`` stores) and ``views`` (the friendly SQL views).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import duckdb

from pipeline import __version__
from pipeline.core.errors import StoreError
from pipeline.core.schema import Schema
from pipeline.store.migrations import MIGRATIONS

# duckdb's Python client tries `import pandas` for every bound parameter; without pandas each
# try walks sys.path again and took half of a chunk's write time (bench item 6b). Recording
# the absence once makes those imports fail at once, as they would anyway.
if importlib.util.find_spec("pandas") is None:
    sys.modules.setdefault("pandas", None)  # type: ignore[arg-type]

RECORD_COLUMNS = [
    ("record_id", "VARCHAR PRIMARY KEY"),
    ("extraction_key", "VARCHAR NOT NULL"),
    ("run_id", "VARCHAR NOT NULL"),
    ("schema_name", "VARCHAR NOT NULL"),
    ("doc_id", "VARCHAR NOT NULL"),
    ("doc_sha256", "VARCHAR NOT NULL"),
    ("chunk_id", "VARCHAR NOT NULL"),
    ("ordinal", "INTEGER NOT NULL"),
    ("evidence", "VARCHAR"),
    ("evidence_start", "BIGINT"),
    ("evidence_end", "BIGINT"),
    ("alignment", "VARCHAR"),
    ("grounded", "BOOLEAN"),
    # {field: margin}: how sure the embedded model was of each field it chose (strategies/fill.py)
    ("confidence", "JSON"),
]
#: pipeline columns added after the first release: ``ensure_record_tables`` adds them to old tables
ADDED_COLUMNS = ("confidence",)


class _CsvNull(int):
    """Written unquoted as ``\\N`` by ``csv.QUOTE_NONNUMERIC`` (numbers are not quoted), so a
    NULL stays distinct from the quoted empty string (Python 3.11 has no ``QUOTE_STRINGS``)."""

    def __str__(self) -> str:
        return "\\N"


_NULL = _CsvNull(0)
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def quote(name: str) -> str:
    """A SQL identifier, quoted: a field may be named like a keyword (``order``)."""
    return '"' + name.replace('"', '""') + '"'


def record_table(record_type: str) -> str:
    if not IDENT.match(record_type):
        raise StoreError(f"record type {record_type!r} is not a valid SQL identifier", "rename the schema field")
    return f"rec_{record_type}"


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the database file, turning DuckDB's failures into one-line errors."""
    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(f"database {path} does not exist", "run `pipeline extract` first or pass --db PATH")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        msg = str(exc)
        if "lock" in msg.lower():
            holder = re.search(r"PID (\d+)", msg)
            who = f" (PID {holder.group(1)})" if holder else ""
            raise StoreError(
                f"database {path} is locked by another process{who}",
                "wait for that process to finish, or pass --db with another file",
            ) from exc
        raise StoreError(
            f"cannot open database {path}: {msg.splitlines()[0]}", "check the path and permissions"
        ) from exc
    except duckdb.Error as exc:
        raise StoreError(
            f"cannot open database {path}: {str(exc).splitlines()[0]}",
            "the file is not a DuckDB database of this DuckDB version; pass --db with another file",
        ) from exc


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply pending migrations in order; return the names applied."""
    con.execute("CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    done = {r[0] for r in con.execute("SELECT name FROM _migrations").fetchall()}
    known = {name for name, _ in MIGRATIONS}
    unknown = sorted(done - known)
    if unknown:
        raise StoreError(
            f"database was written by a newer version of pipeline (unknown migration {unknown[-1]})",
            f"upgrade pipeline (this is {__version__}) or pass --db with another file",
        )
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            fn(con)
            con.execute("INSERT INTO _migrations VALUES (?, ?)", [name, now()])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(name)
    if applied:
        # DuckDB 1.5 cannot replay some DDL from its write-ahead log (adding a JSON column fails
        # with an internal error): after a crash the file would not open again. A checkpoint
        # writes schema changes into the file itself, so the log holds only data.
        con.execute("CHECKPOINT")
    return applied


def insert_rows(
    con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Sequence[Any]], *, verb: str = "INSERT", tail: str = ""
) -> None:
    """Insert many rows in one statement: each column bound as one list and ``unnest``ed.

    DuckDB's ``executemany`` binds and runs the statement once per row (1.9 s for 2,000 rows
    on this machine); one columnar statement does the same in 0.07 s. ``verb`` may be
    ``INSERT OR IGNORE``; ``tail`` may be ``ON CONFLICT DO NOTHING``."""
    if not rows:
        return
    columns = [list(c) for c in zip(*rows, strict=True)]
    unnests = ", ".join(f"unnest(${i + 1})" for i in range(len(columns)))
    con.execute(f"{verb} INTO {table} SELECT {unnests} {tail}".rstrip(), columns)


def table_names(con: duckdb.DuckDBPyConnection, kind: str = "BASE TABLE") -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' AND table_type = ?", [kind]
    ).fetchall()
    return {str(r[0]) for r in rows}


class StoreBase:
    """Read/write access to one pipeline database. Use as a context manager."""

    con: duckdb.DuckDBPyConnection
    path: Path

    def table_names(self, kind: str = "BASE TABLE") -> set[str]:
        return table_names(self.con, kind)

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.con = connect(self.path, read_only=read_only)
        if read_only:
            names = {r[0] for r in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            if "_migrations" not in names:
                raise StoreError(f"{self.path} is not a pipeline database", "pass --db with a pipeline database")
            known = {name for name, _ in MIGRATIONS}
            done = {r[0] for r in self.con.execute("SELECT name FROM _migrations").fetchall()}
            if done - known:
                raise StoreError(
                    f"database was written by a newer version of pipeline (unknown migration {sorted(done - known)[-1]})",
                    f"upgrade pipeline (this is {__version__})",
                )
        else:
            migrate(self.con)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # -- schema-dependent record tables ------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def ensure_record_tables(self, schema: Schema) -> None:
        """Create ``rec_<type>`` tables, adding columns a schema needs that are missing."""
        tables = self.table_names()
        changed = False
        for rt in schema.record_types:
            table = record_table(rt.name)
            cols = ", ".join(f"{name} {decl}" for name, decl in RECORD_COLUMNS)
            if table not in tables:
                self.con.execute(f"CREATE TABLE {table} ({cols})")
                changed = True
            have = {
                r[0]: r[1]
                for r in self.con.execute(
                    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
                    [table],
                ).fetchall()
            }
            for name, decl in RECORD_COLUMNS:
                if name in ADDED_COLUMNS and name not in have:
                    self.con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
            for f in rt.fields:
                if f.name == "evidence":
                    continue
                if f.name in dict(RECORD_COLUMNS):
                    raise StoreError(
                        f"field {rt.name}.{f.name} cannot be stored: the pipeline keeps its own {f.name!r} column",
                        "rename the field in the schema",
                    )
                if f.name not in have:
                    self.con.execute(f"ALTER TABLE {table} ADD COLUMN {quote(f.name)} {f.sql_type}")
                    changed = True
                elif have[f.name] != f.sql_type:
                    raise StoreError(
                        f"{table}.{f.name} is {have[f.name]} in the database but {f.sql_type} in schema {schema.name!r}",
                        "use another --db for this schema, or rename the field",
                    )
        if changed:  # schema changes go into the file, not the write-ahead log (see ``migrate``)
            self.con.execute("CHECKPOINT")

    # -- writes ------------------------------------------------------------------------

    def table_counts(self) -> dict[str, int]:
        names = [
            r[0]
            for r in self.con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' ORDER BY table_name"
            ).fetchall()
        ]
        return {n: int(self.con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]) for n in names}  # type: ignore[index]
