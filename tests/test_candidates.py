"""Candidate generators and the candidate-constrained strategies (no model)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.batch import ExtractConfig, run_extract
from pipeline.candidates import candidates, is_generic_therapy
from tests.conftest import FakeProvider

TEXT = (
    "The FDA granted Fast Track designation to SC291 in lupus nephritis. "
    "B cells drive disease in many autoimmune diseases, including rheumatoid arthritis. "
    "“We are pleased,” said Dhaval Patel, MD, PhD, of Sana Biotechnology. "
    "The Phase 2 trial is an open-label study called KYSA-6 of KYV-101."
)


def test_generators_find_spans_of_the_text() -> None:
    conditions = set(candidates("condition", TEXT))
    assert {"lupus nephritis", "rheumatoid arthritis"} <= conditions
    assert not conditions & {"autoimmune diseases", "drive disease", "many autoimmune diseases"}  # umbrella classes
    assert candidates("therapy", TEXT) == ["SC291", "KYV-101"]  # KYSA-6 is the trial's name
    assert candidates("person", TEXT) == ["Dhaval Patel"]
    assert candidates("agency", TEXT) == ["FDA"]
    assert "Fast Track designation" in candidates("action", TEXT)
    assert candidates("phase", TEXT) == ["2"]
    assert candidates("date", "Published Jan 4, 2023; updated 2024 Mar 10.") == ["2023-01-04", "2024-03-10"]
    assert is_generic_therapy("CAR T cells") and not is_generic_therapy("ARI-0001")


def test_rules_strategy_is_grounded_and_never_calls_the_model(tmp_path: Path) -> None:
    doc = tmp_path / "docs" / "sana.txt"
    doc.parent.mkdir()
    doc.write_text(TEXT + "\n", encoding="utf-8")
    fake = FakeProvider()  # any call would fail: it has no queued output
    db = tmp_path / "r.duckdb"
    summary = run_extract([doc], db=db, config=ExtractConfig(strategy="rules"), provider=fake, progress=False)
    assert summary.status == "completed" and summary.calls == 0 and fake.requests == []
    con = duckdb.connect(str(db), read_only=True)
    conditions = [r[0] for r in con.execute("SELECT name FROM rec_conditions ORDER BY name").fetchall()]
    events = con.execute("SELECT agency, action, therapy FROM rec_regulatory_events").fetchall()
    ungrounded = sum(
        con.execute(f"SELECT count(*) FROM rec_{t} WHERE NOT grounded").fetchone()[0]  # type: ignore[index]
        for t in ("conditions", "therapies", "people", "regulatory_events", "trials")
    )
    con.close()
    assert conditions == ["lupus nephritis", "rheumatoid arthritis"]  # maximal spans; no umbrella class
    assert ("FDA", "Fast Track designation", "SC291") in events
    assert ungrounded == 0
