"""Load a user's extraction schema and describe its record types.

The schema contract (see README, "Schemas and prompts"):

- the schema is a pydantic model whose fields are record types;
- each field is ``list[Model]`` (many records per document) or ``Model | None`` (one
  record per document, e.g. ``article``);
- every record model has a string field ``evidence``;
- key fields -- the ones the scorer pairs records on -- carry ``json_schema_extra={"key": True}``;
  a record type without marked key fields uses its first required string field.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel

from pipeline.core.errors import SchemaError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_SCHEMAS = {"biomedical": "schemas.biomedical:Biomedical"}


@dataclass(frozen=True)
class FieldInfo:
    name: str
    is_list: bool
    is_key: bool
    required: bool
    sql_type: str


@dataclass(frozen=True)
class RecordType:
    """One record type of a schema: its name (the schema field) and record model."""

    name: str
    model: type[BaseModel]
    many: bool
    fields: tuple[FieldInfo, ...]

    @property
    def key_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.is_key]

    @property
    def value_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.name != "evidence"]


@dataclass(frozen=True)
class Schema:
    """A loaded schema: the container model plus its record types."""

    name: str
    model: type[BaseModel]
    record_types: tuple[RecordType, ...]

    def record_type(self, name: str) -> RecordType:
        for rt in self.record_types:
            if rt.name == name:
                return rt
        known = ", ".join(rt.name for rt in self.record_types)
        raise SchemaError(f"schema {self.name!r} has no record type {name!r}", f"use one of: {known}")

    @property
    def json_schema(self) -> dict[str, Any]:
        return self.model.model_json_schema()

    @property
    def hash(self) -> str:
        blob = json.dumps(self.json_schema, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _sql_type(tp: Any) -> tuple[str, bool]:
    inner, _ = _unwrap_optional(tp)
    if typing.get_origin(inner) is list:
        return "VARCHAR[]", True
    if inner is int:
        return "BIGINT", False
    if inner is float:
        return "DOUBLE", False
    if inner is bool:
        return "BOOLEAN", False
    return "VARCHAR", False


def describe(model: type[BaseModel], name: str) -> Schema:
    """Check ``model`` against the schema contract and describe its record types."""
    record_types: list[RecordType] = []
    for field_name, info in model.model_fields.items():
        tp, optional = _unwrap_optional(info.annotation)
        many = typing.get_origin(tp) is list
        if many:
            (tp,) = typing.get_args(tp)
        if not (isinstance(tp, type) and issubclass(tp, BaseModel)):
            raise SchemaError(
                f"schema {name!r}: field {field_name!r} is not a record type",
                "each schema field must be list[Model] or Model | None with a pydantic Model",
            )
        if not many and not optional:
            raise SchemaError(
                f"schema {name!r}: single record type {field_name!r} must be optional",
                f"declare it as {tp.__name__} | None = None",
            )
        if "evidence" not in tp.model_fields:
            raise SchemaError(
                f"schema {name!r}: record type {field_name!r} has no 'evidence' field",
                "add `evidence: str` so every record can be grounded to the source text",
            )
        fields: list[FieldInfo] = []
        for fname, finfo in tp.model_fields.items():
            extra = finfo.json_schema_extra if isinstance(finfo.json_schema_extra, dict) else {}
            sql, is_list = _sql_type(finfo.annotation)
            fields.append(FieldInfo(fname, is_list, bool(extra.get("key")), finfo.is_required(), sql))
        if not any(f.is_key for f in fields):
            first = next((f for f in fields if f.required and f.sql_type == "VARCHAR" and f.name != "evidence"), None)
            if first is None:
                raise SchemaError(
                    f"schema {name!r}: record type {field_name!r} has no key field",
                    'mark one with Field(json_schema_extra={"key": True})',
                )
            fields = [FieldInfo(f.name, f.is_list, f is first, f.required, f.sql_type) for f in fields]
        record_types.append(RecordType(field_name, tp, many, tuple(fields)))
    if not record_types:
        raise SchemaError(f"schema {name!r} has no record types", "add at least one list[Model] field")
    return Schema(name, model, tuple(record_types))


def load_schema(spec: str) -> Schema:
    """Load a schema by built-in name (``biomedical``) or ``module:Class``.

    ``module`` may be a dotted import path or a path to a ``.py`` file.
    """
    target = BUILTIN_SCHEMAS.get(spec, spec)
    if ":" not in target:
        known = ", ".join(sorted(BUILTIN_SCHEMAS))
        raise SchemaError(
            f"unknown schema {spec!r}",
            f"use a built-in name ({known}) or module:Class, e.g. my_schema:Invoice",
        )
    module_name, _, class_name = target.rpartition(":")
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.append(str(PROJECT_ROOT))
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise SchemaError(f"schema file {module_name} does not exist", "check the path")
            spec_obj = importlib.util.spec_from_file_location(path.stem, path)
            assert spec_obj is not None and spec_obj.loader is not None
            module = importlib.util.module_from_spec(spec_obj)
            spec_obj.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except SchemaError:
        raise
    except Exception as exc:  # any import-time failure of user code
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise SchemaError(
            f"schema module {module_name!r} failed to import: {type(exc).__name__}: {first_line}",
            "fix the module (try `python -c 'import " + module_name.removesuffix(".py") + "'`)",
        ) from exc
    model = getattr(module, class_name, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise SchemaError(
            f"{module_name} has no pydantic model named {class_name!r}",
            "name a BaseModel subclass after the ':'",
        )
    return describe(model, spec)
