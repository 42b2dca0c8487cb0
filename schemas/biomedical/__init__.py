"""The biomedical domain: therapies, trials, regulatory events and the rest of
../shared/spec/extraction-spec.md, for news, press releases, PubMed pages and trial records.

Everything the pipeline knows about this domain is here, handed over as ``DOMAIN``:

- ``model.py``: the pydantic record types (``Biomedical``);
- ``candidates.py``: candidate kinds (conditions, therapies, organizations, ...);
- ``normalize.py``: citation markers stripped before values are compared;
- ``cleaning.py``: PubMed page furniture the text cleaner drops;
- ``fill.py``: how records are completed after ``rules``: parsers and cue rules, and the fields
  the embedded model ranks (examples in ``prompts/fill/``);
- ``prompts/``: ``direct.j2`` and the few-shot examples of ``fewshot``/``select``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.domain import Domain
from schemas.biomedical.candidates import KINDS
from schemas.biomedical.cleaning import CLEANING
from schemas.biomedical.fill import FILL
from schemas.biomedical.model import Biomedical
from schemas.biomedical.normalize import strip_citation_marker

__all__ = ["DOMAIN", "Biomedical"]

DOMAIN = Domain(
    model=Biomedical,
    name="biomedical",
    prompts=Path(__file__).parent / "prompts",
    candidates=KINDS,
    normalize=strip_citation_marker,
    cleaning=CLEANING,
    strategy="rules",
    fill=FILL,
)
