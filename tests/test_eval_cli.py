"""``pipeline eval`` end to end on a database written through FakeProvider."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.main import main
from pipeline.core.schema import load_schema
from pipeline.evaluate import GoldError, evaluate, load_gold
from pipeline.store import Store
from pipeline.store import db as store_db
from pipeline.store.migrations import MIGRATIONS
from tests.conftest import FakeProvider
from tests.test_extract_store import GOOD, extract, rows, write_doc

TYPES = [rt.name for rt in load_schema("biomedical").record_types]
GOLD_KYV = {
    "therapies": [
        {"name": "KYV-101", "target": "CD19", "indications": [["myasthenia gravis", "MG"]], "developer": "Kyverna"}
    ],
    "conditions": [{"name": "myasthenia gravis"}],
    "organizations": [{"name": "Kyverna Therapeutics", "kind": "company"}],
}


def write_gold(gold_dir: Path, doc_id: str, records: dict[str, Any]) -> Path:
    gold_dir.mkdir(parents=True, exist_ok=True)
    path = gold_dir / f"{doc_id}.json"
    path.write_text(json.dumps({"doc_id": doc_id, "records": {t: records.get(t, []) for t in TYPES}}))
    return path


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Run the console script in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["pipeline", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One extraction for the module: 'kyv' and 'other' through the fake."""
    base = tmp_path_factory.mktemp("extracted")
    fake = FakeProvider([GOOD, GOOD])
    summary = extract([write_doc(base, "kyv.txt"), write_doc(base, "other.txt")], base / "pipeline.duckdb", fake)
    return base, summary.run_id


@pytest.fixture
def setup(tmp_path: Path, db: Path, extracted: tuple[Path, str]) -> dict[str, Any]:
    """A copy of the extracted database; gold for 'kyv' and 'absent' (not in the run), none for 'other'."""
    base, run_id = extracted
    shutil.copy(base / "pipeline.duckdb", db)
    shutil.copytree(base / "docs", tmp_path / "docs")
    gold = tmp_path / "gold"
    write_gold(gold, "kyv", GOLD_KYV)
    write_gold(gold, "absent", {"conditions": [{"name": "lupus"}]})
    return {"run_id": run_id, "gold": gold, "docs": tmp_path / "docs", "db": db}


def eval_args(setup: dict[str, Any]) -> list[str]:
    return ["eval", "--db", str(setup["db"]), "--gold", str(setup["gold"]), "--docs", str(setup["docs"])]


def test_json_report_shape_and_values(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = cli(capsys, monkeypatch, *eval_args(setup), "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    required = {"run_id", "mode", "micro", "macro_f1", "per_type", "per_field", "grounding_rate", "documents"}
    assert required <= set(report)
    assert (report["run_id"], report["mode"], report["include_ungrounded"]) == (setup["run_id"], "lenient", False)
    # kyv: therapy and condition found, the organization's evidence is not in the text, so it is not scored
    # and the gold organization is missed; absent: its one condition is missed
    assert report["micro"] == {
        "precision": 1.0, "recall": 0.5, "f1": 2 / 3, "tp": 2, "fp": 0, "fn": 2,
        "undergeneration": 0.5, "overgeneration": 0.0,
    }  # fmt: skip
    assert {t: s for t, s in report["per_type"].items() if s["tp"] + s["fp"] + s["fn"]} == {
        "therapies": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 1, "fp": 0, "fn": 0},
        "conditions": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "tp": 1, "fp": 0, "fn": 1},
        "organizations": {"precision": 1.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 1},
    }
    assert report["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    assert {f: s for f, s in report["per_field"]["therapies"].items() if s["total"]} == {
        "name": {"accuracy": 1.0, "correct": 1.0, "total": 1},
        "target": {"accuracy": 1.0, "correct": 1.0, "total": 1},
        "developer": {"accuracy": 0.0, "correct": 0.0, "total": 1},  # gold states it, prediction does not
        "indications": {"accuracy": 1.0, "correct": 1.0, "total": 1},
    }
    # 2 documents x 3 records, the organization in each ungrounded
    assert report["grounding"] == {"rate": 4 / 6, "grounded": 4, "total": 6, "flag_disagrees": 0}
    assert report["grounding_rate"] == 4 / 6
    assert (report["unscored"], report["missing_documents"]) == (["other"], ["absent"])
    assert set(report["documents"]) == {"kyv", "absent"}
    assert set(report["documents"]["kyv"]) == set(TYPES)
    kyv_orgs = report["documents"]["kyv"]["organizations"]
    assert kyv_orgs == {
        "found": [],
        "missed": [{"gold_index": 0, "key": {"name": "Kyverna Therapeutics"}, "record_id": None, "similarity": None}],
        "spurious": [],
        "absorbed": [],
    }
    assert report["documents"]["absent"]["conditions"]["missed"][0]["key"] == {"name": "lupus"}


def test_include_ungrounded_scores_the_organization(setup: dict[str, Any]) -> None:
    report = evaluate(
        db=setup["db"], gold_dir=setup["gold"], docs_dir=setup["docs"], include_ungrounded=True, save=False
    )
    assert report.per_type["organizations"].model_dump() == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 1, "fp": 0, "fn": 0,
    }  # fmt: skip
    assert report.eval_id == f"{setup['run_id']}:{report.gold_hash}:lenient:all"


