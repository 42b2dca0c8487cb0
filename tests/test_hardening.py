"""Hardening: `pipeline sql` kept inside its database, typed parameters, repeated and unsupported
input files, one-line errors from `export --out` and `report --out`, `eval --compare` edge cases,
and a quiet embedded model. Each test names the failure it guards against."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from pipeline.core.errors import InputError, ProviderError
from pipeline.ingest import SUFFIXES, read_documents
from pipeline.sql import QueryError, parse_params, run_query
from tests.conftest import ROOT, FakeProvider
from tests.records_db import DES, DES_OUT, KYV, KYV_OUT, build, extract, write_docs
from tests.test_sql import cli


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def count(db: Path, table: str) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


# -- pipeline sql stays inside its database (findings 1-3) ----------------------------


@pytest.mark.parametrize("write", [False, True])
def test_sql_cannot_attach_and_change_other_databases(tmp_path: Path, db: Path, write: bool) -> None:
    build(tmp_path, db)
    other = duckdb.connect(str(tmp_path / "other.duckdb"))
    other.execute("CREATE TABLE v AS SELECT 1 AS x")
    other.close()
    os.link(db, tmp_path / "self.duckdb")  # the --db file under another name
    therapies = count(db, "rec_therapies")
    for sql in (
        "ATTACH 'other.duckdb' AS n (READ_WRITE); DROP TABLE n.v",
        "ATTACH 'new.duckdb' AS n (READ_WRITE); CREATE TABLE n.t AS SELECT 1",
        "ATTACH 'self.duckdb' AS self (READ_WRITE); DELETE FROM self.rec_therapies",
    ):
        with pytest.raises(QueryError, match="disabled by configuration -- "):
            run_query(db, sql, write=write)
    assert count(tmp_path / "other.duckdb", "v") == 1
    assert not (tmp_path / "new.duckdb").exists()
    assert count(db, "rec_therapies") == therapies > 0


@pytest.mark.parametrize("write", [False, True])
@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO 'x.csv'",
        "EXPORT DATABASE 'dump'",
        "SET log_query_path = 'q.log'; SELECT 1",
        "PRAGMA profiling_output = 'p.txt'",
        "SELECT * FROM read_csv('data.csv')",
    ],
)
def test_sql_writes_and_reads_no_files(tmp_path: Path, db: Path, sql: str, write: bool) -> None:
    build(tmp_path, db)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    before = files_under(tmp_path)
    with pytest.raises(QueryError):
        run_query(db, sql, write=write)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("write", [False, True])
def test_sql_installs_and_loads_no_extension(tmp_path: Path, db: Path, write: bool) -> None:
    """No download is tried: DuckDB refuses by configuration (a download fails differently)."""
    build(tmp_path, db)
    for sql in ("INSTALL httpfs", "LOAD httpfs", "ATTACH 'x.sqlite' (TYPE sqlite)"):
        with pytest.raises(QueryError, match=r"disabled (by|through) configuration"):
            run_query(db, sql, write=write)
    settings = run_query(
        db,
        "SELECT current_setting('enable_external_access'), current_setting('autoinstall_known_extensions'), "
        "current_setting('autoload_known_extensions'), current_setting('allow_community_extensions'), "
        "current_setting('lock_configuration')",
        write=write,
    )
    assert settings.rows == [(False, False, False, False, True)]
    for sql in (
        "SET enable_external_access = true",
        "RESET lock_configuration",
        "SET autoinstall_known_extensions = 1",
    ):
        with pytest.raises(QueryError, match="the configuration has been locked -- "):
            run_query(db, sql, write=write)


def test_sql_write_still_changes_the_database(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    run_query(db, "CREATE TABLE notes AS SELECT 1 AS x; INSERT INTO notes VALUES (2)", write=True)
    assert run_query(db, "SELECT sum(x) FROM notes").rows == [(3,)]
    with pytest.raises(QueryError, match="read-only"):
        run_query(db, "DROP TABLE notes")


def test_sandbox_ends_with_the_query(tmp_path: Path, db: Path) -> None:
    """The settings die with the query's database instance: export and extract still write files."""
    from pipeline.export import run_export
    from pipeline.store import Store

    build(tmp_path, db)
    run_query(db, "SELECT 1")
    run_query(db, "SELECT 1", write=True)
    assert len(run_export(db=db, out=tmp_path / "out", fmt="csv").files) > 0
    with Store(db) as store:
        assert store.con.execute("SELECT current_setting('enable_external_access')").fetchone() == (True,)


