"""Score predicted records against gold records. Pure functions: no files, no database.

The rules (the README's "Evaluation" section says the same for users):

Values
    Every value is compared in its normalized form (``pipeline.core.normalize.normalize`` with
    the schema's own extra rule, ``RecordType.normalize``). A gold value
    may be a list of acceptable alternatives; a comparison takes the best one. ``null`` is the
    empty string, so ``null`` matches ``null``.

    - strict: a value matches when it equals an alternative.
    - lenient: a value matches when rapidfuzz ``fuzz.ratio`` (normalized Indel similarity,
      0-100) with an alternative, hyphens read as spaces, is at least ``LENIENT_THRESHOLD``
      (90) *and* both strings contain the same numbers in the same order. ``ratio`` compares
      whole strings, so spelling and spacing variants match ("x-ray" / "x ray", "systemic" /
      "systematic" is 96.6) while a generic term does not match a specific one ("arthritis" /
      "juvenile idiopathic arthritis" is 47); ``token_set_ratio`` scores that pair 100, which
      would pair different real-world things. The number rule keeps codes apart that differ
      in a digit ("kyv-101" / "kyv-1010" is 93.3, "ct103a ..." / "ct104a ..." passes 90).
    - list fields (``indications``): items pair one-to-one, each pair matching as above; the
      similarity is the Dice overlap ``2 * matched / (len(gold) + len(pred))`` times 100.
      Two empty lists are equal (100).

Pairing, per record type per document
    A pair is eligible when every key field matches. Pairs are chosen by one
    ``scipy.optimize.linear_sum_assignment`` whose weights rank, in this order: the number
    of required gold records matched, then the number of predictions matched to optional
    gold records, then the total key similarity (the mean over key fields of the best
    alternative's similarity). Required gold paired = found (TP); required gold unpaired =
    missed (FN); a prediction paired with an optional gold record is absorbed (not counted);
    any other prediction is spurious (FP). An optional gold record left unpaired is not
    counted.

Counting
    precision = tp / (tp + fp), and 1.0 when there are no predictions (tp + fp == 0): a
    system that claims nothing claims nothing false; F1 still shows the miss. recall =
    tp / (tp + fn), and 1.0 when there is no gold. F1 is their harmonic mean, 0.0 when both
    are 0. Micro scores sum tp/fp/fn over all types and documents; macro F1 is the mean of
    the per-type F1 over the types with any gold or prediction (None when there is none).
    MUC-style undergeneration = fn / (tp + fn), overgeneration = fp / (tp + fp), 0.0 when
    the denominator is 0.

Per-field accuracy, on found pairs only
    Every field except ``evidence``, key fields included (these are 1.0 by construction).
    A scalar field scores 1 when it matches under the mode, else 0; a list field scores its
    Dice overlap (0..1). Pairs where the prediction is empty and the gold is ``null``/``[]``
    are skipped, so a field nobody states does not score 1.0. accuracy = correct / total.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel
from rapidfuzz import fuzz
from scipy.optimize import linear_sum_assignment

from pipeline.core.normalize import normalize
from pipeline.core.schema import FieldInfo, RecordType, Schema

Norm = Callable[[Any], str]

Mode = Literal["lenient", "strict"]
MODES: tuple[Mode, ...] = ("lenient", "strict")
#: lenient mode: minimum rapidfuzz ``fuzz.ratio`` (0-100) of two normalized values
LENIENT_THRESHOLD = 90.0
_EPS = 1e-9
_NUMBERS = re.compile(r"\d+")

# -- values --------------------------------------------------------------------------------


def alternatives(gold: Any, norm: Norm = normalize) -> list[str]:
    """Normalized acceptable forms of a scalar gold value (a value or a list of them)."""
    values = gold if isinstance(gold, list) else [gold]
    return [norm(v) for v in values]


def text_similarity(pred: str, gold: str, mode: Mode) -> float:
    """Similarity (0-100) of two normalized strings under ``mode``."""
    if pred == gold:
        return 100.0
    if mode == "strict" or _NUMBERS.findall(pred) != _NUMBERS.findall(gold):
        return 0.0
    return float(fuzz.ratio(pred.replace("-", " "), gold.replace("-", " ")))


def threshold(mode: Mode) -> float:
    return 100.0 if mode == "strict" else LENIENT_THRESHOLD


def is_match(similarity: float, mode: Mode) -> bool:
    return similarity + _EPS >= threshold(mode)


def scalar_similarity(pred: Any, gold: Any, mode: Mode, norm: Norm = normalize) -> float:
    p = norm(pred)
    return max(text_similarity(p, g, mode) for g in alternatives(gold, norm))


def list_similarity(
    pred: Sequence[Any] | None, gold: Sequence[Any] | None, mode: Mode, norm: Norm = normalize
) -> float:
    """Dice overlap (0-100) of a predicted list and a gold list whose items may be alternatives."""
    p = list(dict.fromkeys(v for v in (norm(x) for x in pred or []) if v))
    g = [alternatives(item, norm) for item in gold or []]
    if not p and not g:
        return 100.0
    if not p or not g:
        return 0.0
    ok = np.array(
        [[any(is_match(text_similarity(pi, a, mode), mode) for a in gi) for gi in g] for pi in p], dtype=float
    )
    rows, cols = linear_sum_assignment(ok, maximize=True)
    matched = int(ok[rows, cols].sum())
    return 100.0 * 2 * matched / (len(p) + len(g))


def field_similarity(field: FieldInfo, pred: Any, gold: Any, mode: Mode, norm: Norm = normalize) -> float:
    if field.is_list:
        return list_similarity(pred, gold, mode, norm)
    return scalar_similarity(pred, gold, mode, norm)


def field_matches(field: FieldInfo, similarity: float, mode: Mode) -> bool:
    """A list field matches only when every item pairs up; a scalar by the mode's threshold."""
    return similarity + _EPS >= 100.0 if field.is_list else is_match(similarity, mode)


