"""``pipeline report``: one self-contained HTML page to review a run by eye.

Each document's text with its records highlighted at their evidence spans (a colour per
record type, the fields on hover), a side list of records that scrolls to the span, and,
where a gold file exists, missed gold records and spurious predictions. The side list holds
the records as ``pipeline eval`` scores them: the grounded mentions merged into one record per
thing (``pipeline.merge``), every span of it highlighted, marked by the scorer's own pairing
(``pipeline.score.match_records``, lenient) against gold read by the scorer's own loader
(``pipeline.evaluate.load_gold``); ungrounded mentions are listed struck through. For a
document with pages (PDF) each record shows the pages its evidence lies on ("p. 2"; a merged
record: the pages of all its mentions) and the text marks where each page starts. The HTML
comes from ``pipeline/templates/report.html.j2`` with autoescaping on: document text and
record values are always escaped, and the page loads nothing from the network.
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
from pipeline.core.schema import RecordType, Schema
from pipeline.core.types import Span
from pipeline.evaluate import GoldSet, load_gold
from pipeline.merge import abbreviations, merge_type
from pipeline.pdf import PageMap
from pipeline.score import GoldRecord, match_records
from pipeline.store import Store

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


# -- page model ------------------------------------------------------------------------


@dataclass
class Segment:
    text: str
    recs: list[str] = field(default_factory=list)  # uids of the records whose span covers it
    id: str | None = None
    css: str = ""
    page_marks: list[int] = field(default_factory=list)  # pages that start where this piece starts


@dataclass
class RecordItem:
    """One merged record (all its mentions' spans) or one ungrounded mention."""

    uid: str
    type: str
    type_index: int
    label: str
    fields: dict[str, Any]
    evidence: str | None
    spans: list[tuple[int, int]]
    grounded: bool
    alignment: str | None
    status: str | None = None  # matched | spurious | optional; None without gold
    anchor: str | None = None  # id of the first highlighted segment
    pages: list[int] = field(default_factory=list)  # pages its spans lie on (documents with pages)

    @property
    def start(self) -> int | None:
        return self.spans[0][0] if self.spans else None

    @property
    def page_label(self) -> str:
        return page_label(self.pages)


@dataclass
class DocPage:
    index: int
    doc_id: str
    path: str
    segments: list[Segment]
    records: list[RecordItem]
    missed: list[dict[str, Any]]
    has_gold: bool
    n_pages: int = 0  # 0: the document has no pages


@dataclass
class ReportSummary:
    path: Path
    run_id: str
    documents: int
    records: int
    grounded: int
    gold_documents: int
    counts: dict[str, dict[str, int]]
    mentions: int = 0  # highlighted spans of the merged records
    notes: list[str] = field(default_factory=list)


def segment(text: str, spans: Sequence[tuple[int, int, str]], cuts: Sequence[int] = ()) -> list[Segment]:
    """Cut ``text`` at every span boundary (and at ``cuts``); each piece lists the spans (uids)
    covering it."""
    inside = {c for c in cuts if 0 < c < len(text)}
    bounds = sorted({0, len(text)} | {s for s, _, _ in spans} | {e for _, e, _ in spans} | inside)
    out: list[Segment] = []
    for a, b in pairwise(bounds):
        covering = [uid for s, e, uid in spans if s <= a and b <= e]
        out.append(Segment(text[a:b], covering))
    return out


def page_label(pages: Sequence[int]) -> str:
    """``[2]`` -> "p. 2"; ``[1, 2, 3, 5]`` -> "pp. 1-3, 5" (with an en dash); ``[]`` -> ""."""
    runs: list[list[int]] = []
    for n in sorted(set(pages)):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    if not runs:
        return ""
    parts = [str(r[0]) if len(r) == 1 else f"{r[0]}\u2013{r[-1]}" for r in runs]
    return ("p. " if len(runs) == 1 and len(runs[0]) == 1 else "pp. ") + ", ".join(parts)


def _label(rt: RecordType, rec: dict[str, Any]) -> str:
    parts = [rec.get(k) for k in rt.key_fields]
    return " · ".join(", ".join(map(str, p)) if isinstance(p, list) else str(p) for p in parts if p not in (None, ""))


def _gold_label(rt: RecordType, g: GoldRecord) -> str:
    def first(v: Any) -> Any:
        return first(v[0]) if isinstance(v, list) and v else v

    return " · ".join(str(first(g.values.get(k))) for k in rt.key_fields if g.values.get(k) not in (None, "", []))


STATUS = {"found": "matched", "absorbed": "optional", "spurious": "spurious"}


def _statuses(
    rt: RecordType, merged: list[dict[str, Any]], golds: list[GoldRecord]
) -> tuple[list[str], list[GoldRecord]]:
    """The scorer's pairing: each merged record matched | optional | spurious, and the missed gold."""
    m = match_records(rt, merged, golds, "lenient")
    status = ["spurious"] * len(merged)
    for pair in m.found:
        status[pair.pred] = "matched"
    for pair in m.absorbed:
        status[pair.pred] = "optional"
    return status, list(m.missed)


def build_pages(
    schema: Schema,
    docs: Sequence[tuple[str, str, str]],
    records: dict[str, dict[str, list[dict[str, Any]]]],
    gold: GoldSet | None,
    doc_pages: dict[str, list[Span]] | None = None,
) -> tuple[list[DocPage], dict[str, dict[str, int]]]:
    """Documents (doc_id, path, text) and their records -> pages, plus counts per record type
    (predicted = merged grounded records + ungrounded mentions; matched/spurious/missed as
    ``pipeline eval`` counts them). ``doc_pages``: the page spans of documents that have pages."""
    type_index = {rt.name: i for i, rt in enumerate(schema.record_types)}
    counts = {
        rt.name: {"predicted": 0, "grounded": 0, "matched": 0, "spurious": 0, "missed": 0} for rt in schema.record_types
    }
    pages: list[DocPage] = []
    uid = 0
    for di, (doc_id, path, text) in enumerate(docs):
        golds = gold.docs.get(doc_id) if gold is not None else None
        page_spans = (doc_pages or {}).get(doc_id, [])
        page_map = PageMap(page_spans)
        aliases = abbreviations(text, schema.normalize) if text else None
        items: list[RecordItem] = []
        missed: list[dict[str, Any]] = []
        for rt in schema.record_types:
            rows = records.get(doc_id, {}).get(rt.name, [])
            grounded = [r for r in rows if _grounded(r, text)]
            merged = merge_type(rt, grounded, aliases)
            statuses: list[str | None] = [None] * len(merged)
            if golds is not None:
                found, gone = _statuses(rt, merged, list(golds.get(rt.name, [])))
                statuses = list(found)
                missed += [
                    {
                        "type": rt.name,
                        "type_index": type_index[rt.name],
                        "label": _gold_label(rt, g),
                        "fields": dict(g.values),
                    }
                    for g in gone
                ]
                counts[rt.name]["missed"] += len(gone)
            c = counts[rt.name]
            for rec, status in zip(merged, statuses, strict=True):
                uid += 1
                spans = [(m["evidence_start"], m["evidence_end"]) for m in rec["mentions"]]
                item = _item(f"r{uid}", rt, type_index[rt.name], rec, spans, True, status)
                item.pages = sorted({n for a, b in spans for n in page_map(a, b)})
                items.append(item)
                c["predicted"] += 1
                c["grounded"] += 1
                if status in ("matched", "spurious"):
                    c[status] += 1
            for rec in rows:
                if not _grounded(rec, text):
                    uid += 1
                    items.append(_item(f"r{uid}", rt, type_index[rt.name], rec, [], False, None))
                    c["predicted"] += 1
        items.sort(key=lambda r: (r.start is None, r.start or 0, r.type_index))
        by_uid = {r.uid: r for r in items}
        page_starts: dict[int, list[int]] = {}
        for n, p in enumerate(page_spans, 1):
            page_starts.setdefault(p.start, []).append(n)
        segments = segment(text, [(a, b, r.uid) for r in items for a, b in r.spans], list(page_starts))
        at = 0
        for seg in segments:  # the pages that start where a piece starts (an empty page too)
            seg.page_marks = page_starts.get(at, [])
            at += len(seg.text)
        for si, seg in enumerate(segments):
            if not seg.recs:
                continue
            seg.id = f"s{di}-{si}"
            inner = min(
                (by_uid[u] for u in seg.recs),
                key=lambda r: (min(b - a for a, b in r.spans), r.type_index),
            )
            seg.css = f"hl t{inner.type_index}" + (" multi" if len(seg.recs) > 1 else "")
            seg.css += " spurious" if any(by_uid[u].status == "spurious" for u in seg.recs) else ""
            for u in seg.recs:
                if by_uid[u].anchor is None:
                    by_uid[u].anchor = seg.id
        pages.append(DocPage(di, doc_id, path, segments, items, missed, golds is not None, len(page_spans)))
    return pages, counts


def _grounded(rec: dict[str, Any], text: str) -> bool:
    start, end = rec.get("evidence_start"), rec.get("evidence_end")
    return bool(rec.get("grounded")) and start is not None and end is not None and 0 <= start < end <= len(text)


def _item(
    uid: str,
    rt: RecordType,
    type_index: int,
    rec: dict[str, Any],
    spans: list[tuple[int, int]],
    grounded: bool,
    status: str | None,
) -> RecordItem:
    return RecordItem(
        uid=uid,
        type=rt.name,
        type_index=type_index,
        label=_label(rt, rec) or rt.name,
        fields={f: rec.get(f) for f in rt.value_fields},
        evidence=rec.get("evidence"),
        spans=sorted(spans),
        grounded=grounded,
        alignment=rec.get("alignment"),
        status=status,
    )


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
    notes: list[str] = []
    with Store(db, read_only=True) as store:
        run_id = store.resolve_run(run, notes)
        loaded = store.run_schema(run_id, schema)
        records = store.run_records(run_id, loaded, include_ungrounded=True)
        docs = store.run_documents(run_id)
        doc_pages = store.run_document_pages(run_id)
        run_row = store.run_info(run_id)
    gold_set = load_gold(loaded, gold_dir) if gold_dir is not None else None
    pages, counts = build_pages(loaded, docs, records, gold_set, doc_pages)
    items = {r.uid: r for p in pages for r in p.records}
    mentions = sum(len(r.spans) for r in items.values())
    data = {
        uid: {
            "type": r.type,
            "label": r.label,
            "fields": r.fields,
            "evidence": r.evidence,
            "alignment": r.alignment,
            "status": r.status,
            "grounded": r.grounded,
            "pages": r.page_label,
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
        mentions=mentions,
        notes=notes,
    )