def test_sql_cli_refusal_is_one_line(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path, db)
    code, out, err = cli(capsys, monkeypatch, "sql", "COPY runs TO 'runs.csv'", "--db", str(db))
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith("error: Permission Error: ") and "pipeline export" in err
    assert not (tmp_path / "runs.csv").exists()


# -- --param (finding 11) ---------------------------------------------------------


@pytest.fixture
def numbered_db(tmp_path: Path, db: Path) -> Path:
    """Documents whose ids look like numbers: '007' and '000_f035196669275c73'."""
    docs = write_docs(tmp_path, {"000_f035196669275c73.txt": DES, "007.txt": KYV})
    extract([docs], db, FakeProvider([DES_OUT, KYV_OUT]))
    return db


def test_param_takes_a_type_from_the_query(numbered_db: Path) -> None:
    def rows(sql: str, **params: str) -> list[tuple[object, ...]]:
        return run_query(numbered_db, sql, params=params).rows

    assert rows("SELECT $n + 1", n="41") == [(42,)]
    assert rows("SELECT $x * 2", x="1.25") == [(Decimal("2.50"),)]
    assert rows("SELECT 10 > $x, 10 < $y", x="9.5", y="10.4") == [(True, True)]  # not rounded to 10
    assert rows("SELECT $n + 1, $s || '!'", n="-3", s="hi") == [(-2, "hi!")]
    # text where the query compares with text: the id keeps its leading zeros
    assert rows("SELECT doc_id FROM documents WHERE doc_id = $id", id="007") == [("007",)]
    assert rows("SELECT doc_id FROM documents WHERE doc_id = $id", id="7") == []
    assert rows("SELECT doc_id FROM documents WHERE doc_id = $doc", doc="000_f035196669275c73") == [
        ("000_f035196669275c73",)
    ]
    # a number where the query compares with a number
    assert rows("SELECT count(*) FROM documents WHERE length(doc_id) = $n", n="3") == [(1,)]
    assert rows("SELECT count(*) FROM documents WHERE length(doc_id) > $n", n="2.5") == [(2,)]
    assert rows("SELECT doc_id FROM documents ORDER BY doc_id LIMIT $k", k="1") == [("000_f035196669275c73",)]
    with pytest.raises(QueryError, match=r"write CAST\(\$name AS INTEGER\)"):
        rows("SELECT $n + 1", n="forty-one")


def test_param_repeated_is_an_error_and_unused_a_warning(
    numbered_db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InputError, match="--param n given twice"):
        parse_params(["n=1", "n=2"])
    q = "SELECT doc_id FROM documents WHERE doc_id = $id"
    code, out, err = cli(capsys, monkeypatch, "sql", q, "--db", str(numbered_db), "-f", "csv", "--param", "id=007")
    assert (code, out, err) == (0, "doc_id\n007\n", "")
    code, out, err = cli(
        capsys, monkeypatch, "sql", "SELECT $n + 1 AS m", "--db", str(numbered_db), "-f", "csv", "--param", "n=41"
    )
    assert (code, out, err) == (0, "m\n42\n", "")
    args = ["sql", q, "--db", str(numbered_db), "-f", "csv", "--param", "id=007"]
    code, out, err = cli(capsys, monkeypatch, *args, "--param", "id=000_f035196669275c73")
    assert (code, out) == (1, "")
    assert err == "error: --param id given twice -- pass each name once\n"
    code, out, err = cli(capsys, monkeypatch, *args, "--param", "extra=1")
    assert (code, out) == (0, "doc_id\n007\n")
    assert err == "warning: --param extra is not used by the query (no $extra in it)\n"