def key_similarity(rt: RecordType, pred: Mapping[str, Any], gold: Mapping[str, Any], mode: Mode) -> tuple[float, bool]:
    """(mean key-field similarity 0-100, whether every key field matches)."""
    keys = [f for f in rt.fields if f.is_key]
    sims = [field_similarity(f, pred.get(f.name), gold.get(f.name), mode, rt.normalize) for f in keys]
    ok = all(field_matches(f, s, mode) for f, s in zip(keys, sims, strict=True))
    return sum(sims) / len(sims), ok


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldRecord:
    """One gold record: its position in the gold file, its values, and whether it is optional."""

    index: int
    values: Mapping[str, Any]
    optional: bool = False


@dataclass(frozen=True)
class Pair:
    pred: int  # index into the predictions
    gold: GoldRecord
    similarity: float


@dataclass(frozen=True)
class TypeMatch:
    """The outcome of pairing one record type of one document."""

    found: tuple[Pair, ...]
    absorbed: tuple[Pair, ...]
    missed: tuple[GoldRecord, ...]
    spurious: tuple[int, ...]


def match_records(
    rt: RecordType, preds: Sequence[Mapping[str, Any]], golds: Sequence[GoldRecord], mode: Mode
) -> TypeMatch:
    """Pair predictions with gold records of one type (see the module docstring)."""
    pairs: list[Pair] = []
    if preds and golds:
        n = min(len(preds), len(golds)) + 1
        w_optional = float(n)  # beats any total similarity (each term < 1)
        w_required = n * (w_optional + 1)  # beats any number of absorbed predictions
        weights = np.zeros((len(preds), len(golds)))
        sims = np.zeros_like(weights)
        for i, p in enumerate(preds):
            for j, g in enumerate(golds):
                sims[i, j], ok = key_similarity(rt, p, g.values, mode)
                if ok:
                    weights[i, j] = (w_optional if g.optional else w_required) + sims[i, j] / 100
        rows, cols = linear_sum_assignment(weights, maximize=True)
        pairs = [
            Pair(int(i), golds[j], round(float(sims[i, j]), 2))
            for i, j in zip(rows, cols, strict=True)
            if weights[i, j]
        ]
    found = tuple(sorted((p for p in pairs if not p.gold.optional), key=lambda p: p.gold.index))
    absorbed = tuple(sorted((p for p in pairs if p.gold.optional), key=lambda p: p.gold.index))
    paired_gold = {p.gold.index for p in pairs}
    paired_pred = {p.pred for p in pairs}
    return TypeMatch(
        found=found,
        absorbed=absorbed,
        missed=tuple(g for g in golds if not g.optional and g.index not in paired_gold),
        spurious=tuple(i for i in range(len(preds)) if i not in paired_pred),
    )


# -- reports -------------------------------------------------------------------------------


class Scores(BaseModel):
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int


class MicroScores(Scores):
    undergeneration: float
    overgeneration: float


class FieldScore(BaseModel):
    accuracy: float | None
    correct: float
    total: int


