"""``pipeline eval`` as a plain function: gold dir + docs dir + a run's records -> scores.

``evaluate`` reads the run's records from DuckDB, loads the gold set with the run's schema
(``load_gold``, the one gold loader: ``pipeline report`` uses it too), merges each document
with ``pipeline.merge.merge_document``, scores them with ``pipeline.score`` and stores the
result in the eval tables (migration ``002_eval_tables``) under
``eval_id = <run_id>:<gold hash>:<mode>:<grounded|all>``; scoring the same run, gold set
and mode again replaces those rows.

Grounding rate is computed over every record row the run stored (before merging, ungrounded
ones included, in every document of the run): the share whose evidence
``pipeline.ground.align`` finds in the document text from the docs dir (the run's stored
text when the docs dir lacks the document).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pipeline.core.errors import PipelineError, StoreError
from pipeline.core.schema import RecordType, Schema
from pipeline.ground import align, unsupported
from pipeline.ingest import iter_paths, read_document
from pipeline.merge import merge_document
from pipeline.score import MODES, Comparison, GoldRecord, Mode, Scorecard, compare, score
from pipeline.store import Store

GOLD_EXTRA_KEYS = {"optional", "evidence", "comment"}


class GoldError(PipelineError):
    """A gold file that does not follow the spec's gold format."""


@dataclass(frozen=True)
class GoldSet:
    dir: Path
    hash: str  # sha256 (16 hex) over the gold files' names and bytes
    docs: dict[str, dict[str, list[GoldRecord]]]


class Grounding(BaseModel):
    rate: float | None
    grounded: int
    total: int
    flag_disagrees: int  # rows whose stored ``grounded`` flag differs from the re-check


class EvalReport(Scorecard):
    eval_id: str  # <run_id>:<gold_hash>:<mode>:<grounded|all>, the key of the eval tables
    run_id: str
    schema_name: str
    gold_dir: str
    gold_hash: str
    include_ungrounded: bool
    grounding_rate: float | None
    grounding: Grounding
    unscored: list[str]  # documents of the run without a gold file
    missing_documents: list[str]  # gold documents the run did not cover: all missed
    warnings: list[str]


# -- gold ----------------------------------------------------------------------------------


def _check_value(value: Any, *, is_list: bool) -> str | None:
    """Why ``value`` is not a valid gold value, or None."""

    def scalar_or_alternatives(v: Any) -> bool:
        if isinstance(v, list):
            return bool(v) and all(x is None or isinstance(x, str | int | float) for x in v)
        return v is None or isinstance(v, str | int | float)

    if is_list:
        if value is None:
            return None
        if not isinstance(value, list) or not all(
            scalar_or_alternatives(v) and v is not None and v != [] for v in value
        ):
            return "must be a list of values (each a value or a non-empty list of alternatives)"
        return None
    if not scalar_or_alternatives(value):
        return "must be a value or a non-empty list of alternative values"
    return None


def parse_gold(schema: Schema, data: Any, source: str) -> dict[str, list[GoldRecord]]:
    """Validate one gold file's parsed JSON; raise ``GoldError`` saying what to fix."""

    def fail(problem: str, fix: str) -> GoldError:
        return GoldError(f"gold file {source}: {problem}", fix)

    known = [rt.name for rt in schema.record_types]
    if not isinstance(data, dict) or not isinstance(data.get("records"), dict):
        raise fail('no "records" object', 'write {"doc_id": "...", "records": {"<type>": [...], ...}}')
    stem = Path(source).stem
    if data.get("doc_id", stem) != stem:
        raise fail(
            f"doc_id {data.get('doc_id')!r} is not the file name {stem!r}",
            f"rename the file to {data.get('doc_id')}.json or fix doc_id",
        )
    records: dict[str, Any] = data["records"]
    for name in records:
        if name not in known:
            raise fail(f"unknown record type {name!r}", f"use the types of schema {schema.name!r}: {', '.join(known)}")
    out: dict[str, list[GoldRecord]] = {}
    for rt in schema.record_types:
        if rt.name not in records:
            raise fail(f"record type {rt.name!r} is missing", f'add "{rt.name}": [] if the document has none')
        items = records[rt.name]
        if not isinstance(items, list):
            raise fail(f"{rt.name!r} is not a list", f'write "{rt.name}": [{{...}}, ...]')
        out[rt.name] = [_parse_record(rt, rec, i, fail) for i, rec in enumerate(items)]
    return out


