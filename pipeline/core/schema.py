"""Load a user's extraction schema and describe its record types.

The schema contract (README, "Schemas"):

- a container model whose fields are record types: ``list[Record]`` (many per document) or
  ``Record | None`` (one per document); a model whose fields are all plain values is itself
  one record type (many per document);
- key fields -- the ones merging and scoring pair records on -- carry
  ``json_schema_extra={"key": True}``; a record type without key marks gets its required
  text fields as keys (else its first text field), with a warning; a non-key field marked
  ``{"distinguishes": True}`` keeps records with equal keys apart when its values differ;
- every record has an ``evidence`` string (a verbatim quote); one is added, with a warning,
  where the model has none;
- a module may export ``DOMAIN`` (``pipeline.core.domain.Domain``) to add prompts, candidate
  generators, normalization and cleaning rules; a plain model gets the generic defaults.

``--schema`` takes a built-in name (a package under ``schemas/``), ``module:Class``,
``path/to/file.py:Class`` or a path to a module or package that exports ``DOMAIN``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
import types
import typing
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, Field, create_model

from pipeline.core.domain import Domain, snake_case
from pipeline.core.errors import SchemaError
from pipeline.core.normalize import normalize

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
#: the schema ``pipeline extract`` uses when none is given
DEFAULT_SCHEMA = "biomedical"
EVIDENCE_DESCRIPTION = "verbatim quote from the text (one sentence or less) that supports this record"


@dataclass(frozen=True)
class FieldInfo:
    name: str
    is_list: bool
    is_key: bool
    required: bool
    sql_type: str
    #: ``json_schema_extra={"distinguishes": True}``: records with equal keys but different
    #: values here are different things (two unphased trials of one drug, by name)
    distinguishes: bool = False


@dataclass(frozen=True, eq=False)
class RecordType:
    """One record type of a schema: its name (the container field) and record model."""

    name: str
    model: type[BaseModel]
    many: bool
    fields: tuple[FieldInfo, ...]
    #: the schema's comparable form of a value (merging, scoring)
    normalize: typing.Callable[[Any], str] = normalize

    @property
    def key_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.is_key]

    @property
    def value_fields(self) -> list[str]:
        return [f.name for f in self.fields if f.name != "evidence"]

    def field(self, name: str) -> FieldInfo:
        return next(f for f in self.fields if f.name == name)


@dataclass(frozen=True, eq=False)
class Schema:
    """A loaded schema: the container model, its record types and its domain."""

    name: str
    model: type[BaseModel]
    record_types: tuple[RecordType, ...]
    domain: Domain
    #: how to load this schema again (stored with each run): a built-in name, module:Class or file.py:Class
    spec: str = ""
    #: what the defaults filled in (no key marks, no evidence field), one line each
    warnings: tuple[str, ...] = field(default=())

    def record_type(self, name: str) -> RecordType:
        for rt in self.record_types:
            if rt.name == name:
                return rt
        known = ", ".join(rt.name for rt in self.record_types)
        raise SchemaError(f"schema {self.name!r} has no record type {name!r}", f"use one of: {known}")

    def normalize(self, value: Any) -> str:
        return normalize(value, self.domain.normalize)

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


def _record_model(tp: Any) -> type[BaseModel] | None:
    """The record model of a container field annotation, or None for a plain value."""
    inner, _ = _unwrap_optional(tp)
    if typing.get_origin(inner) is list:
        (inner,) = typing.get_args(inner) or (None,)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _with_evidence(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` plus an ``evidence`` string, for record models that have none."""
    made: type[BaseModel] = create_model(
        model.__name__,
        __base__=model,
        __module__=model.__module__,
        evidence=(str, Field(min_length=1, description=EVIDENCE_DESCRIPTION)),
    )
    return made


def _default_keys(fields: list[FieldInfo]) -> list[str]:
    """Required text fields identify a record; else its first text field."""
    text = [f for f in fields if f.sql_type == "VARCHAR" and f.name != "evidence"]
    required = [f.name for f in text if f.required]
    return required or [f.name for f in text[:1]]


def _wrap_single(model: type[BaseModel], name: str) -> type[BaseModel]:
    """A record model given as the schema: a container with one ``list[model]`` field."""
    fields: dict[str, Any] = {name: (list[model], Field(default_factory=list))}  # type: ignore[valid-type]
    container: type[BaseModel] = create_model(f"{model.__name__}Records", __module__=model.__module__, **fields)
    return container


