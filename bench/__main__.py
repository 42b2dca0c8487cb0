"""python -m bench [--quick] [--out bench/results/<date>.json]: measure, write JSON, print a table."""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench import items, scale


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| item | target | measured | met? |", "|---|---|---|---|"]
    for r in results:
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(f"| {r['item']} | {r['target']} | {r['measured']} | {met} |")
    return "\n".join(lines)


def guarded(fn: Any, name: str, *args: Any) -> list[dict[str, Any]]:
    try:
        out = fn(*args)
        return out if isinstance(out, list) else [out]
    except Exception as exc:
        return [items.result(name, "", f"error: {type(exc).__name__}: {str(exc)[:200]}", None, status="error")]


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true", help="tiny inputs, no model (well under a minute)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--doc-chars",
        type=int,
        default=0,
        help="use one eval doc truncated to this many characters instead of the whole eval set (0 = whole set)",
    )
    ap.add_argument("--max-calls", type=int, default=8, help="prompts used for the constrained-decoding item")
    ap.add_argument("--strategy", default="direct", help="extraction strategy for items 1-3 (one that calls the model)")
    ap.add_argument("--max-tokens", type=int, default=1024, help="output token limit per call for items 1-3")
    ap.add_argument("--scale", action="store_true", help="only items 9 and 10 (engines, one writer)")
    ap.add_argument("--long-chars", type=int, default=1_000_000, help="size of item 11's single-line document")
    a = ap.parse_args()
    name = date.today().isoformat() + ("-scale" if a.scale else "")
    out = a.out or Path(__file__).parent / "results" / f"{name}.json"
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        doc = items.EVAL_DIR
        chars = 400 if a.quick else a.doc_chars
        if chars:
            doc = items.EVAL_DOC
            full = doc.read_text(encoding="utf-8")
            start = next(i for i, line in enumerate(full.splitlines(keepends=True)) if len(line) > 200)
            body = "".join(full.splitlines(keepends=True)[start:])[:chars]
            doc = Path(tmp) / doc.name
            doc.write_text(body.rsplit(".", 1)[0] + ".\n", encoding="utf-8")
        db = Path(tmp) / "bench.duckdb"
        if not a.scale:  # --scale: items 9 and 10 only
            if a.quick:
                from bench.model import quick_cached

                for name in ("1. engine vs pipeline", "2. constrained decoding cost"):
                    results.append(
                        items.skipped(
                            name, "pipeline >= 0.9x raw" if name[0] == "1" else "<= 1.2x", "--quick runs no model"
                        )
                    )
                results += guarded(quick_cached, "3. cached rerun", doc, db)
            else:
                from bench.model import model_items

                model_out = guarded(
                    lambda: model_items(doc, db, a.max_calls, strategy=a.strategy, max_tokens=a.max_tokens)[0],
                    "1-3. model items",
                )
                results += model_out
            results += guarded(items.storage, "4. storage", 1_000 if a.quick else 1_000_000)
            results += guarded(items.scorer, "5. scorer", 100 if a.quick else 10_000)
            results += guarded(
                items.concurrency, "6a. client concurrency", 0.05 if a.quick else 0.2, 2 if a.quick else 8
            )
            results += guarded(
                items.pipeline_concurrency, "6b. pipeline concurrency", 0.05 if a.quick else 1.0, 1 if a.quick else 4
            )
            if a.quick:
                results.append(items.skipped("7. peak RSS of `pipeline extract`", "report", "--quick runs no model"))
            else:
                results += guarded(items.peak_rss, "7. peak RSS", doc, Path(tmp) / "rss.duckdb")
            results += guarded(items.pdf_extraction, "8. PDF text extraction", 6 if a.quick else 60)
        if a.quick:  # one small Ray run: the item's code path, not a measurement
            results += guarded(scale.engines, "9. engines", 0.05, 4, [("local", 1, 2), ("ray", 1, 2)])
        else:
            configs = [("local", 1, 4), ("local", 1, 16), ("ray", 1, 4), ("ray", 2, 4), ("ray", 4, 4)]
            results += guarded(scale.engines, "9. engines", 1.0, 8, configs)
        if a.quick:
            results.append(items.skipped("11. one long document", "1 MB <= 10 s", "--quick runs no model"))
        elif not a.scale:
            results += guarded(items.long_document, "11. one long document", a.long_chars, Path(tmp))
        results += guarded(
            scale.writer,
            "10. one writer",
            50 if a.quick else 300,
            2_000 if a.quick else 50_000,
            500 if a.quick else 20_000,
        )
    payload = {
        "date": date.today().isoformat(),
        "quick": a.quick,
        "scale_only": a.scale,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
        },
        "docs": (
            f"{items.EVAL_DOC.relative_to(items.ROOT)} ({chars} chars from the first long paragraph)"
            if chars
            else f"{items.EVAL_DIR.relative_to(items.ROOT)}/ (the eval set)"
        ),
        "seconds": round(time.perf_counter() - t0, 1),
        "items": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(table(results))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
