"""``pipeline report``: one self-contained HTML page to review a run by eye.

Each document's text with its records highlighted at their evidence spans (a colour per
record type, the fields on hover), a side list of records that scrolls to the span, and,
where a gold file exists, missed gold records and spurious predictions. The HTML comes from
``pipeline/templates/report.html.j2`` with autoescaping on: document text and record values
are always escaped, and the page loads nothing from the network.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import jinja2

from pipeline import __version__
from pipeline.core.errors import InputError
from pipeline.core.normalize import normalize
from pipeline.core.schema import RecordType, Schema
from pipeline.export import run_schema
from pipeline.merge import record_key
from pipeline.store.db import Store

TEMPLATES = Path(__file__).parent / "templates"
#: one background colour per record type, in schema order (repeats past ten types)
PALETTE = (
    "#ffd8a8",
    "#b2f2bb",
    "#a5d8ff",
    "#eebefa",
    "#ffec99",
    "#99e9f2",
    "#ffc9c9",
    "#d0bfff",
    "#c3fae8",
    "#e9ecef",
)


# -- gold matching ---------------------------------------------------------------------
# A small stand-in for the scorer: a predicted record matches a gold record when every key
# field, normalized, equals one of the gold alternatives. Kept here, alone, so it can be
# swapped for pipeline/score.py's pairing.


def _alternatives(value: Any) -> set[str]:
    if isinstance(value, list):
        return {a for v in value for a in _alternatives(v)}
    return {normalize(value)}


def match_gold(
    rt: RecordType, predicted: Sequence[dict[str, Any]], gold: Sequence[dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Status of each predicted record (matched | spurious | optional) and the missed gold records.

    Predictions with the same normalized key are one record (mentions merged across chunks)
    and share a status. Optional gold records absorb matching predictions without counting.
    """

    def accepts(g: dict[str, Any], key: tuple[str, ...]) -> bool:
        return all(k in _alternatives(g.get(name)) for name, k in zip(rt.key_fields, key, strict=True))

    used: set[int] = set()
    decided: dict[tuple[str, ...], str] = {}
    statuses: list[str] = []
    for rec in predicted:
        key = record_key(rt, rec)
        if key not in decided:
            hit = next(
                (i for i, g in enumerate(gold) if i not in used and not g.get("optional") and accepts(g, key)), None
            )
            if hit is not None:
                used.add(hit)
                decided[key] = "matched"
            elif any(g.get("optional") and accepts(g, key) for g in gold):
                decided[key] = "optional"
            else:
                decided[key] = "spurious"
        statuses.append(decided[key])
    missed = [g for i, g in enumerate(gold) if i not in used and not g.get("optional")]
    return statuses, missed


def load_gold(gold_dir: Path, doc_id: str) -> dict[str, list[dict[str, Any]]] | None:
    """``<gold_dir>/<doc_id>.json``'s records by type, or None when there is no gold file."""
    path = gold_dir / f"{doc_id}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        records = data["records"]
        if not isinstance(records, dict):
            raise TypeError("'records' is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"gold file {path} is not valid: {type(exc).__name__}: {exc}",
            'write {"doc_id": ..., "records": {"<type>": [...]}} as in the extraction spec',
        ) from exc
    return {str(k): list(v or []) for k, v in records.items()}


# -- page model ------------------------------------------------------------------------


@dataclass
class Segment:
    text: str
    recs: list[str] = field(default_factory=list)  # uids of the records whose span covers it
    id: str | None = None
    css: str = ""


@dataclass
class RecordItem:
    uid: str
    type: str
    type_index: int
    label: str
    fields: dict[str, Any]
    evidence: str | None
    start: int | None
    end: int | None
    grounded: bool
    alignment: str | None
    status: str | None = None  # matched | spurious | optional; None without gold
    anchor: str | None = None  # id of the first highlighted segment


@dataclass
class DocPage:
    index: int
    doc_id: str
    path: str
    segments: list[Segment]
    records: list[RecordItem]
    missed: list[dict[str, Any]]
    has_gold: bool


@dataclass
class ReportSummary:
    path: Path
    run_id: str
    documents: int
    records: int
    grounded: int
    gold_documents: int
    counts: dict[str, dict[str, int]]


def segment(text: str, spans: Sequence[tuple[int, int, str]]) -> list[Segment]:
    """Cut ``text`` at every span boundary; each piece lists the spans (uids) covering it."""
    bounds = sorted({0, len(text)} | {s for s, _, _ in spans} | {e for _, e, _ in spans})
    out: list[Segment] = []
    for a, b in pairwise(bounds):
        covering = [uid for s, e, uid in spans if s <= a and b <= e]
        out.append(Segment(text[a:b], covering))
    return out


def _label(rt: RecordType, rec: dict[str, Any]) -> str:
    parts = [rec.get(k) for k in rt.key_fields]
    return " · ".join(", ".join(map(str, p)) if isinstance(p, list) else str(p) for p in parts if p not in (None, ""))


def _gold_label(rt: RecordType, g: dict[str, Any]) -> str:
    def first(v: Any) -> Any:
        return first(v[0]) if isinstance(v, list) and v else v

    return " · ".join(str(first(g.get(k))) for k in rt.key_fields if g.get(k) not in (None, "", []))


