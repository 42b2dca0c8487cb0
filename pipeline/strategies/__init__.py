"""Extraction strategies: how one chunk becomes records. Chosen with ``--strategy``.

- ``direct`` (``strategies/direct.py``): one schema-constrained call per chunk; the default
  for remote models (OpenAI and compatible servers).
- ``fewshot`` (``strategies/fewshot.py``): one call per record type and sentence, with the
  schema package's examples, values tied to the text.
- ``select`` and ``rules`` (``strategies/candidates.py``): records built from candidate spans
  of the text; ``select`` lets the model choose among them, ``rules`` places them by position
  without a model. On the embedded model the default is the schema package's choice
  (``Domain.strategy``), else ``select``.

The contract every strategy follows is ``strategies/base.py``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.core.schema import Schema
from pipeline.providers.base import Provider
from pipeline.strategies.base import ChunkOutcome, Context, Strategy
from pipeline.strategies.candidates import CandidateStrategy, RulesStrategy, field_specs
from pipeline.strategies.direct import DirectStrategy
from pipeline.strategies.fewshot import FewShotStrategy

__all__ = ["ChunkOutcome", "Context", "Strategy", "default_strategy", "field_specs", "get_strategy"]

STRATEGIES: dict[str, type[Strategy]] = {
    "direct": DirectStrategy,
    "fewshot": FewShotStrategy,
    "select": CandidateStrategy,
    "rules": RulesStrategy,
}
#: the embedded model's strategy for a schema whose package names none
EMBEDDED_DEFAULT = "select"


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise PipelineError(f"unknown strategy {name!r}", f"use one of: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]()


def default_strategy(chosen: str | None, provider: Provider, schema: Schema, prompt: str | None = None) -> str:
    """The user's choice; else ``direct`` when ``--prompt`` names one prompt file (the other
    strategies take a folder of per-type prompts); else the provider's (``direct`` for capable
    models); else, for the embedded model, the schema package's choice or ``select``."""
    if chosen:
        return chosen
    if prompt and Path(prompt).is_file():
        return "direct"
    return provider.default_strategy or schema.domain.strategy or EMBEDDED_DEFAULT
