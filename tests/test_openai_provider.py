"""The OpenAI-compatible provider: keys, base URLs, request shape, concurrency, and a real
llama_cpp.server on loopback driven through the openai client and instructor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
from openai.types.chat import ChatCompletion

from pipeline.batch import ExtractConfig, run_extract
from pipeline.core.errors import ProviderError
from pipeline.providers import get_provider
from pipeline.providers.openai_compat import NO_KEY, OpenAIProvider
from pipeline.store import Store
from tests.conftest import ROOT, FakeProvider
from tests.realserver import SERVER_FLAGS, write_tiny
from tests.test_extract_store import DOC, GOOD, write_doc

SECRET = "sk-test-DO-NOT-LEAK-5f1c2a9e7b"


# -- keys and base URLs (no network) ----------------------------------------------------


def test_missing_key_for_openai_is_one_line_with_fix() -> None:
    with pytest.raises(ProviderError) as err:
        get_provider("openai:gpt-4o-mini")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == (
        "OPENAI_API_KEY is not set; https://api.openai.com/v1 needs an API key -- "
        "export OPENAI_API_KEY=<your key>, or pass --base-url for a local server that needs none"
    )


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://localhost:8080/v1", "http://10.0.0.5/v1"])
def test_local_server_needs_no_key(url: str) -> None:
    p = OpenAIProvider("m", base_url=url)
    assert p._key == NO_KEY and p.model_id == "openai:m" and p.remote


def test_base_url_from_environment_and_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://user:pw@llm.example.com/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    p = OpenAIProvider("m")
    assert p.base_url == "https://user:pw@llm.example.com/v1"
    assert p.describe() == {
        "base_url": "https://llm.example.com/v1",
        "response_format": "json_schema",
        "fold_system": False,
    }
    assert SECRET not in repr(p) and SECRET not in json.dumps(p.describe())
    assert p.redact(f"Incorrect API key provided: {SECRET}") == "Incorrect API key provided: ***"


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(ProviderError, match=r"not an http\(s\) URL -- pass --base-url like"):
        OpenAIProvider("m", base_url="127.0.0.1:8000")
    with pytest.raises(ProviderError, match="unknown response format 'xml' -- use one of: json_schema, json_object"):
        OpenAIProvider("m", base_url="http://127.0.0.1:1/v1", response_format="xml")


class Recorder(OpenAIProvider):
    """The real provider with the HTTP call replaced: records what would be sent."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("m", base_url="http://127.0.0.1:9/v1", **kw)
        self.sent: list[dict[str, Any]] = []

    @property
    def client(self) -> Any:
        outer = self

        class Completions:
            def create(self, **kwargs: Any) -> ChatCompletion:
                outer.sent.append(kwargs)
                from tests.conftest import completion

                return completion(json.dumps(GOOD))

        class Chat:
            completions = Completions()

        class Client:
            chat = Chat()

        return Client()


@pytest.mark.parametrize("fmt", ["json_schema", "json_object"])
def test_request_shape(tmp_path: Path, db: Path, fmt: str) -> None:
    p = Recorder(response_format=fmt, fold_system=True)
    run_extract([write_doc(tmp_path)], db=db, config=ExtractConfig(timeout=7), provider=p, progress=False)
    sent, reask = p.sent  # GOOD has an ungrounded record: one grounding re-ask
    assert [m["role"] for m in reask["messages"]] == ["user", "assistant", "user"]
    assert sent["model"] == "m" and sent["timeout"] == 7 and sent["temperature"] == 0.0
    assert [m["role"] for m in sent["messages"]] == ["user"]  # system folded into the user turn
    rf = sent["response_format"]
    if fmt == "json_schema":
        assert rf["type"] == "json_schema" and "conditions" in rf["json_schema"]["schema"]["properties"]
    else:
        assert rf["type"] == "json_object" and "conditions" in rf["schema"]["properties"]


def test_settings_change_the_configuration_hash(tmp_path: Path, db: Path) -> None:
    doc = write_doc(tmp_path)
    a = run_extract([doc], db=db, config=ExtractConfig(), provider=Recorder(), progress=False)
    b = run_extract([doc], db=db, config=ExtractConfig(), provider=Recorder(), progress=False)
    c = run_extract([doc], db=db, config=ExtractConfig(), provider=Recorder(fold_system=True), progress=False)
    assert (a.calls, b.calls, b.chunks_reused, c.calls) == (2, 0, 1, 2)  # answer + grounding re-ask


# -- concurrency: bounded in-flight requests, one writer ----------------------------------


class SlowRemote(FakeProvider):
    """A remote provider whose requests take a while; records how many overlap."""

    remote = True

    def __init__(self, seconds: float = 0.15) -> None:
        super().__init__(default=GOOD)
        self.seconds = seconds
        self.active = 0
        self.peak = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def create(self, **kwargs: Any) -> ChatCompletion:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.threads.add(threading.current_thread().name)
        try:
            time.sleep(self.seconds)
            with self._lock:
                return super().create(**kwargs)
        finally:
            with self._lock:
                self.active -= 1