def build_pages(
    schema: Schema,
    docs: Sequence[tuple[str, str, str]],
    records: dict[str, dict[str, list[dict[str, Any]]]],
    gold_dir: Path | None,
) -> tuple[list[DocPage], dict[str, dict[str, int]]]:
    """Documents (doc_id, path, text) and their records -> pages, plus counts per record type."""
    type_index = {rt.name: i for i, rt in enumerate(schema.record_types)}
    counts = {
        rt.name: {"predicted": 0, "grounded": 0, "matched": 0, "spurious": 0, "missed": 0} for rt in schema.record_types
    }
    pages: list[DocPage] = []
    uid = 0
    for di, (doc_id, path, text) in enumerate(docs):
        gold = load_gold(gold_dir, doc_id) if gold_dir else None
        items: list[RecordItem] = []
        missed: list[dict[str, Any]] = []
        for rt in schema.record_types:
            recs = records.get(doc_id, {}).get(rt.name, [])
            statuses: list[str | None] = [None] * len(recs)
            if gold is not None:
                matched, gone = match_gold(rt, recs, gold.get(rt.name, []))
                statuses = list(matched)
                missed += [
                    {"type": rt.name, "type_index": type_index[rt.name], "label": _gold_label(rt, g), "fields": g}
                    for g in gone
                ]
                counts[rt.name]["missed"] += len(gone)
            for rec, status in zip(recs, statuses, strict=True):
                uid += 1
                start, end = rec.get("evidence_start"), rec.get("evidence_end")
                grounded = (
                    bool(rec.get("grounded"))
                    and start is not None
                    and end is not None
                    and 0 <= start < end <= len(text)
                )
                items.append(
                    RecordItem(
                        uid=f"r{uid}",
                        type=rt.name,
                        type_index=type_index[rt.name],
                        label=_label(rt, rec) or rt.name,
                        fields={f: rec.get(f) for f in rt.value_fields},
                        evidence=rec.get("evidence"),
                        start=start if grounded else None,
                        end=end if grounded else None,
                        grounded=grounded,
                        alignment=rec.get("alignment"),
                        status=status,
                    )
                )
                c = counts[rt.name]
                c["predicted"] += 1
                c["grounded"] += grounded
                if status in ("matched", "spurious"):
                    c[status] += 1
        items.sort(key=lambda r: (r.start is None, r.start or 0, r.type_index))
        by_uid = {r.uid: r for r in items}
        segments = segment(text, [(r.start, r.end, r.uid) for r in items if r.start is not None and r.end is not None])
        for si, seg in enumerate(segments):
            if not seg.recs:
                continue
            seg.id = f"s{di}-{si}"
            inner = min((by_uid[u] for u in seg.recs), key=lambda r: ((r.end or 0) - (r.start or 0), r.type_index))
            seg.css = f"hl t{inner.type_index}" + (" multi" if len(seg.recs) > 1 else "")
            seg.css += " spurious" if any(by_uid[u].status == "spurious" for u in seg.recs) else ""
            for u in seg.recs:
                if by_uid[u].anchor is None:
                    by_uid[u].anchor = seg.id
        pages.append(DocPage(di, doc_id, path, segments, items, missed, gold is not None))
    return pages, counts


def render(**context: Any) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}  # fields in schema order
    return env.get_template("report.html.j2").render(**context)


def build_report(
    *,
    db: str | Path,
    run: str = "latest",
    out: str | Path = "report.html",
    gold: str | Path | None = None,
    schema: str | None = None,
) -> ReportSummary:
    """Write the review page for ``run`` to ``out``. ``gold`` is a folder of ``<doc_id>.json``."""
    gold_dir = Path(gold) if gold is not None else None
    if gold_dir is not None and not gold_dir.is_dir():
        raise InputError(f"gold folder {gold_dir} does not exist", "pass --gold with a folder of <doc_id>.json files")
    with Store(db, read_only=True) as store:
        run_id = store.resolve_run(run)
        loaded = run_schema(store, run_id, schema)
        records = store.run_records(run_id, loaded, include_ungrounded=True)
        docs = [
            (str(r[0]), str(r[1] or ""), str(r[2] or ""))
            for r in store.con.execute(
                "SELECT d.doc_id, d.path, d.text FROM run_documents rd JOIN documents d "
                "ON d.doc_id = rd.doc_id AND d.doc_sha256 = rd.doc_sha256 WHERE rd.run_id = ? ORDER BY d.doc_id",
                [run_id],
            ).fetchall()
        ]
        cur = store.con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        names = [d[0] for d in cur.description]
        run_row = dict(zip(names, cur.fetchone() or (), strict=True))
    pages, counts = build_pages(loaded, docs, records, gold_dir)
    items = {r.uid: r for p in pages for r in p.records}
    data = {
        uid: {
            "type": r.type,
            "label": r.label,
            "fields": r.fields,
            "evidence": r.evidence,
            "alignment": r.alignment,
            "status": r.status,
            "grounded": r.grounded,
        }
        for uid, r in items.items()
    }
    types = [(i, rt.name, PALETTE[i % len(PALETTE)]) for i, rt in enumerate(loaded.record_types)]
    gold_docs = sum(p.has_gold for p in pages)
    html = render(
        run=run_row,
        pages=pages,
        counts=counts,
        totals={
            k: sum(c[k] for c in counts.values()) for k in ("predicted", "grounded", "matched", "spurious", "missed")
        },
        types=types,
        gold_dir=str(gold_dir) if gold_dir else None,
        gold_docs=gold_docs,
        data=json.loads(json.dumps(data, default=str)),
        version=__version__,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return ReportSummary(
        path=out,
        run_id=run_id,
        documents=len(pages),
        records=len(items),
        grounded=sum(r.grounded for r in items.values()),
        gold_documents=gold_docs,
        counts=counts,
    )
