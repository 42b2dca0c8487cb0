"""`python -m bench --quick` runs every item and writes a JSON result per item (timings are not checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_writes_every_item(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["quick"] is True
    numbers = sorted(item["item"].split(".")[0] for item in data["items"])
    assert numbers == ["1", "10", "11", "2", "3", "4", "5", "6a", "6b", "7", "8", "9"]
    for item in data["items"]:
        assert item["status"] in {"ok", "skipped"}, item
        assert "met" in item and item["measured"]
    assert "| item | target | measured | met? |" in proc.stdout