# -- extract input (findings 4 and 10) ----------------------------------------------


def test_same_file_twice_is_read_once_with_a_warning(tmp_path: Path, db: Path) -> None:
    folder = write_docs(tmp_path)
    des = folder / "des.txt"
    docs = read_documents([des, des])
    assert [d.doc_id for d in docs] == ["des"]
    assert docs[0].warnings == [f"{des} given twice: read once"]
    # a folder and a file in it, the file spelled another way
    docs = read_documents([folder, Path(os.path.relpath(des))])
    assert [d.doc_id for d in docs] == ["des", "kyv"]
    assert any("given twice: read once" in w for d in docs for w in d.warnings)
    summary = extract([folder, des], db, FakeProvider([DES_OUT, KYV_OUT]))
    assert summary.status == "completed" and summary.documents == 2
    assert count(db, "documents") == 2


def test_two_files_with_one_stem_fail_before_the_database_exists(tmp_path: Path, db: Path) -> None:
    write_docs(tmp_path)
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "des.txt").write_text(DES + "\nAnother text.", encoding="utf-8")
    with pytest.raises(InputError, match="two documents share the id 'des'"):
        extract([tmp_path / "docs", tmp_path / "more"], db, FakeProvider([DES_OUT, KYV_OUT]))
    assert not db.exists()