class GoldItem(BaseModel):
    """A gold record in a report: its index in the gold file's list and its key fields."""

    gold_index: int
    key: dict[str, Any]
    record_id: str | None = None  # the prediction it was paired with
    similarity: float | None = None


class PredItem(BaseModel):
    record_id: str | None
    key: dict[str, Any]
    evidence: str | None


class DocTypeResult(BaseModel):
    found: list[GoldItem]
    missed: list[GoldItem]
    spurious: list[PredItem]
    absorbed: list[GoldItem]


#: confidence bands (the embedded model's margin between its best and second option, in nats):
#: (label, lower bound); a value without a margin (a rule's, the strategy's) is "no margin"
BANDS = (("<1", 0.0), ("1-2", 1.0), ("2-4", 2.0), (">=4", 4.0))
NO_MARGIN = "no margin"


def band(margin: Any) -> str:
    if not isinstance(margin, int | float) or isinstance(margin, bool):
        return NO_MARGIN
    return next(label for label, low in reversed(BANDS) if margin >= low or low == 0.0)


class Scorecard(BaseModel):
    mode: Mode
    lenient_threshold: float
    micro: MicroScores
    macro_f1: float | None
    per_type: dict[str, Scores]
    per_field: dict[str, dict[str, FieldScore]]
    #: per type, per field the model ranked in any scored record: accuracy by confidence band
    per_field_confidence: dict[str, dict[str, dict[str, FieldScore]]] = {}
    documents: dict[str, dict[str, DocTypeResult]]


def prf(tp: int, fp: int, fn: int) -> Scores:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision=precision, recall=recall, f1=f1, tp=tp, fp=fp, fn=fn)


def _canonical(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=str)


def _is_empty(value: Any, norm: Norm) -> bool:
    return value is None or value == [] or (not isinstance(value, list) and norm(value) == "")


def _field_credit(field: FieldInfo, pred: Any, gold: Any, mode: Mode, norm: Norm) -> float | None:
    """1/0 (scalar) or Dice overlap 0..1 (list); None when neither side states the field."""
    if _is_empty(pred, norm) and (gold is None or gold == []):
        return None
    sim = field_similarity(field, pred, gold, mode, norm)
    if field.is_list:
        return sim / 100
    return 1.0 if is_match(sim, mode) else 0.0


def _gold_item(
    rt: RecordType, g: GoldRecord, pair: Pair | None = None, preds: Sequence[Mapping[str, Any]] = ()
) -> GoldItem:
    return GoldItem(
        gold_index=g.index,
        key={k: g.values.get(k) for k in rt.key_fields},
        record_id=preds[pair.pred].get("record_id") if pair else None,
        similarity=pair.similarity if pair else None,
    )


