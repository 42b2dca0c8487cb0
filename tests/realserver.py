"""A real ``llama_cpp.server`` on loopback serving the embedded model, and a tiny schema and
one-shot prompt that keep each real generation to a few dozen tokens."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

SCHEMA = """
from pydantic import BaseModel, ConfigDict, Field

class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=60, json_schema_extra={"key": True})
    evidence: str = Field(min_length=1, max_length=120)

class Conditions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conditions: list[Condition] = Field(default_factory=list, max_length=2)
"""

PROMPT = """## system
List the diseases named in the text, as JSON.
## user
Text: Rituximab is used in rheumatoid arthritis.
## assistant
{"conditions": [{"name": "rheumatoid arthritis", "evidence": "Rituximab is used in rheumatoid arthritis."}]}
## user
Text: {{ text }}
"""

#: CLI flags for the real server: llama.cpp grammar form, Gemma's missing system role, short
#: outputs, and a timeout that allows for 2 CPU cores shared with other work
SERVER_FLAGS = ["--response-format", "json_object", "--fold-system", "--max-tokens", "96", "--timeout", "240"]


def write_tiny(tmp_path: Path) -> tuple[str, str]:
    """(schema spec, prompt path) for the tiny conditions schema."""
    (tmp_path / "conds.py").write_text(SCHEMA, encoding="utf-8")
    (tmp_path / "conds.j2").write_text(PROMPT, encoding="utf-8")
    return f"{tmp_path / 'conds.py'}:Conditions", str(tmp_path / "conds.j2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(log_dir: Path, startup_s: float = 180.0) -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` on a free loopback port; yield its /v1 base URL."""
    from pipeline.providers.local import default_model_path

    port = free_port()
    log = log_dir / "llama_server.log"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_model_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chat_format",
        "gemma",
        "--n_ctx",
        "2048",
        "--n_threads",
        "2",
        "--verbose",
        "False",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer in {startup_s}s: {log.read_text()[-2000:]}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