def test_cli_same_file_twice(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_bad_input import run_cli

    fake = FakeProvider([DES_OUT])
    monkeypatch.setattr("pipeline.batch.get_provider", lambda model, **kw: fake)
    des = write_docs(tmp_path) / "des.txt"
    code, out, err = run_cli([str(des), str(des), "--db", str(db), "--model", "fake"], capsys, monkeypatch)
    assert code == 0 and "Traceback" not in err, err
    assert f"warning: {des} given twice: read once" in " ".join(out.split())


def test_unsupported_files_in_a_folder_are_named(tmp_path: Path) -> None:
    folder = write_docs(tmp_path)
    (folder / "paper.docx").write_bytes(b"PK\x03\x04")
    (folder / "sub").mkdir()
    (folder / "sub" / "scan.xyz").write_bytes(b"%XYZ")
    (folder / "sub" / "other.xyz").write_bytes(b"%XYZ")
    (folder / ".hidden").write_text("editor state", encoding="utf-8")
    docs = read_documents([folder])
    assert [d.doc_id for d in docs] == ["des", "kyv"]
    warnings = [w for d in docs for w in d.warnings]
    supported = ", ".join(sorted(SUFFIXES))
    assert warnings == [f"{folder}: 3 files skipped (.docx 1, .xyz 2): the supported types are {supported}"]


def test_folder_without_supported_files_names_the_supported_types(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.xyz").write_bytes(b"x")
    supported = ", ".join(sorted(SUFFIXES))
    with pytest.raises(InputError, match=re.escape(f"no documents of a supported type ({supported})")):
        read_documents([tmp_path / "d"])


# -- export --out and report --out (finding 8) --------------------------------------


def test_export_out_that_is_not_a_folder_is_one_line(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path, db)
    (tmp_path / "taken").write_text("keep me", encoding="utf-8")
    for out, problem in (
        ("taken", "--out taken is a file"),
        ("taken/sub", "cannot write taken/sub"),
    ):
        code, stdout, err = cli(capsys, monkeypatch, "export", "--db", str(db), "--out", out)
        assert (code, stdout) == (1, ""), err
        assert err.startswith(f"error: {problem}") and " -- " in err and err.count("\n") == 1, err
    assert (tmp_path / "taken").read_text(encoding="utf-8") == "keep me"
    (tmp_path / "x" / "therapies.parquet").mkdir(parents=True)  # a folder where a file goes
    code, stdout, err = cli(capsys, monkeypatch, "export", "--db", str(db), "--out", "x")
    assert code == 1 and err.startswith("error: cannot write ") and err.count("\n") == 1, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_export_out_without_permission_is_one_line(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path, db)
    (tmp_path / "ro").mkdir(mode=0o500)
    code, _, err = cli(capsys, monkeypatch, "export", "--db", str(db), "--out", "ro/x")
    assert code == 1 and err.startswith("error: cannot write ro/x") and err.count("\n") == 1, err


def test_report_out_that_is_a_folder_is_one_line(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    build(tmp_path, db)
    (tmp_path / "site").mkdir()
    (tmp_path / "taken").write_text("keep me", encoding="utf-8")
    for out, problem in (("site", "--out site is a folder"), ("taken/r.html", "cannot write taken/r.html")):
        code, stdout, err = cli(capsys, monkeypatch, "report", "--db", str(db), "--out", out)
        assert (code, stdout) == (1, ""), err
        assert err.startswith(f"error: {problem}") and " -- " in err and err.count("\n") == 1, err
    assert list((tmp_path / "site").iterdir()) == []


# -- eval --compare (finding 12) ----------------------------------------------------


def test_eval_compare_of_one_run_says_so(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_eval_cli import GOLD_KYV, write_gold
    from tests.test_extract_store import GOOD, write_doc

    run = extract([write_doc(tmp_path)], db, FakeProvider([GOOD])).run_id
    write_gold(tmp_path / "gold", "kyv", GOLD_KYV)
    base = ["eval", "--db", str(db), "--gold", "gold", "--docs", "docs"]
    code, out, err = cli(capsys, monkeypatch, *base, "--compare", run, "latest")
    assert code == 0 and "+0.00" in out
    assert err == f"warning: A and B are the same run {run}: every delta is 0\n"
    code, out, err = cli(capsys, monkeypatch, *base, "--compare", run, run, "--json")
    assert code == 0 and json.loads(out)["run_a"] == run and "same run" in err


def test_eval_run_with_compare_is_rejected(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_eval_cli import GOLD_KYV, write_gold
    from tests.test_extract_store import GOOD, write_doc

    run = extract([write_doc(tmp_path)], db, FakeProvider([GOOD])).run_id
    write_gold(tmp_path / "gold", "kyv", GOLD_KYV)
    base = ["eval", "--db", str(db), "--gold", "gold", "--docs", "docs"]
    code, out, err = cli(capsys, monkeypatch, *base, "--run", run, "--compare", run, "latest")
    assert (code, out) == (1, "")
    assert err == "error: --run and --compare both given -- --compare RUN_A RUN_B names both runs; drop --run\n"


# -- the embedded model is quiet (finding 9) ------------------------------------------


@pytest.mark.model
def test_extract_with_the_embedded_model_prints_nothing_on_stderr(tmp_path: Path) -> None:
    doc = write_docs(tmp_path, {"kyv.txt": KYV}) / "kyv.txt"
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "extract", str(doc), "--db", str(tmp_path / "x.duckdb"), "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert (r.returncode, r.stderr) == (0, "")
    assert "(completed)" in r.stdout


@pytest.mark.model
def test_embedded_model_generation_prints_nothing(tmp_path: Path) -> None:
    code = (
        "from pipeline.providers.local import LocalProvider\n"
        "p = LocalProvider(n_threads=1)\n"
        "r = p.create(messages=[{'role': 'user', 'content': 'Say hi.'}], max_tokens=3, temperature=0)\n"
        "print(r.usage.completion_tokens > 0)\n"
        "p.close()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "True\n", "")


def test_a_model_file_llama_cpp_cannot_load_is_a_provider_error(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    from pipeline.providers.local import LocalProvider

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ProviderError, match=r"cannot load the model .*bad\.gguf.* -- "):
        _ = LocalProvider(model_path=str(bad)).llama
