"""The worked example in another domain, end to end on the embedded model: a plain pydantic
schema (``schemas/acquisitions``: no DOMAIN, no prompt, no bounds) -> extract -> eval -> sql.

The README's "Worked example" has the scores on all eight documents; this test runs the two
shortest (one call per sentence and record type) and checks what a user gets with no setup:
every chunk done, every stored record grounded, the eval against the hand-written gold, and
the deals view answering a question in SQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.batch import ExtractConfig, run_extract
from pipeline.evaluate import evaluate
from pipeline.sql import run_query
from tests.conftest import ROOT

pytestmark = pytest.mark.model

EXAMPLE = ROOT / "evals" / "acquisitions"
DOCS = ["06_reuters_biomerieux_hyglos", "07_reuters_publicis_relaxnews"]


def test_acquisitions_with_no_setup(tmp_path: Path) -> None:
    docs, gold = tmp_path / "docs", tmp_path / "gold"
    docs.mkdir()
    gold.mkdir()
    for doc_id in DOCS:
        shutil.copy(EXAMPLE / "docs" / f"{doc_id}.txt", docs)
        shutil.copy(EXAMPLE / "gold" / f"{doc_id}.json", gold)
    db = tmp_path / "acq.duckdb"
    summary = run_extract([docs], db=db, config=ExtractConfig(schema="acquisitions"), progress=False)
    assert summary.status == "completed" and summary.chunks_failed == 0
    assert summary.calls > 0 and summary.records["deals"] > 0

    report = evaluate(db=db, gold_dir=gold, docs_dir=docs, save=True)
    assert report.schema_name == "acquisitions" and report.grounding_rate == 1.0
    deals = report.per_type["deals"]
    print(f"acquisitions on {DOCS}: deals {deals}, micro {report.micro}")
    assert deals.tp >= 1  # the bar: above zero with no prompt and no bounds

    found = run_query(db, "SELECT acquirer, target, evidence FROM deals ORDER BY doc_id, evidence_start")
    assert found.columns == ["acquirer", "target", "evidence"] and found.rows
    assert all(a and t and ev for a, t, ev in found.rows)
    stored = run_query(db, "SELECT count(*) FILTER (WHERE NOT grounded) FROM rec_deals")
    assert stored.rows == [(0,)]