def score(
    schema: Schema,
    predictions: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    gold: Mapping[str, Mapping[str, Sequence[GoldRecord]]],
    mode: Mode,
) -> Scorecard:
    """Score ``predictions`` ({doc_id: {type: [record]}}) against ``gold`` (same shape).

    Only documents in ``gold`` are scored; a gold document absent from ``predictions`` has
    every required gold record missed.
    """
    totals = {rt.name: [0, 0, 0] for rt in schema.record_types}
    fields: dict[str, dict[str, list[float]]] = {
        rt.name: {f: [0.0, 0] for f in rt.value_fields} for rt in schema.record_types
    }
    banded: dict[str, dict[str, dict[str, list[float]]]] = {}  # type -> field -> band -> [correct, total]
    ranked: set[tuple[str, str]] = set()  # (type, field) with a margin somewhere
    documents: dict[str, dict[str, DocTypeResult]] = {}
    for doc_id in sorted(gold):
        documents[doc_id] = {}
        for rt in schema.record_types:
            # a canonical order, so that ties in the assignment never depend on record order
            preds = sorted(predictions.get(doc_id, {}).get(rt.name, []), key=_canonical)
            golds = list(gold[doc_id].get(rt.name, []))
            m = match_records(rt, preds, golds, mode)
            t = totals[rt.name]
            t[0] += len(m.found)
            t[1] += len(m.spurious)
            t[2] += len(m.missed)
            for pair in m.found:
                for f in rt.fields:
                    if f.name == "evidence":
                        continue
                    credit = _field_credit(
                        f, preds[pair.pred].get(f.name), pair.gold.values.get(f.name), mode, rt.normalize
                    )
                    if credit is not None:
                        fields[rt.name][f.name][0] += credit
                        fields[rt.name][f.name][1] += 1
                        label = band((preds[pair.pred].get("confidence") or {}).get(f.name))
                        ranked |= {(rt.name, f.name)} if label != NO_MARGIN else set()
                        cell = banded.setdefault(rt.name, {}).setdefault(f.name, {}).setdefault(label, [0.0, 0])
                        cell[0] += credit
                        cell[1] += 1
            documents[doc_id][rt.name] = DocTypeResult(
                found=[_gold_item(rt, p.gold, p, preds) for p in m.found],
                missed=[_gold_item(rt, g) for g in m.missed],
                spurious=sorted(
                    (
                        PredItem(
                            record_id=preds[i].get("record_id"),
                            key={k: preds[i].get(k) for k in rt.key_fields},
                            evidence=preds[i].get("evidence"),
                        )
                        for i in m.spurious
                    ),
                    key=lambda p: (str(p.key), p.record_id or "", p.evidence or ""),
                ),
                absorbed=[_gold_item(rt, p.gold, p, preds) for p in m.absorbed],
            )
    per_type = {name: prf(*t) for name, t in totals.items()}
    tp, fp, fn = (sum(t[i] for t in totals.values()) for i in range(3))
    micro = prf(tp, fp, fn)
    active = [s.f1 for s in per_type.values() if s.tp + s.fp + s.fn]
    return Scorecard(
        mode=mode,
        lenient_threshold=LENIENT_THRESHOLD,
        micro=MicroScores(
            **micro.model_dump(),
            undergeneration=fn / (tp + fn) if tp + fn else 0.0,
            overgeneration=fp / (tp + fp) if tp + fp else 0.0,
        ),
        macro_f1=sum(active) / len(active) if active else None,
        per_type=per_type,
        per_field={
            name: {
                f: FieldScore(accuracy=round(c / n, 6) if n else None, correct=round(c, 6), total=int(n))
                for f, (c, n) in fs.items()
            }
            for name, fs in fields.items()
        },
        per_field_confidence={
            name: {
                f: {
                    label: FieldScore(accuracy=round(c / n, 6), correct=round(c, 6), total=int(n))
                    for label in [*(b for b, _ in BANDS), NO_MARGIN]
                    if (c_n := bands.get(label)) is not None
                    for c, n in [c_n]
                }
                for f, bands in per.items()
                if (name, f) in ranked
            }
            for name, per in banded.items()
            if any((name, f) in ranked for f in per)
        },
        documents=documents,
    )


# -- comparing two runs --------------------------------------------------------------------


class Delta(BaseModel):
    a: float
    b: float
    delta: float


class Flip(BaseModel):
    doc_id: str
    record_type: str
    gold_index: int
    key: dict[str, Any]


class Comparison(BaseModel):
    run_a: str
    run_b: str
    mode: Mode
    micro_f1: Delta
    per_type: dict[str, Delta]
    gained: list[Flip]  # missed in run A, found in run B
    lost: list[Flip]  # found in run A, missed in run B


def compare(a: Scorecard, b: Scorecard, run_a: str, run_b: str) -> Comparison:
    """Per-type F1 deltas (b - a) and the gold records that flipped between found and missed."""

    def outcomes(card: Scorecard) -> dict[tuple[str, str, int], tuple[bool, dict[str, Any]]]:
        out: dict[tuple[str, str, int], tuple[bool, dict[str, Any]]] = {}
        for doc_id, per_type in card.documents.items():
            for name, res in per_type.items():
                out |= {(doc_id, name, g.gold_index): (True, g.key) for g in res.found}
                out |= {(doc_id, name, g.gold_index): (False, g.key) for g in res.missed}
        return out

    oa, ob = outcomes(a), outcomes(b)
    flips: dict[bool, list[Flip]] = {True: [], False: []}
    for k in sorted(oa.keys() & ob.keys()):
        if oa[k][0] != ob[k][0]:
            flips[ob[k][0]].append(Flip(doc_id=k[0], record_type=k[1], gold_index=k[2], key=ob[k][1]))

    def delta(x: float, y: float) -> Delta:
        return Delta(a=x, b=y, delta=y - x)

    return Comparison(
        run_a=run_a,
        run_b=run_b,
        mode=a.mode,
        micro_f1=delta(a.micro.f1, b.micro.f1),
        per_type={name: delta(a.per_type[name].f1, s.f1) for name, s in b.per_type.items() if name in a.per_type},
        gained=flips[True],
        lost=flips[False],
    )
