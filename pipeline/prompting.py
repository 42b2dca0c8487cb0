"""Prompts are Jinja2 templates, never strings in code.

A schema package keeps its own in ``<package>/prompts/`` (``Domain.prompts``); a schema that
brings none gets the generic templates of ``pipeline/templates/prompts/``, which describe the
schema itself: its record types, each field's description, which fields identify a record,
and the evidence rule.

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
from pipeline.core.schema import Schema

GENERIC_PROMPTS = Path(__file__).parent / "templates" / "prompts"
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


def load_prompt(path: str | Path) -> PromptTemplate:
    """A template file."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"prompt file {path} not found", "check the path")
    return PromptTemplate(path, path.read_text(encoding="utf-8"))


def generic_prompt(name: str) -> PromptTemplate:
    """``pipeline/templates/prompts/<name>.j2``: the prompt built from any schema."""
    return load_prompt(GENERIC_PROMPTS / f"{name}.j2")


def schema_prompt(schema: Schema, name: str, override: str | None = None) -> PromptTemplate:
    """The prompt ``name`` for ``schema``: ``override`` (a .j2 file, or a name in the schema
    package's prompt folder) if given; else the package's ``<name>.j2``; else the generic one."""
    folder = schema.domain.prompts
    if override:
        path = Path(override)
        if not path.suffix and folder is not None:
            path = folder / f"{override}.j2"
        if not path.is_file():
            names = sorted(p.stem for p in folder.glob("*.j2")) if folder and folder.is_dir() else []
            own = f"{', '.join(names)} (in {folder}) or " if names else ""
            raise PipelineError(f"prompt {override!r} not found", f"pass {own}a path to a .j2 file")
        return load_prompt(path)
    if folder is not None and (folder / f"{name}.j2").is_file():
        return load_prompt(folder / f"{name}.j2")
    return generic_prompt(name)