def _parse_record(rt: RecordType, rec: Any, i: int, fail: Callable[[str, str], GoldError]) -> GoldRecord:
    where = f"{rt.name}[{i}]"
    if not isinstance(rec, dict):
        raise fail(f"{where} is not an object", 'write each record as {"field": value, ...}')
    fields = {f.name: f for f in rt.fields}
    for name in rec:
        if name not in fields and name not in GOLD_EXTRA_KEYS:
            allowed = ", ".join([*rt.value_fields, *sorted(GOLD_EXTRA_KEYS)])
            raise fail(f"{where} has unknown field {name!r}", f"use the fields of {rt.name!r}: {allowed}")
    for key in rt.key_fields:
        value = rec.get(key)
        if value is None and not fields[key].required:
            continue  # a nullable key (a trial with no stated phase) matches only a null prediction
        alts = value if isinstance(value, list) else [value]
        if not alts or not all(rt.normalize(a) for a in alts):
            raise fail(f"{where} is missing key field {key!r}", f"give {key!r} a value (or a list of alternatives)")
    for name, value in rec.items():
        if name in fields and name != "evidence":
            problem = _check_value(value, is_list=fields[name].is_list)
            if problem:
                raise fail(f"{where}.{name} {problem}", 'see the spec\'s "Gold files" section')
    optional = rec.get("optional", False)
    if not isinstance(optional, bool):
        raise fail(f"{where}.optional is not true/false", 'write "optional": true or leave it out')
    values = {k: v for k, v in rec.items() if k in fields and k != "evidence"}
    return GoldRecord(index=i, values=values, optional=optional)


def load_gold(schema: Schema, gold_dir: str | Path) -> GoldSet:
    """Read and validate every ``<doc_id>.json`` in ``gold_dir``."""
    gold_dir = Path(gold_dir)
    if not gold_dir.is_dir():
        raise GoldError(f"gold directory {gold_dir} does not exist", "pass --gold DIR holding <doc_id>.json files")
    files = sorted(gold_dir.glob("*.json"))
    if not files:
        raise GoldError(
            f"gold directory {gold_dir} has no .json files", "write <doc_id>.json gold files (see the spec)"
        )
    digest = hashlib.sha256()
    docs: dict[str, dict[str, list[GoldRecord]]] = {}
    for path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        try:
            data = json.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise GoldError(f"gold file {path} is not UTF-8 (byte {exc.start})", "save it as UTF-8") from exc
        except json.JSONDecodeError as exc:
            raise GoldError(
                f"gold file {path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                "fix the JSON syntax there",
            ) from exc
        docs[path.stem] = parse_gold(schema, data, str(path))
    return GoldSet(gold_dir, digest.hexdigest()[:16], docs)


# -- evaluation ----------------------------------------------------------------------------


def _doc_texts(store: Store, run_id: str, docs_dir: Path, doc_ids: set[str], warnings: list[str]) -> dict[str, str]:
    """Text of each run document: from ``docs_dir``, else the text the run stored."""
    run_docs = store.run_document_hashes(run_id)
    texts: dict[str, str] = {}
    for path in iter_paths([docs_dir]):
        if path.stem in doc_ids:
            doc = read_document(path)
            texts[doc.doc_id] = doc.text
            if doc.doc_id in run_docs and run_docs[doc.doc_id] != doc.sha256:
                warnings.append(f"{path} differs from the text run {run_id} extracted; scores may not mean much")
    for doc_id in sorted(doc_ids - texts.keys()):
        text = store.document_text(doc_id, run_docs.get(doc_id, ""))
        if text is not None:
            texts[doc_id] = text
            warnings.append(f"{doc_id} is not in {docs_dir}; grounding checked against the run's stored text")
        else:
            warnings.append(f"no text for {doc_id} in {docs_dir} or the database; its records count as ungrounded")
    return texts


def grounding(
    rows: Mapping[str, Mapping[str, list[dict[str, Any]]]], texts: Mapping[str, str], schema: Schema | None = None
) -> Grounding:
    """Re-check every stored record against the document text: its evidence is located and
    quotes words, and (given the schema) its free-text key values occur in its evidence or
    the document: the extraction-time rule with the document standing in for the chunk."""
    types = {rt.name: rt for rt in schema.record_types} if schema is not None else {}
    grounded = total = disagree = 0
    for doc_id, per_type in rows.items():
        text = texts.get(doc_id, "")
        for name, recs in per_type.items():
            rt = types.get(name)
            for rec in recs:
                evidence = rec.get("evidence") or ""
                found = bool(text) and align(evidence, text).grounded
                found = found and unsupported(rt, rec, evidence, text) is None
                total += 1
                grounded += found
                disagree += found != bool(rec.get("grounded"))
    return Grounding(rate=grounded / total if total else None, grounded=grounded, total=total, flag_disagrees=disagree)


