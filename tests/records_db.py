"""A small real pipeline database for the sql, export and report tests.

Built by the real ``run_extract`` with ``FakeProvider``: two documents, one chunk each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.batch import ExtractConfig, RunSummary, run_extract
from tests.conftest import FakeProvider

KYV = "KYV-101 is a CD19 CAR T cell therapy. Kyverna Therapeutics develops KYV-101 for myasthenia gravis."
DES = (
    "Descartes-08 Receives Designation\n\n"
    "The FDA granted Rare Pediatric Disease Designation to Descartes-08 for juvenile dermatomyositis. "
    "Cartesian Therapeutics develops Descartes-08."
)

KYV_OUT: dict[str, Any] = {
    "therapies": [
        {
            "name": "KYV-101",
            "target": "CD19",
            "indications": ["myasthenia gravis"],
            "evidence": "KYV-101 is a CD19 CAR T cell therapy.",
        }
    ],
    "conditions": [{"name": "myasthenia gravis", "evidence": "develops KYV-101 for myasthenia gravis"}],
    # evidence not in the text: stored, but not grounded, so not in the views
    "organizations": [{"name": "Kyverna Therapeutics", "kind": "company", "evidence": "not in the text at all"}],
}
DES_OUT: dict[str, Any] = {
    "article": {"title": "Descartes-08 Receives Designation", "evidence": "Descartes-08 Receives Designation"},
    "therapies": [
        {
            "name": "Descartes-08",
            "developer": "Cartesian Therapeutics",
            "indications": ["juvenile dermatomyositis"],
            "evidence": "Cartesian Therapeutics develops Descartes-08.",
        }
    ],
    "regulatory_events": [
        {
            "agency": "FDA",
            "action": "Rare Pediatric Disease Designation",
            "therapy": "Descartes-08",
            "indication": "juvenile dermatomyositis",
            "evidence": "The FDA granted Rare Pediatric Disease Designation to Descartes-08 for juvenile dermatomyositis.",
        }
    ],
}


def write_docs(root: Path, docs: dict[str, str] | None = None) -> Path:
    folder = root / "docs"
    folder.mkdir(exist_ok=True)
    for name, text in (docs or {"des.txt": DES, "kyv.txt": KYV}).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def extract(paths: list[Path], db: Path, fake: FakeProvider, **cfg: Any) -> RunSummary:
    # the fixtures keep an ungrounded record on purpose; the grounding re-ask has its own tests (test_reground.py)
    cfg.setdefault("reground", False)
    return run_extract(paths, db=db, config=ExtractConfig(**cfg), provider=fake, progress=False)


def build(root: Path, db: Path) -> RunSummary:
    """Extract des.txt and kyv.txt (in that order) into ``db``."""
    fake = FakeProvider([DES_OUT, KYV_OUT])
    summary = extract([write_docs(root)], db, fake)
    assert summary.status == "completed" and summary.calls == 2
    return summary
