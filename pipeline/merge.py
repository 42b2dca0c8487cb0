"""One record per real-world thing per document: merge mentions across chunks.

Records of one type in one document are grouped when their key fields normalize equal (and
no field marked ``distinguishes`` holds two different values).
Where the document defines an abbreviation ("neuromyelitis optica spectrum disorder
(NMOSD)"), found with the Schwartz-Hearst algorithm (the ``abbreviations`` package), the
abbreviation and its expansion -- also with a qualifier in front ("U.S. Food and Drug
Administration") -- count as the same key. A merged record takes the first non-empty value
of each field (in document order) and the union of list fields, and keeps every mention's
evidence in ``mentions``; its ``confidence`` map holds, per field, the margin of the mention
whose value it took.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from abbreviations import schwartz_hearst

from pipeline.chunk import pieces
from pipeline.core.schema import RecordType, Schema

#: {normalized abbreviation or expansion: normalized expansion}
Aliases = dict[str, str]


def abbreviation_pairs(text: str, first: bool = True) -> dict[str, str]:
    """{abbreviation: long form} the text defines (Schwartz-Hearst, ``abbreviations``); the
    first definition of each (``first``) or the last. The text goes to the library a paragraph
    piece at a time (a definition lies within one sentence): given a whole long line it
    re-reads the line up to every parenthesis, quadratically (a 1 MB line: 47 s)."""
    pairs: dict[str, str] = {}
    with contextlib.redirect_stderr(io.StringIO()):  # the library prints skipped candidates
        for line in text.split("\n"):
            for _, piece in pieces(line):
                if "(" in piece:
                    found = schwartz_hearst.extract_abbreviation_definition_pairs(doc_text=piece)
                    pairs.update({k: v for k, v in found.items() if k not in pairs} if first else found)
    return pairs


@lru_cache(maxsize=64)
def abbreviations(text: str, normalize: Callable[[Any], str]) -> Aliases:
    """Abbreviations the text defines, both forms mapped to the normalized expansion."""
    pairs = abbreviation_pairs(text)
    out: Aliases = {}
    for short, long in pairs.items():
        s, lf = normalize(short), normalize(long)
        if s and lf and len(lf.split()) > 1:  # "ABC (antigen ...)": one-word expansions are too loose
            out[s] = lf
            out[lf] = lf
    return out


def canonical(value: Any, aliases: Aliases, normalize: Callable[[Any], str]) -> str:
    """The comparable form of a key value: its expansion when ``value`` is a defined
    abbreviation or ends with a defined expansion; else ``normalize(value)``."""
    v = normalize(value)
    if v in aliases:
        return aliases[v]
    for form, expansion in aliases.items():
        if form == expansion and v.endswith(" " + form):
            return expansion
    return v


def record_key(rt: RecordType, record: dict[str, Any], aliases: Aliases | None = None) -> tuple[str, ...]:
    if not aliases:
        return tuple(rt.normalize(record.get(k)) for k in rt.key_fields)
    return tuple(canonical(record.get(k), aliases, rt.normalize) for k in rt.key_fields)


def merge_type(rt: RecordType, records: list[dict[str, Any]], aliases: Aliases | None = None) -> list[dict[str, Any]]:
    distinct = [f.name for f in rt.fields if f.distinguishes]

    def compatible(merged: dict[str, Any], rec: dict[str, Any]) -> bool:
        """Equal keys, and no distinguishing field stated differently by the two."""
        for name in distinct:
            a, b = rt.normalize(merged.get(name)), rt.normalize(rec.get(name))
            if a and b and a != b:
                return False
        return True

    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    out: list[dict[str, Any]] = []
    for rec in sorted(records, key=lambda r: (r.get("evidence_start") is None, r.get("evidence_start") or 0)):
        key = record_key(rt, rec, aliases)
        merged = next((m for m in groups.get(key, []) if compatible(m, rec)), None)
        if merged is None:
            merged = {**rec, "mentions": []}
            if rec.get("confidence"):
                merged["confidence"] = dict(rec["confidence"])
            groups.setdefault(key, []).append(merged)
            out.append(merged)
        for f in rt.fields:
            if f.name == "evidence":
                continue
            if f.is_list:
                seen = {rt.normalize(v) for v in merged.get(f.name) or []}
                extra = [v for v in rec.get(f.name) or [] if rt.normalize(v) not in seen]
                merged[f.name] = list(merged.get(f.name) or []) + extra
            elif merged.get(f.name) in (None, "") and rec.get(f.name) not in (None, ""):
                merged[f.name] = rec[f.name]
                if f.name in (rec.get("confidence") or {}):
                    merged["confidence"] = {**(merged.get("confidence") or {}), f.name: rec["confidence"][f.name]}
        merged["mentions"].append(
            {k: rec.get(k) for k in ("evidence", "evidence_start", "evidence_end", "chunk_id", "record_id")}
        )
    if not rt.many:
        return out[:1]
    return out


def merge_document(
    schema: Schema, per_type: dict[str, list[dict[str, Any]]], text: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Merge one document's records; ``text`` (the document) supplies its abbreviations."""
    aliases = abbreviations(text, schema.normalize) if text else None
    return {rt.name: merge_type(rt, per_type.get(rt.name, []), aliases) for rt in schema.record_types}
