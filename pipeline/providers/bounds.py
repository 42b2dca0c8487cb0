"""Bounds for a JSON schema that sets none, so a small model cannot run away in it.

A 270M model under a JSON-schema constraint happily repeats list items, or one string, until
``max_tokens`` cuts the answer off. Where a schema gives no ``maxItems`` or ``maxLength``,
the local provider adds these before constraining decoding (the schema the user validates
against is unchanged):

- a list of objects (records): ``MAX_RECORDS`` items; a list of values: ``MAX_VALUES``;
- a string: ``MAX_STRING`` characters, an ``evidence`` quote ``MAX_EVIDENCE``.

Enums, patterns and formats bound themselves and are left alone.
"""

from __future__ import annotations

from typing import Any

MAX_RECORDS = 8
MAX_VALUES = 8
MAX_STRING = 160
MAX_EVIDENCE = 400


def bounded(schema: Any, name: str = "") -> Any:
    """``schema`` with a ``maxItems``/``maxLength`` on every array/string that has none."""
    if isinstance(schema, list):
        return [bounded(s, name) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            out[key] = {prop: bounded(sub, prop) for prop, sub in value.items()}
        elif key in ("$defs", "definitions") and isinstance(value, dict):
            out[key] = {d: bounded(sub) for d, sub in value.items()}
        else:
            out[key] = bounded(value, name)
    kind = out.get("type")
    if kind == "array" and "maxItems" not in out:
        items = out.get("items", {})
        is_records = isinstance(items, dict) and ("$ref" in items or items.get("type") == "object")
        out["maxItems"] = MAX_RECORDS if is_records else MAX_VALUES
    elif kind == "string" and not {"maxLength", "enum", "const", "pattern", "format"} & out.keys():
        out["maxLength"] = MAX_EVIDENCE if name == "evidence" else MAX_STRING
    return out