def describe(model: type[BaseModel], domain: Domain | None = None, spec: str = "") -> Schema:
    """Check ``model`` against the schema contract, fill in the defaults, describe its record types."""
    domain = domain or Domain(model=model)
    name = domain.name or snake_case(model.__name__)
    warnings: list[str] = []
    if model.model_fields and all(_record_model(i.annotation) is None for i in model.model_fields.values()):
        model = _wrap_single(model, name)  # the model is one record type
    norm = partial(normalize, extra=domain.normalize)
    fixed: dict[str, Any] = {}
    record_types: list[RecordType] = []
    for field_name, info in model.model_fields.items():
        tp, optional = _unwrap_optional(info.annotation)
        many = typing.get_origin(tp) is list
        record = _record_model(info.annotation)
        if record is None:
            raise SchemaError(
                f"schema {name!r}: field {field_name!r} is not a record type",
                "each field of the container must be list[Model] or Model | None with a pydantic Model",
            )
        if not many and not optional:
            raise SchemaError(
                f"schema {name!r}: single record type {field_name!r} must be optional",
                f"declare it as {record.__name__} | None = None",
            )
        if "evidence" not in record.model_fields:
            record = _with_evidence(record)
            fixed[field_name] = (list[record] if many else record | None, info)  # type: ignore[valid-type]
            warnings.append(f"{field_name}: no 'evidence' field, one was added (a verbatim quote grounds each record)")
        fields: list[FieldInfo] = []
        for fname, finfo in record.model_fields.items():
            extra = finfo.json_schema_extra if isinstance(finfo.json_schema_extra, dict) else {}
            sql, is_list = _sql_type(finfo.annotation)
            fields.append(
                FieldInfo(
                    fname, is_list, bool(extra.get("key")), finfo.is_required(), sql, bool(extra.get("distinguishes"))
                )
            )
        if not any(f.is_key for f in fields):
            keys = _default_keys(fields)
            if not keys:
                raise SchemaError(
                    f"schema {name!r}: record type {field_name!r} has no text field to identify a record",
                    'add a str field and mark it with Field(json_schema_extra={"key": True})',
                )
            fields = [replace(f, is_key=f.name in keys) for f in fields]
            warnings.append(
                f"{field_name}: no key marks, keyed on {', '.join(keys)} "
                f'(mark keys with Field(json_schema_extra={{"key": True}}))'
            )
        record_types.append(RecordType(field_name, record, many, tuple(fields), norm))
    if not record_types:
        raise SchemaError(f"schema {name!r} has no record types", "add at least one list[Model] field")
    if fixed:
        model = create_model(model.__name__, __base__=model, __module__=model.__module__, **fixed)
    return Schema(name, model, tuple(record_types), domain, spec, tuple(warnings))


def builtin_schemas() -> list[str]:
    """Names of the packages under ``schemas/`` (each a folder with ``__init__.py``)."""
    if not SCHEMAS_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in SCHEMAS_DIR.glob("*/__init__.py"))


def _import(module_name: str) -> types.ModuleType:
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.append(str(PROJECT_ROOT))
    try:
        path = Path(module_name)
        if path.name == "__init__.py":
            path = path.parent  # a package given by its __init__.py: import it as the package
        if module_name.endswith(".py") or path.is_dir():
            file = path / "__init__.py" if path.is_dir() else path
            if not file.is_file():
                raise SchemaError(f"schema file {module_name} does not exist", "check the path")
            key = f"_pipeline_schema_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]}"
            if key in sys.modules:
                return sys.modules[key]
            spec_obj = importlib.util.spec_from_file_location(
                key, file, submodule_search_locations=[str(path)] if path.is_dir() else None
            )
            assert spec_obj is not None and spec_obj.loader is not None
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[key] = module
            try:
                spec_obj.loader.exec_module(module)
            except BaseException:
                del sys.modules[key]
                raise
            return module
        return importlib.import_module(module_name)
    except SchemaError:
        raise
    except Exception as exc:  # any import-time failure of user code
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise SchemaError(
            f"schema module {module_name!r} failed to import: {type(exc).__name__}: {first_line}",
            "fix the module (try `python -c 'import " + module_name.removesuffix(".py") + "'`)",
        ) from exc


def _only_container(module: types.ModuleType, spec: str) -> type[BaseModel]:
    """The one container model a module defines (a model with record-type fields)."""
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == module.__name__
        and any(_record_model(i.annotation) for i in obj.model_fields.values())
    ]
    if len(found) != 1:
        names = ", ".join(sorted(m.__name__ for m in found)) or "none"
        raise SchemaError(
            f"{spec}: exports no DOMAIN and {len(found)} container models ({names})",
            f"name the model: {spec}:ModelClass",
        )
    return found[0]


def _canonical_spec(spec: str, module_name: str, class_name: str | None) -> str:
    """How the runs table records ``spec``: built-in names stay, file paths become absolute."""
    if spec in builtin_schemas():
        return spec
    path = Path(module_name)
    where = str(path.resolve()) if module_name.endswith(".py") or path.is_dir() else module_name
    return f"{where}:{class_name}" if class_name else where


def load_schema(spec: str) -> Schema:
    """Load a schema by built-in name, ``module:Class``, ``file.py:Class`` or a module path."""
    builtins = builtin_schemas()
    target = f"schemas.{spec}" if spec.partition(":")[0] in builtins else spec
    module_name, sep, class_name = target.rpartition(":")
    if not sep:
        module_name, class_name = target, ""
    looks_like_path = module_name.endswith(".py") or Path(module_name).is_dir() or "." in module_name
    if not sep and not looks_like_path:
        known = ", ".join(builtins) or "none"
        raise SchemaError(
            f"unknown schema {spec!r}",
            f"use a built-in name ({known}), module:Class, or path/to/file.py:Class",
        )
    module = _import(module_name)
    domain = getattr(module, "DOMAIN", None)
    if domain is not None and not isinstance(domain, Domain):
        raise SchemaError(
            f"{module_name}: DOMAIN is not a pipeline Domain", "build it with pipeline.core.domain.Domain"
        )
    if class_name:
        model = getattr(module, class_name, None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise SchemaError(
                f"{module_name} has no pydantic model named {class_name!r}", "name a BaseModel subclass after the ':'"
            )
        if domain is not None and domain.model is not model:
            domain = None  # another model of the module: generic defaults
    elif domain is not None:
        model = domain.model
    else:
        model = _only_container(module, spec)
    return describe(model, domain, _canonical_spec(spec, module_name, class_name or None))
