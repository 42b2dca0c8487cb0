"""What a schema package adds to the generic pipeline: the ``Domain`` object.

A schema module may export ``DOMAIN = Domain(model=..., ...)`` next to its pydantic model.
Every part is optional; a plain ``file.py:Model`` gets the generic defaults for all of it:

===================  ==========================================  ==================================
part                 what it is                                  generic default
===================  ==========================================  ==================================
``name``             the schema's name (runs, views, eval)        the container class in snake_case
``prompts``          folder: ``direct.j2``, ``fewshot/<type>.j2``  a prompt built from the schema
                     and ``fewshot/gates.json``
``candidates``       candidate kinds a field may declare with     the generic kinds of
                     ``json_schema_extra={"candidates": kind}``   ``pipeline.candidates``
``normalize``        extra normalization of a folded value for   none
                     merging and scoring (e.g. citation markers)
``cleaning``         extra boilerplate lines and section         none (generic web boilerplate only)
                     headings for the text cleaner
``strategy``         default strategy on the embedded model       ``select`` over generic candidates
``fill``             how fields are completed after records are   the embedded model ranks the values
                     built: rules, model ranking (``core/fill``)  of ``Literal`` fields, no examples
===================  ==========================================  ==================================

The core never names a domain: everything a domain knows lives in its package under
``schemas/<domain>/`` and reaches the pipeline only through this object.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from pipeline.core.fill import Fill

#: a candidate generator: the candidate spans of one kind in a text, in text order, no duplicates
Finder = Callable[[str], list[str]]


@dataclass(frozen=True)
class CandidateKind:
    """A kind of candidate span that schema fields may declare."""

    find: Finder
    #: a value of this kind must follow the record's primary value directly, as an abbreviation
    #: in parentheses or a grant number after its funder does
    adjacent: bool = False
    #: which values are class phrases rather than names: a class phrase gives way to a specific
    #: name in the same unit, and is no record of its own once one sentence ties it to a name
    is_class: Callable[[str], bool] | None = None
    #: at most this many records per unit (sentence) built on a value of this kind (``select``)
    per_unit: int | None = None
    #: names a document introduces once and then uses alone (a brand name given in apposition
    #: to a generic name): given the document's text, the finder to use on that document's units
    in_document: Callable[[str], Finder] | None = None
    #: the field's value for a candidate span, where the two differ: a date written
    #: "Jan. 30, 2025" is "2025-01-30", "Grade III" is "3" (None: the span is no value)
    value: Callable[[str], str | None] | None = None
    #: values the document says name one thing (a brand and its generic name): given the
    #: document's text, {casefolded alias: the name it stands for}
    aliases: Callable[[str], Mapping[str, str]] | None = None


@dataclass(frozen=True)
class Cleaning:
    """Extra line rules for the text cleaner (``pipeline.ingest``), on top of the generic ones."""

    #: whole lines (stripped) that are boilerplate
    boilerplate: re.Pattern[str] | None = None
    #: headings that start a boilerplate section, which runs to the next content heading
    section_stops: re.Pattern[str] | None = None
    #: headings that end such a section
    content_headings: re.Pattern[str] | None = None


@dataclass(frozen=True)
class Domain:
    """Everything a schema package declares. Only ``model`` is required."""

    model: type[BaseModel]
    name: str | None = None
    prompts: Path | None = None
    candidates: Mapping[str, CandidateKind] = field(default_factory=dict)
    normalize: Callable[[str], str] | None = None
    cleaning: Cleaning = field(default_factory=Cleaning)
    strategy: str | None = None
    fill: Fill | None = None


def snake_case(name: str) -> str:
    """``DrugEvents`` -> ``drug_events``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
