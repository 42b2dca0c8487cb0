"""``pipeline schema check SPEC``: what the pipeline will do with a schema, and what to fix.

Loads the schema as ``pipeline extract`` would and describes, per record type, its fields
(SQL type, key, bounds as declared or as the embedded model's constraint will add them,
candidate kind), then the strategy each kind of model gets, the prompt it sends, the views
``pipeline sql`` will show, and one line per default the pipeline filled in or problem to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.core.schema import Schema, load_schema
from pipeline.providers.bounds import bounded
from pipeline.store.views import view_name

#: how ``pipeline extract`` picks strategies without a ``--strategy``
REMOTE_STRATEGY = "direct"


@dataclass
class FieldReport:
    name: str
    sql_type: str
    key: bool
    required: bool
    bounds: str  # as declared, else "+" what the local constraint adds
    candidates: str | None


@dataclass
class TypeReport:
    name: str
    many: bool
    view: str
    fields: list[FieldReport]


@dataclass
class SchemaReport:
    name: str
    spec: str
    types: list[TypeReport]
    strategy_local: str
    strategy_remote: str
    prompts: dict[str, str]  # what each model-using strategy sends: a file path or "generic"
    notes: list[str] = field(default_factory=list)  # defaults filled in and things to fix


def _bounds(declared: dict[str, Any], derived: dict[str, Any]) -> str:
    parts = []
    for key in ("enum", "pattern", "maxLength", "maxItems", "minimum", "maximum"):
        if key in declared:
            value = declared[key]
            parts.append(f"{key}={len(value)} values" if key == "enum" else f"{key}={value}")
        elif key in derived:
            parts.append(f"+{key}={derived[key]}")
    return ", ".join(parts) or "-"


def _prop(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A property's own schema: ``X | None`` unwrapped, a ``$ref`` resolved, list items merged."""
    options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
    out = dict(options[0]) if options else dict(schema)
    if "$ref" in out:
        out = {**defs.get(out["$ref"].rsplit("/", 1)[-1], {}), **{k: v for k, v in out.items() if k != "$ref"}}
    return out


def check_schema(spec: str) -> SchemaReport:
    """Describe ``spec`` as the pipeline will use it. Raises ``SchemaError`` when it cannot load."""
    from pipeline.strategies import EMBEDDED_DEFAULT, field_specs

    schema = load_schema(spec)
    declared_all = schema.json_schema
    derived_all = bounded(declared_all)
    defs_d, defs_b = declared_all.get("$defs", {}), derived_all.get("$defs", {})
    notes = list(schema.warnings)
    taken: set[str] = set()
    types = []
    for rt in schema.record_types:
        name = rt.model.__name__
        own_d = defs_d.get(name, {}).get("properties", {})
        own_b = defs_b.get(name, {}).get("properties", {})
        specs = {s.name: s for s in field_specs(rt, schema)}
        kinds = _declared_kinds(rt.model)
        fields: list[FieldReport] = []
        for f in rt.fields:
            d = _prop(own_d.get(f.name, {}), defs_d)
            b = _prop(own_b.get(f.name, {}), defs_b)
            if f.is_list:
                d = {**d, **{k: v for k, v in d.get("items", {}).items() if k in ("maxLength", "enum", "pattern")}}
                b = {**b, **{k: v for k, v in b.get("items", {}).items() if k in ("maxLength", "enum", "pattern")}}
            kind = kinds.get(f.name) or ("phrase" if f.name in specs else None)
            fields.append(FieldReport(f.name, f.sql_type, f.is_key, f.required, _bounds(d, b), kind))
        view = view_name(rt.name, taken)
        taken.add(view)
        types.append(TypeReport(rt.name, rt.many, view, fields))
        container = _prop(declared_all.get("properties", {}).get(rt.name, {}), defs_d)
        if rt.many and "maxItems" not in container:
            notes.append(f"{rt.name}: no max_length on the list; the embedded model's constraint caps it")
        unbounded = [r.name for r in fields if r.bounds.startswith("+maxLength") and r.name != "evidence"]
        if unbounded:
            notes.append(
                f"{rt.name}: {', '.join(unbounded)} set no max_length; the embedded model's constraint caps "
                "them (see bounds); set Field(max_length=...) to choose"
            )
    local = schema.domain.strategy or EMBEDDED_DEFAULT
    prompts = {
        "direct": _prompt_path(schema, "direct.j2", "direct"),
        "fewshot": _prompt_path(schema, "fewshot", "fewshot"),
        "select": _prompt_path(schema, "fewshot", "select"),
    }
    return SchemaReport(schema.name, schema.spec, types, local, REMOTE_STRATEGY, prompts, notes)


def _declared_kinds(model: Any) -> dict[str, str]:
    out = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if isinstance(extra.get("candidates"), str):
            out[name] = str(extra["candidates"])
    return out


def _prompt_path(schema: Schema, own: str, generic: str) -> str:
    """The schema package's prompt file or folder ``own``, else the generic template."""
    folder = schema.domain.prompts
    path = folder / own if folder is not None else None
    if path is not None and path.exists():
        return str(path)
    return f"generic (pipeline/templates/prompts/{generic}.j2)"
