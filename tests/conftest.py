"""Shared fixtures. Every path and database lives in a per-test temporary directory."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from pipeline.providers.base import Provider

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "evals" / "docs"
SEED_000 = SEEDS / "000_f035196669275c73.txt"
SEED_003 = SEEDS / "003_15b3c25d52d80357.txt"


class Cut(str):
    """A queued output the model stopped writing at ``max_tokens`` (finish_reason "length")."""


def completion(content: str, prompt_tokens: int = 10, completion_tokens: int = 5) -> ChatCompletion:
    finish = "length" if isinstance(content, Cut) else "stop"
    return ChatCompletion.model_validate(
        {
            "id": "fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "fake",
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content}}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


class FakeProvider(Provider):
    """The real provider interface with queued outputs: str/dict (a completion) or an exception."""

    model_id = "fake:queued"

    def __init__(self, outputs: list[Any] | None = None, default: Any = None) -> None:
        super().__init__()
        self.outputs: deque[Any] = deque(outputs or [])
        self.default = default
        self.requests: list[dict[str, Any]] = []

    def push(self, *outputs: Any) -> None:
        self.outputs.extend(outputs)

    def create(self, **kwargs: Any) -> ChatCompletion:
        self.requests.append(kwargs)
        out = self.outputs.popleft() if self.outputs else self.default
        if out is None:
            raise AssertionError("FakeProvider: no queued output left")
        if isinstance(out, BaseException):
            raise out
        if not isinstance(out, str):
            out = json.dumps(out)
        return completion(out)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.fixture
def fake() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pipeline.duckdb"


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama_cpp.server on loopback for the whole session; its /v1 base URL."""
    from tests.realserver import llama_server as start

    with start(tmp_path_factory.mktemp("llama_server")) as url:
        yield url
