"""Ctrl-C: one press stops the job within a second at any stage, with one line and exit 130;
the run is marked interrupted, what was finished stays stored, and a rerun does only what is
missing. Reading commands skip the unfinished run and say so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from pipeline.batch import ExtractConfig, run_extract
from pipeline.interrupt import Interrupted
from pipeline.store import Store
from tests.conftest import ROOT, SEEDS, FakeProvider
from tests.test_extract_store import rows

TEXTS = {
    "a": "KYV-101 is a CD19 CAR T cell therapy.",
    "b": "Lupus nephritis patients received obinutuzumab.",
    "c": "Rituximab is approved for pemphigus vulgaris.",
}
ANSWER = {"conditions": [{"name": "lupus nephritis", "evidence": "Lupus nephritis patients"}]}


def write_docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    for name, text in TEXTS.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


class CtrlCOnCall(FakeProvider):
    """Presses Ctrl-C (SIGINT to this process) while answering call ``n``."""

    def __init__(self, n: int) -> None:
        super().__init__(default=ANSWER)
        self.n = n

    def create(self, **kwargs: Any) -> ChatCompletion:
        if len(self.requests) + 1 == self.n:
            os.kill(os.getpid(), signal.SIGINT)
        return super().create(**kwargs)


def test_ctrl_c_between_chunks_keeps_what_is_finished(tmp_path: Path, db: Path) -> None:
    docs = write_docs(tmp_path)
    config = ExtractConfig(strategy="direct", reground=False)
    with pytest.raises(Interrupted, match="marked interrupted; run the same command again"):
        run_extract([docs], db=db, config=config, provider=CtrlCOnCall(2), progress=False)
    # chunk a is stored; b was being extracted when Ctrl-C came: not stored; c never started
    assert rows(db, "SELECT status FROM runs") == [("interrupted",)]
    assert [r[0].split(":")[0] for r in rows(db, "SELECT chunk_id FROM extractions")] == ["a"]
    again = run_extract([docs], db=db, config=config, provider=FakeProvider(default=ANSWER), progress=False)
    assert (again.status, again.chunks_reused, again.chunks_extracted, again.calls) == ("completed", 1, 2, 2)
    assert rows(db, "SELECT count(*), count(DISTINCT chunk_id) FROM extractions") == [(3, 3)]


class Hangs(FakeProvider):
    """A remote server that never answers (until the test lets it go); Ctrl-C is pressed
    0.3 s into the first request."""

    remote = True

    def __init__(self) -> None:
        super().__init__(default=ANSWER)
        self.release = threading.Event()
        self.pressed: float | None = None

    def press(self) -> None:
        self.pressed = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    def create(self, **kwargs: Any) -> ChatCompletion:
        if self.pressed is None:
            threading.Timer(0.3, self.press).start()
        self.release.wait(60)
        return super().create(**kwargs)


def test_ctrl_c_while_a_remote_request_hangs_stops_within_a_second(tmp_path: Path, db: Path) -> None:
    docs = write_docs(tmp_path)
    provider = Hangs()
    try:
        with pytest.raises(Interrupted):
            run_extract([docs], db=db, config=ExtractConfig(strategy="direct"), provider=provider, progress=False)
        assert provider.pressed is not None and time.monotonic() - provider.pressed < 1.0
    finally:
        provider.release.set()
    assert rows(db, "SELECT status, n_chunks_failed FROM runs") == [("interrupted", 0)]
    assert rows(db, "SELECT count(*) FROM extractions") == [(0,)]


def test_reading_commands_use_the_latest_finished_run_and_say_so(tmp_path: Path, db: Path) -> None:
    docs = write_docs(tmp_path)
    config = ExtractConfig(strategy="direct", reground=False)
    done = run_extract([docs], db=db, config=config, provider=FakeProvider(default=ANSWER), progress=False)
    refresh = ExtractConfig(strategy="direct", reground=False, refresh=True)
    with pytest.raises(Interrupted):
        run_extract([docs], db=db, config=refresh, provider=CtrlCOnCall(1), progress=False)
    notes: list[str] = []
    with Store(db, read_only=True) as store:
        assert store.resolve_run("latest", notes) == done.run_id
    assert len(notes) == 1 and "the latest finished one" in notes[0] and "is interrupted" in notes[0]


def cli(*args: str, delay: float) -> tuple[int, str, float]:
    """Run ``pipeline extract ...``, press Ctrl-C after ``delay`` seconds; (exit code, stderr,
    seconds from Ctrl-C to exit)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "extract", *args, "--quiet"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    pressed = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - pressed


@pytest.mark.model
@pytest.mark.parametrize("delay", [0.6, 1.5, 3.0])
def test_cli_ctrl_c_at_any_stage_is_one_line_and_exit_130(tmp_path: Path, delay: float) -> None:
    """At 0.6 s the CLI is importing, at 1.5 s it reads and loads the model, at 3 s it extracts."""
    db = tmp_path / "x.duckdb"
    args = [str(SEEDS), "--db", str(db), "--strategy", "direct", "--max-tokens", "400", "--no-reground"]
    code, err, took = cli(*args, delay=delay)
    assert code == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err
    # 0.1-0.65 s on an idle machine; llguidance's token table (Rust, ~1 s, not interruptible) may be building
    assert "Traceback" not in err and took < 2.0
    if db.exists():  # interrupted after the database was opened: marked, never left 'running'
        assert {s for (s,) in rows(db, "SELECT status FROM runs")} <= {"interrupted"}


@pytest.mark.model
def test_cli_ctrl_c_during_refresh_then_rerun_does_the_rest(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    args = [str(SEEDS), "--db", str(db), "--strategy", "direct", "--max-tokens", "300", "--no-reground"]
    first = subprocess.run(
        [sys.executable, "-m", "pipeline", "extract", *args, "--quiet", "--max-chunk-tokens", "4000"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode in (0, 2), first.stderr
    code, err, took = cli(*args, "--refresh", "--max-chunk-tokens", "4000", delay=4.0)
    assert code == 130 and err.startswith("error: interrupted") and "Traceback" not in err and took < 1.5
    assert rows(db, "SELECT status FROM runs ORDER BY started_at") in (
        [("completed",), ("interrupted",)],
        [("completed_with_failures",), ("interrupted",)],
    )


@pytest.mark.model
@pytest.mark.parametrize("delay", [4.0, 8.0])
def test_cli_ctrl_c_while_a_long_document_is_read(tmp_path: Path, delay: float) -> None:
    """A 400 KB single-line document, default strategy: at 4 s it is being chunked (the model's
    tokenizer, where Ctrl-C only sets the flag), at 8 s its first chunk reads the whole document
    (tagger, vocabularies: 20-30 s for 1 MB, all of it before the press was seen)."""
    from bench.items import long_text

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text(long_text(40), encoding="utf-8")
    db = tmp_path / "x.duckdb"
    code, err, took = cli(str(docs), "--db", str(db), delay=delay)
    assert code == 130, err
    assert err.strip().startswith("error: interrupted") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and took < 2.0, f"{took:.2f} s"
    if db.exists():
        assert {s for (s,) in rows(db, "SELECT status FROM runs")} <= {"interrupted"}
