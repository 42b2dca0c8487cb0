from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.core.errors import InputError, StoreError
from pipeline.core.schema import load_schema
from pipeline.export import run_export
from pipeline.sql import run_query
from tests.conftest import FakeProvider
from tests.records_db import KYV_OUT, build, extract, write_docs

RECORD_TYPES = [rt.name for rt in load_schema("biomedical").record_types]


def view_rows(db: Path, view: str) -> list[dict[str, Any]]:
    result = run_query(db, f"SELECT * FROM {view} ORDER BY doc_id, evidence_start")
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def read_back(path: Path) -> list[dict[str, Any]]:
    con = duckdb.connect()
    cur = con.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY doc_id, evidence_start")
    return [dict(zip([d[0] for d in cur.description], row, strict=True)) for row in cur.fetchall()]


def test_parquet_one_file_per_record_type_equal_to_the_views(tmp_path: Path, db: Path) -> None:
    summary = build(tmp_path, db)
    out = tmp_path / "export"
    result = run_export(db=db, out=out, fmt="parquet")
    assert result.run_id == summary.run_id
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.parquet" for t in RECORD_TYPES)
    assert {t: n for t, (_, n) in result.files.items()} == {t: len(view_rows(db, t)) for t in RECORD_TYPES}
    for t in ("therapies", "regulatory_events", "conditions", "article"):
        assert read_back(out / f"{t}.parquet") == view_rows(db, t), t


def test_csv_and_jsonl(tmp_path: Path, db: Path) -> None:
    build(tmp_path, db)
    run_export(db=db, out=tmp_path / "csv", fmt="csv")
    with (tmp_path / "csv" / "therapies.csv").open(newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["doc_id"])
    assert [(r["name"], json.loads(r["indications"]), r["evidence_start"]) for r in rows] == [
        ("Descartes-08", ["juvenile dermatomyositis"], str(view_rows(db, "therapies")[0]["evidence_start"])),
        ("KYV-101", ["myasthenia gravis"], "0"),
    ]
    assert (tmp_path / "csv" / "people.csv").read_text(encoding="utf-8").startswith("doc_id,name,credentials,")
    run_export(db=db, out=tmp_path / "jsonl", fmt="jsonl")
    lines = (tmp_path / "jsonl" / "regulatory_events.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(view_rows(db, "regulatory_events")))


def test_run_choice_and_ungrounded(tmp_path: Path, db: Path) -> None:
    first = build(tmp_path, db)
    fake = FakeProvider([{**KYV_OUT, "therapies": []}])
    # another configuration (chunk budget), so the first run's stored results stay as they were;
    # --refresh, or the response cache would serve the first run's answer for the same text
    second = extract([write_docs(tmp_path) / "kyv.txt"], db, fake, max_chunk_tokens=200, refresh=True)
    latest = run_export(db=db, out=tmp_path / "latest", fmt="jsonl")
    assert latest.run_id == second.run_id and latest.files["therapies"][1] == 0
    older = run_export(db=db, out=tmp_path / "first", fmt="jsonl", run=first.run_id)
    assert older.files["therapies"][1] == 2
    assert older.files["organizations"][1] == 0
    everything = run_export(db=db, out=tmp_path / "all", fmt="jsonl", run=first.run_id, include_ungrounded=True)
    (org,) = [json.loads(x) for x in (tmp_path / "all" / "organizations.jsonl").read_text().splitlines()]
    assert everything.files["organizations"][1] == 1 and (org["name"], org["grounded"]) == (
        "Kyverna Therapeutics",
        False,
    )


def test_errors(tmp_path: Path, db: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        run_export(db=db, out=tmp_path / "x")
    build(tmp_path, db)
    with pytest.raises(StoreError, match="no run 'nope'"):
        run_export(db=db, out=tmp_path / "x", run="nope")
    with pytest.raises(InputError, match="use one of: parquet, csv, jsonl"):
        run_export(db=db, out=tmp_path / "x", fmt="xlsx")
    assert not (tmp_path / "x").exists()


def test_cli(tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_sql import cli

    summary = build(tmp_path, db)
    code, out, err = cli(capsys, monkeypatch, "export", "--db", str(db), "--out", "x", "--format", "csv")
    assert code == 0 and "x/therapies.csv\t2 therapies" in out.splitlines()
    assert err == f"run {summary.run_id}: 5 records in {len(RECORD_TYPES)} files under x\n"
    code, _, err = cli(capsys, monkeypatch, "export", "--db", str(db), "--out", "x", "--format", "xlsx")
    assert code == 1 and err.startswith("error: unknown export format 'xlsx'")