def test_concurrency_bounds_requests_and_one_thread_writes(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [write_doc(tmp_path, f"d{i}.txt", f"{DOC} Document {i}.") for i in range(8)]
    docs.append(write_doc(tmp_path, "dup.txt", f"{DOC} Document 0."))  # same text as d0
    writers: set[str] = set()
    original = Store.write_chunk_results

    def spy(self: Store, *args: Any, **kw: Any) -> None:
        writers.add(threading.current_thread().name)
        original(self, *args, **kw)

    monkeypatch.setattr(Store, "write_chunk_results", spy)
    p = SlowRemote()
    s = run_extract(docs, db=db, config=ExtractConfig(concurrency=3), provider=p, progress=False)
    assert (s.status, s.chunks_extracted, s.chunks_cached, s.calls) == ("completed", 8, 1, 16)  # + re-asks
    assert p.peak == 3 and len(p.threads) == 3 and all(t.startswith("llm") for t in p.threads)
    assert writers == {threading.main_thread().name}
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT chunk_id) FROM extractions").fetchone() == (9, 9)
    assert con.execute("SELECT count(*) FROM rec_therapies").fetchone() == (9,)
    con.close()


def test_local_provider_stays_sequential(tmp_path: Path, db: Path) -> None:
    p = FakeProvider(default=GOOD)  # remote = False, like the embedded model
    s = run_extract([write_doc(tmp_path)], db=db, config=ExtractConfig(concurrency=4), provider=p, progress=False)
    assert s.status == "completed"
    assert s.warnings == ["--concurrency 4 ignored: fake:queued runs in-process"]


# -- the real thing: llama_cpp.server on loopback -----------------------------------------


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "extract", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **env},
        timeout=300,
    )


@pytest.mark.server
def test_real_server_through_cli_and_the_key_never_stored(tmp_path: Path, llama_server: str) -> None:
    from tests.faultproxy import FaultProxy

    schema, prompt = write_tiny(tmp_path)
    doc = write_doc(tmp_path, "mg.txt", "KYV-101 is being tested in patients with myasthenia gravis.\n")
    db = tmp_path / "out.duckdb"
    with FaultProxy(llama_server.removesuffix("/v1")) as proxy:  # plain relay: sees the Authorization header
        args = [str(doc), "--db", str(db), "--schema", schema, "--prompt", prompt, "--model", "openai:gemma"]
        args += ["--base-url", proxy.base_url, *SERVER_FLAGS, "--quiet"]
        r = cli(*args, env={"OPENAI_API_KEY": SECRET})
        assert r.returncode == 0, r.stderr
        auths = {s.authorization for s in proxy.completions()}
        assert auths == {f"Bearer {SECRET}"}  # the key reached the server, as a bearer token
    assert SECRET not in r.stdout + r.stderr
    assert "1 (1 extracted, 0 reused, 0 from cache, 0 failed)" in r.stdout
    con = duckdb.connect(str(db), read_only=True)
    (name, grounded), *_ = con.execute("SELECT name, grounded FROM rec_conditions").fetchall()
    (status, tokens_in, tokens_out, model), *_ = con.execute(
        "SELECT status, tokens_in, tokens_out, model FROM llm_calls WHERE status = 'ok'"
    ).fetchall()
    (config,) = con.execute("SELECT config FROM runs").fetchone()  # type: ignore[misc]
    con.close()
    assert name.lower() == "myasthenia gravis" and grounded
    assert status == "ok" and tokens_in > 50 and 0 < tokens_out <= 96 and model == "openai:gemma"
    assert json.loads(config)["provider"] == {
        "base_url": proxy.base_url,
        "response_format": "json_object",
        "fold_system": True,
    }
    for path in tmp_path.rglob("*.duckdb*"):
        assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (401, "http://127.0.0.1:{port}/v1 refused the API key (HTTP 401) -- set OPENAI_API_KEY to a valid key"),
        (404, "http://127.0.0.1:{port}/v1/chat/completions answered 404 for model 'm' -- check the model name"),
    ],
)
def test_refused_key_or_unknown_model_stops_the_job(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch, code: int, message: str
) -> None:
    from pipeline.core.errors import PipelineError
    from tests.faultproxy import FaultProxy, status

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    docs = [write_doc(tmp_path, "a.txt"), write_doc(tmp_path, "b.txt", DOC + " Again.")]
    with FaultProxy("http://127.0.0.1:9") as proxy:  # answers itself; nothing is forwarded
        proxy.plan(default=status(code))
        cfg = ExtractConfig(model="openai:m", base_url=proxy.base_url)
        with pytest.raises(PipelineError) as err:
            run_extract(docs, db=db, config=cfg, progress=False)
        assert len(proxy.completions()) == 1  # not retried, and the second chunk never sent
    port = proxy.base_url.split(":")[2].split("/")[0]
    assert str(err.value).startswith(message.format(port=port)) and SECRET not in str(err.value)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    con.close()