def test_table_output(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = cli(capsys, monkeypatch, *eval_args(setup))
    assert code == 0
    assert "micro" in out and "0.67" in out
    assert "absent (not in the run: everything missed)" in out
    assert "missed   organizations: Kyverna Therapeutics" in out
    assert "unscored (no gold file): other" in out


def eval_counts(db: Path) -> dict[str, int]:
    with Store(db) as store:
        counts = store.table_counts()
    return {t: n for t, n in counts.items() if t.startswith("eval_")}


def test_rescoring_replaces_never_duplicates(setup: dict[str, Any]) -> None:
    args = {"db": setup["db"], "gold_dir": setup["gold"], "docs_dir": setup["docs"]}
    first = evaluate(**args)
    once = eval_counts(setup["db"])
    n_fields = sum(len(rt.value_fields) for rt in load_schema("biomedical").record_types)
    assert once == {"eval_runs": 1, "eval_type_scores": 10, "eval_field_scores": n_fields, "eval_items": 4}
    second = evaluate(**args)
    assert eval_counts(setup["db"]) == once
    assert second.model_dump() == first.model_dump()
    stored = rows(setup["db"], "SELECT eval_id, run_id, gold_hash, mode, micro_f1, n_missing_documents FROM eval_runs")
    assert stored == [(first.eval_id, setup["run_id"], first.gold_hash, "lenient", 2 / 3, 1)]
    assert rows(setup["db"], "SELECT outcome, count(*) FROM eval_items GROUP BY outcome ORDER BY outcome") == [
        ("found", 2),
        ("missed", 2),
    ]
    evaluate(**args, mode="strict")
    write_gold(setup["gold"], "absent", {"conditions": [{"name": "lupus nephritis"}]})
    changed = evaluate(**args)
    assert changed.gold_hash != first.gold_hash
    assert eval_counts(setup["db"])["eval_runs"] == 3


def test_compare_two_runs(
    tmp_path: Path, db: Path, fake: FakeProvider, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = write_doc(tmp_path)
    fake.push(GOOD, {**GOOD, "conditions": []})
    run_a = extract([doc], db, fake).run_id
    # another config and --refresh (the response cache would otherwise serve run A's answer)
    run_b = extract([doc], db, fake, max_chunk_tokens=200, refresh=True).run_id
    gold = tmp_path / "gold"
    write_gold(gold, "kyv", GOLD_KYV)
    base = ["eval", "--db", str(db), "--gold", str(gold), "--docs", str(tmp_path / "docs")]
    code, out, err = cli(capsys, monkeypatch, *base, "--compare", run_a, run_b, "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["lost"] == [
        {"doc_id": "kyv", "record_type": "conditions", "gold_index": 0, "key": {"name": "myasthenia gravis"}}
    ]
    assert result["gained"] == []
    assert result["per_type"]["conditions"] == {"a": 1.0, "b": 0.0, "delta": -1.0}
    assert result["per_type"]["therapies"] == {"a": 1.0, "b": 1.0, "delta": 0.0}
    code, out, _ = cli(capsys, monkeypatch, *base, "--compare", run_a, run_b)
    assert code == 0 and "found only by A" in out and "kyv conditions: myasthenia gravis" in out


BAD_GOLD = [
    ("{not json", "is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
    (json.dumps({"doc_id": "kyv", "records": {"drugs": []}}), "unknown record type 'drugs' -- use the types of"),
    (
        json.dumps({"doc_id": "kyv", "records": {t: [{"target": "CD19"}] if t == "therapies" else [] for t in TYPES}}),
        "therapies[0] is missing key field 'name'",
    ),
    (json.dumps({"doc_id": "kyv", "records": {"article": []}}), "record type 'people' is missing"),
    (
        json.dumps({"doc_id": "kyv", "records": {t: [{"nme": "x"}] if t == "people" else [] for t in TYPES}}),
        "people[0] has unknown field 'nme'",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_GOLD)
def test_bad_gold_file_is_one_line_error(
    setup: dict[str, Any],
    content: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (setup["gold"] / "kyv.json").write_text(content)
    with pytest.raises(GoldError, match=re.escape(message)):
        load_gold(load_schema("biomedical"), setup["gold"])
    code, out, err = cli(capsys, monkeypatch, *eval_args(setup))
    assert code == 1 and out == ""
    assert err.startswith("error: gold file ") and message in err and " -- " in err
    assert err.count("\n") == 1
    assert "eval_runs" not in eval_counts(setup["db"]) or eval_counts(setup["db"])["eval_runs"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gold", "nowhere"], "error: gold directory nowhere does not exist -- pass --gold DIR"),
        (["--mode", "fuzzy"], "error: unknown mode 'fuzzy' -- use one of: lenient, strict"),
        (["--run", "nope"], "error: no run 'nope' in"),
        (["--db", "missing.duckdb"], "error: database missing.duckdb does not exist"),
        (["--docs", "nowhere"], "error: docs directory nowhere does not exist"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    setup: dict[str, Any],
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = {"--db": str(setup["db"]), "--gold": str(setup["gold"]), "--docs": str(setup["docs"])}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    code, _, err = cli(capsys, monkeypatch, "eval", *[x for kv in base.items() for x in kv])
    assert code == 1 and err.startswith(message) and err.count("\n") == 1
    assert not Path("missing.duckdb").exists()


def test_eval_tables_migrate_from_the_oldest_schema(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_db, "MIGRATIONS", MIGRATIONS[:1])
    with Store(db) as store:
        store.con.execute("INSERT INTO runs (run_id, started_at, status) VALUES ('r1', now(), 'completed')")
    monkeypatch.setattr(store_db, "MIGRATIONS", MIGRATIONS)
    with Store(db):
        pass
    assert rows(db, "SELECT name FROM _migrations ORDER BY name") == [(name,) for name, _ in MIGRATIONS]
    assert rows(db, "SELECT run_id FROM runs") == [("r1",)]
    assert rows(db, "SELECT count(*) FROM eval_runs") == [(0,)]
