from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.cli.main import main
from pipeline.core.errors import InputError, StoreError
from pipeline.core.schema import describe, load_schema
from pipeline.sql import QueryError, list_tables, parse_params, read_query, run_query, to_csv, to_json, to_markdown
from pipeline.store import Store
from pipeline.store.views import CORE_TABLES, view_name
from tests.conftest import FakeProvider
from tests.records_db import DES, DES_OUT, KYV, KYV_OUT, build, extract, write_docs

RECORD_TYPES = [rt.name for rt in load_schema("biomedical").record_types]


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Run the real console entry point in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["pipeline", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def query(db: Path, sql: str) -> list[dict[str, Any]]:
    result = run_query(db, sql)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


# -- views -------------------------------------------------------------------------


def test_extract_creates_one_view_per_record_type(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    views = {r[0] for r in run_query(db, "SELECT view_name FROM duckdb_views() WHERE NOT internal").rows}
    assert views == {*RECORD_TYPES, "all_records", "all_entities"}


def test_views_hold_grounded_records_with_document_and_span(tmp_path: Path, db: Path) -> None:
    summary = build(tmp_path, db)
    docs = tmp_path / "docs"
    rows = query(db, "SELECT * EXCLUDE (record_id, chunk_id, doc_sha256) FROM therapies ORDER BY doc_id")
    des_ev = DES_OUT["therapies"][0]["evidence"]
    assert rows == [
        {
            "doc_id": "des",
            "name": "Descartes-08",
            "modality": None,
            "target": None,
            "developer": "Cartesian Therapeutics",
            "indications": ["juvenile dermatomyositis"],
            "evidence": des_ev,
            "evidence_start": DES.index(des_ev),
            "evidence_end": DES.index(des_ev) + len(des_ev),
            "page": None,  # a .txt document has no pages
            "pages": None,
            "alignment": "exact",
            "grounded": True,
            "confidence": None,  # the fill step did not rank (direct strategy)
            "doc_title": "Descartes-08 Receives Designation",  # the article record's title
            "doc_path": str(docs / "des.txt"),
            "run_id": summary.run_id,
        },
        {
            "doc_id": "kyv",
            "name": "KYV-101",
            "modality": None,
            "target": "CD19",
            "developer": None,
            "indications": ["myasthenia gravis"],
            "evidence": "KYV-101 is a CD19 CAR T cell therapy.",
            "evidence_start": 0,
            "evidence_end": 37,
            "page": None,
            "pages": None,
            "alignment": "exact",
            "grounded": True,
            "confidence": None,
            "doc_title": KYV,  # no article record: the document's first kept line
            "doc_path": str(docs / "kyv.txt"),
            "run_id": summary.run_id,
        },
    ]
    for row in query(
        db,
        "SELECT v.evidence_start, v.evidence_end, v.evidence, d.text FROM conditions v JOIN documents d USING (doc_id)",
    ):
        assert row["text"][row["evidence_start"] : row["evidence_end"]] == row["evidence"]
    # the organization's evidence is not in the text: stored, but not in the view
    assert query(db, "SELECT count(*) AS n FROM rec_organizations") == [{"n": 1}]
    assert query(db, "SELECT count(*) AS n FROM organizations") == [{"n": 0}]


def test_all_records_puts_every_type_together(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    rows = query(
        db,
        "SELECT record_type, label, fields, evidence_start FROM all_records WHERE doc_id = 'des' ORDER BY evidence_start",
    )
    reg = DES_OUT["regulatory_events"][0]
    assert [(r["record_type"], r["label"], json.loads(r["fields"])) for r in rows] == [
        (
            "article",
            "Descartes-08 Receives Designation",
            {
                **dict.fromkeys(["title", "article_type", "published", "source", "doi", "pmid"]),
                "title": "Descartes-08 Receives Designation",
            },
        ),
        (
            "regulatory_events",
            "FDA · Rare Pediatric Disease Designation · Descartes-08",
            {**{k: v for k, v in reg.items() if k != "evidence"}, "date": None},
        ),
        (
            "therapies",
            "Descartes-08",
            {
                "name": "Descartes-08",
                "modality": None,
                "target": None,
                "developer": "Cartesian Therapeutics",
                "indications": ["juvenile dermatomyositis"],
            },
        ),
    ]
    assert [r["evidence_start"] for r in rows] == [0, DES.index("The FDA"), DES.index("Cartesian")]


def test_views_follow_each_documents_latest_run(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    fake = FakeProvider()
    # a reused run: same records, now belonging to the new run too
    reused = extract([write_docs(tmp_path)], db, fake)
    assert reused.calls == 0
    assert {r["run_id"] for r in query(db, "SELECT run_id FROM therapies")} == {reused.run_id}
    # a refreshed run of one document with a different answer replaces that document's rows only
    renamed = {**KYV_OUT, "therapies": [{**KYV_OUT["therapies"][0], "target": None}]}
    fake.push(renamed)
    refreshed = extract([tmp_path / "docs" / "kyv.txt"], db, fake, refresh=True)
    rows = query(db, "SELECT doc_id, name, target, run_id FROM therapies ORDER BY doc_id")
    assert rows == [
        {"doc_id": "des", "name": "Descartes-08", "target": None, "run_id": reused.run_id},
        {"doc_id": "kyv", "name": "KYV-101", "target": None, "run_id": refreshed.run_id},
    ]
    # an interrupted run does not replace the finished one
    with Store(db) as store:
        store.con.execute("UPDATE runs SET status = 'interrupted' WHERE run_id = ?", [refreshed.run_id])
    assert query(db, "SELECT doc_id, run_id FROM therapies WHERE doc_id = 'kyv'") == [
        {"doc_id": "kyv", "run_id": reused.run_id}
    ]


def test_views_are_derived_from_any_schema_and_never_take_a_table_name(tmp_path: Path, db: Path) -> None:
    from pydantic import BaseModel

    class Item(BaseModel):
        label: str
        evidence: str

    class Shelf(BaseModel):
        documents: list[Item] = []  # a record type named like a core table
        items: list[Item] = []

    schema = describe(Shelf)
    with Store(db) as store:
        store.ensure_record_tables(schema)
        names = store.ensure_views(schema)
    assert names == {"documents": "documents_records", "items": "items"}
    assert query(db, "SELECT * FROM items") == [] and query(db, "SELECT * FROM all_records") == []
    assert run_query(db, "SELECT * FROM documents_records").columns[:2] == ["doc_id", "label"]
    for core in CORE_TABLES - {"_migrations"}:  # pydantic has no field names starting with "_"
        assert view_name(core, set()) == f"{core}_records"
    assert view_name("scores", {"scores"}) == "scores_records"
    assert view_name("eval", set()) == "eval"
    with pytest.raises(StoreError, match="rename the record type"):
        view_name("eval_scores", set())  # eval_* and rec_* names belong to tables


# -- queries -----------------------------------------------------------------------


def test_read_only_by_default_and_write_when_asked(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    with pytest.raises(QueryError, match=r"read-only mode.* -- pass --write"):
        run_query(db, "DELETE FROM runs")
    assert query(db, "SELECT count(*) AS n FROM runs") == [{"n": 1}]
    assert run_query(db, "CREATE TABLE notes AS SELECT 1 AS x", write=True).columns in ([], ["Count"])
    assert query(db, "SELECT * FROM notes") == [{"x": 1}]


def test_params_are_bound_not_pasted(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    params = parse_params(["agency=FDA", "name=x' OR '1'='1"])
    result = run_query(
        db, "SELECT therapy, action FROM regulatory_events WHERE agency = $agency", params={"agency": params["agency"]}
    )
    assert result.rows == [("Descartes-08", "Rare Pediatric Disease Designation")]
    assert run_query(db, "SELECT * FROM therapies WHERE name = $name", params={"name": params["name"]}).rows == []
    with pytest.raises(InputError, match="name=value"):
        parse_params(["no-equals-sign"])


def test_query_sources(tmp_path: Path) -> None:
    f = tmp_path / "q.sql"
    f.write_text("SELECT 1", encoding="utf-8")
    assert read_query("q.sql", None) == "SELECT 1"
    assert read_query(None, f) == "SELECT 1"
    assert read_query("-", None, io.StringIO("SELECT 2")) == "SELECT 2"
    assert read_query("SELECT 'x.sql'", None) == "SELECT 'x.sql'"
    with pytest.raises(InputError, match="does not exist"):
        read_query("missing.sql", None)
    with pytest.raises(InputError, match="no query"):
        read_query(None, None)
    with pytest.raises(InputError, match="empty"):
        read_query("-", None, io.StringIO("  \n"))


def test_formats() -> None:
    from pipeline.sql import QueryResult

    result = QueryResult(["name", "tags", "n", "note"], [("a|b", ["x", "y"], 1, None), ('q"uote', [], 2, "two\nlines")])
    assert to_csv(result) == 'name,tags,n,note\na|b,"[""x"", ""y""]",1,\n"q""uote",[],2,"two\nlines"\n'
    assert json.loads(to_json(result)) == [
        {"name": "a|b", "tags": ["x", "y"], "n": 1, "note": None},
        {"name": 'q"uote', "tags": [], "n": 2, "note": "two\nlines"},
    ]
    assert to_markdown(result) == (
        '| name | tags | n | note |\n|---|---|---|---|\n| a\\|b | ["x", "y"] | 1 |  |\n| q"uote | [] | 2 | two lines |\n'
    )


def test_tables_lists_tables_and_views_with_columns(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    rows = {r[0]: (r[1], r[2]) for r in list_tables(db).rows}
    assert rows["therapies"][0] == "view" and rows["runs"][0] == "table"
    assert rows["therapies"][1].startswith("doc_id VARCHAR, name VARCHAR, modality VARCHAR")
    assert "indications VARCHAR[]" in rows["therapies"][1]
    assert {*RECORD_TYPES, *CORE_TABLES, "all_records"} <= set(rows)


# -- the command line --------------------------------------------------------------


def test_cli_query_in_each_format(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path, db)
    q = "SELECT doc_id, name, indications FROM therapies ORDER BY doc_id"
    code, out, _ = cli(capsys, monkeypatch, "sql", q, "--db", str(db), "--format", "csv")
    assert (code, out) == (
        0,
        'doc_id,name,indications\ndes,Descartes-08,"[""juvenile dermatomyositis""]"\nkyv,KYV-101,"[""myasthenia gravis""]"\n',
    )
    code, out, _ = cli(capsys, monkeypatch, "sql", q, "--db", str(db), "--format", "json")
    assert json.loads(out)[1] == {"doc_id": "kyv", "name": "KYV-101", "indications": ["myasthenia gravis"]}
    code, out, _ = cli(capsys, monkeypatch, "sql", q, "--db", str(db), "--format", "markdown")
    assert out.splitlines()[2] == '| des | Descartes-08 | ["juvenile dermatomyositis"] |'
    code, out, _ = cli(capsys, monkeypatch, "sql", q, "--db", str(db))
    assert code == 0 and "Descartes-08" in out and "2 rows" in out
    (tmp_path / "q.sql").write_text("SELECT count(*) AS n FROM runs", encoding="utf-8")
    code, out, _ = cli(capsys, monkeypatch, "sql", "q.sql", "--db", str(db), "-f", "csv")
    assert (code, out) == (0, "n\n1\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT name FROM therapies WHERE doc_id = $d"))
    code, out, _ = cli(capsys, monkeypatch, "sql", "-", "--db", str(db), "-f", "csv", "--param", "d=kyv")
    assert (code, out) == (0, "name\nKYV-101\n")
    code, out, _ = cli(capsys, monkeypatch, "sql", "--tables", "--db", str(db))
    assert code == 0 and "regulatory_events" in out and "llm_calls" in out


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELEC 1", 'error: Parser Error: syntax error at or near "SELEC"\n'),
        ("SELECT * FROM nope", "error: Catalog Error: Table with name nope does not exist!"),
        ("DROP TABLE runs", "error: Invalid Input Error: Cannot execute statement of type"),
    ],
)
def test_cli_bad_sql_is_one_line_and_exit_1(
    tmp_path: Path,
    db: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sql: str,
    message: str,
) -> None:
    build(tmp_path, db)
    code, out, err = cli(capsys, monkeypatch, "sql", sql, "--db", str(db))
    assert code == 1 and out == ""
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM runs").fetchone() == (1,)


def test_cli_missing_database(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = cli(capsys, monkeypatch, "sql", "SELECT 1", "--db", "nope.duckdb")
    assert code == 1 and err.startswith("error: database nope.duckdb does not exist")
    code, _, err = cli(capsys, monkeypatch, "sql", "SELECT 1", "--db", "nope.duckdb", "--write")
    assert code == 1 and not Path("nope.duckdb").exists()


def test_offsets_slice_document_text_in_sql(tmp_path: Path, db: Path) -> None:
    """Offsets are 0-based Python offsets; SQL's substr is 1-based (the README's example)."""
    build(tmp_path, db)
    rows = query(
        db,
        "SELECT substr(d.text, v.evidence_start + 1, v.evidence_end - v.evidence_start) = v.evidence AS same "
        "FROM regulatory_events v JOIN documents d USING (doc_id, doc_sha256)",
    )
    assert rows == [{"same": True}]


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_queries() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Querying with SQL", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, re.DOTALL)


def test_readme_queries_run(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    queries = readme_queries()
    assert len(queries) >= 5
    results = [run_query(db, q, params={"doc": "des"} if "$doc" in q else None) for q in queries]
    fda, one_doc, runs, conditions = results[:4]
    assert fda.rows == [("Descartes-08", "Rare Pediatric Disease Designation", "juvenile dermatomyositis", None, "des")]
    assert [r[:2] for r in one_doc.rows] == [
        ("article", "Descartes-08 Receives Designation"),
        ("regulatory_events", "FDA · Rare Pediatric Disease Designation · Descartes-08"),
        ("therapies", "Descartes-08"),
    ]
    assert len(runs.rows) == 1 and runs.columns[0] == "run_id"
    assert conditions.rows == [("myasthenia gravis", 1, ["KYV-101"])]
    assert all(r.columns for r in results)
