"""Prompts live in ``prompts/`` as Jinja2 templates, never as strings in code.

A template renders to chat messages: lines ``## system``, ``## user`` and ``## assistant``
start a new message (assistant turns make few-shot examples). Two hashes are kept:
``template_hash`` (the file, part of the cache key and the run configuration) and
``prompt_hash`` (the exact messages sent, logged with every LLM call).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from pipeline.core.errors import PipelineError
from pipeline.core.schema import PROJECT_ROOT

PROMPTS_DIR = PROJECT_ROOT / "prompts"
ROLE_LINE = re.compile(r"^## (system|user|assistant)\s*$", re.MULTILINE)

Message = dict[str, str]


def messages_hash(messages: list[Message]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PromptTemplate:
    path: Path
    source: str

    @property
    def template_hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def render(self, **context: Any) -> list[Message]:
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
        try:
            rendered = env.from_string(self.source).render(**context)
        except jinja2.TemplateError as exc:
            raise PipelineError(f"prompt {self.path}: {exc}", "fix the template") from exc
        parts = ROLE_LINE.split(rendered)
        messages = [
            {"role": role, "content": body.strip()} for role, body in zip(parts[1::2], parts[2::2], strict=True)
        ]
        if not messages or messages[-1]["role"] != "user":
            raise PipelineError(
                f"prompt {self.path} must end with a '## user' message",
                "add a '## user' section holding the text",
            )
        return messages


def load_prompt(name_or_path: str) -> PromptTemplate:
    """``biomedical/direct`` -> prompts/biomedical/direct.j2; or an explicit file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROMPTS_DIR / f"{name_or_path}.j2"
    if not path.is_file():
        available = ", ".join(sorted(str(p.relative_to(PROMPTS_DIR))[:-3] for p in PROMPTS_DIR.rglob("*.j2")))
        raise PipelineError(f"prompt {name_or_path!r} not found", f"use one of: {available} or a .j2 file path")
    return PromptTemplate(path, path.read_text(encoding="utf-8"))