def _open(db: str | Path) -> Store:
    if not Path(db).exists():
        raise StoreError(f"database {db} does not exist", "run `pipeline extract` first or pass --db PATH")
    return Store(db)


def _check(mode: str, gold_dir: str | Path, docs_dir: str | Path) -> Mode:
    """Check the arguments that need no database, so bad input fails first."""
    if mode not in MODES:
        raise PipelineError(f"unknown mode {mode!r}", f"use one of: {', '.join(MODES)}")
    if not Path(gold_dir).is_dir():
        raise GoldError(f"gold directory {gold_dir} does not exist", "pass --gold DIR holding <doc_id>.json files")
    if not Path(docs_dir).is_dir():
        raise PipelineError(f"docs directory {docs_dir} does not exist", "pass --docs DIR holding the documents")
    return mode


def score_run(
    store: Store,
    run_id: str,
    *,
    schema: Schema,
    gold: GoldSet,
    docs_dir: Path,
    mode: Mode,
    include_ungrounded: bool,
    notes: list[str] | None = None,
) -> EvalReport:
    """Score one run (already resolved) against ``gold``."""
    all_rows = store.run_records(run_id, schema, include_ungrounded=True)
    scored_rows = (
        all_rows
        if include_ungrounded
        else {d: {t: [r for r in rows if r.get("grounded")] for t, rows in per.items()} for d, per in all_rows.items()}
    )
    warnings: list[str] = list(notes or [])
    texts = _doc_texts(store, run_id, docs_dir, set(all_rows), warnings)
    predictions = {d: merge_document(schema, scored_rows[d], texts.get(d)) for d in gold.docs if d in scored_rows}
    card = score(schema, predictions, gold.docs, mode)
    ground = grounding(all_rows, texts, schema)
    return EvalReport(
        **card.model_dump(),
        eval_id=f"{run_id}:{gold.hash}:{mode}:{'all' if include_ungrounded else 'grounded'}",
        run_id=run_id,
        schema_name=schema.name,
        gold_dir=str(gold.dir),
        gold_hash=gold.hash,
        include_ungrounded=include_ungrounded,
        grounding_rate=ground.rate,
        grounding=ground,
        unscored=sorted(set(all_rows) - gold.docs.keys()),
        missing_documents=sorted(gold.docs.keys() - set(all_rows)),
        warnings=warnings,
    )


def evaluate(
    *,
    db: str | Path,
    run: str = "latest",
    gold_dir: str | Path = "evals/gold",
    docs_dir: str | Path = "evals/docs",
    mode: str = "lenient",
    schema: str | None = None,
    include_ungrounded: bool = False,
    save: bool = True,
) -> EvalReport:
    """Score one run of ``db`` against the gold set; store the scores unless ``save`` is False.
    ``schema`` defaults to the one the run used."""
    checked = _check(mode, gold_dir, docs_dir)
    with _open(db) as store:
        notes: list[str] = []
        run_id = store.resolve_run(run, notes)
        loaded = store.run_schema(run_id, schema)
        report = score_run(
            store,
            run_id,
            schema=loaded,
            gold=load_gold(loaded, gold_dir),
            docs_dir=Path(docs_dir),
            mode=checked,
            include_ungrounded=include_ungrounded,
            notes=notes,
        )
        if save:
            store.save_eval(report)
    return report


def compare_runs(
    *,
    db: str | Path,
    run_a: str,
    run_b: str,
    gold_dir: str | Path = "evals/gold",
    docs_dir: str | Path = "evals/docs",
    mode: str = "lenient",
    schema: str | None = None,
    include_ungrounded: bool = False,
) -> Comparison:
    """Score both runs against the same gold set and mode (storing both) and compare them."""
    checked = _check(mode, gold_dir, docs_dir)
    with _open(db) as store:
        ids = [store.resolve_run(run) for run in (run_a, run_b)]
        loaded = store.run_schema(ids[0], schema)
        store.run_schema(ids[1], schema if schema else loaded.spec)  # both runs must use one schema
        gold = load_gold(loaded, gold_dir)
        reports = []
        for run_id in ids:
            report = score_run(
                store,
                run_id,
                schema=loaded,
                gold=gold,
                docs_dir=Path(docs_dir),
                mode=checked,
                include_ungrounded=include_ungrounded,
            )
            store.save_eval(report)
            reports.append(report)
    return compare(reports[0], reports[1], reports[0].run_id, reports[1].run_id)
