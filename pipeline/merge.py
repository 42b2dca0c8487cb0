"""One record per real-world thing per document: merge mentions across chunks.

Records of one type in one document are grouped when their key fields normalize equal.
A merged record takes the first non-empty value of each field (in document order) and
the union of list fields, and keeps every mention's evidence in ``mentions``.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.normalize import normalize
from pipeline.core.schema import RecordType, Schema


def record_key(rt: RecordType, record: dict[str, Any]) -> tuple[str, ...]:
    return tuple(normalize(record.get(k)) for k in rt.key_fields)


def merge_type(rt: RecordType, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for rec in sorted(records, key=lambda r: (r.get("evidence_start") is None, r.get("evidence_start") or 0)):
        key = record_key(rt, rec)
        if key not in groups:
            groups[key] = {**rec, "mentions": []}
        merged = groups[key]
        for f in rt.fields:
            if f.name == "evidence":
                continue
            if f.is_list:
                seen = {normalize(v) for v in merged.get(f.name) or []}
                extra = [v for v in rec.get(f.name) or [] if normalize(v) not in seen]
                merged[f.name] = list(merged.get(f.name) or []) + extra
            elif merged.get(f.name) in (None, "") and rec.get(f.name) not in (None, ""):
                merged[f.name] = rec[f.name]
        merged["mentions"].append(
            {k: rec.get(k) for k in ("evidence", "evidence_start", "evidence_end", "chunk_id", "record_id")}
        )
    out = list(groups.values())
    if not rt.many:
        return out[:1]
    return out


def merge_document(schema: Schema, per_type: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {rt.name: merge_type(rt, per_type.get(rt.name, [])) for rt in schema.record_types}
