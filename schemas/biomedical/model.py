"""The biomedical record types of ../shared/spec/extraction-spec.md, as pydantic models.

The container ``Biomedical`` has one field per record type: ``list[Record]`` or
``Record | None`` (one per document, ``article``). Every record has ``evidence`` (a verbatim
quote) and marks its key fields -- the ones merging and scoring pair records on -- with
``json_schema_extra={"key": True}``. Fields that the candidate strategies fill from spans of
the text declare ``{"candidates": <kind>}`` (kinds: ``schemas/biomedical/candidates.py`` and
the generic ones in ``pipeline/candidates.py``); ``primary`` marks the key a record is built
around, ``candidates_scope: "chunk"`` lets a value come from anywhere in the chunk,
``fallback: "title"`` from the document's title when the sentence names none, and ``anchor``
builds a record per mention of a kind (a trial mention) with ``in_anchor`` fields read inside
it (see ``pipeline.strategies.candidates.FieldSpec``).

String lengths are bounded: constrained decoding turns ``max_length`` into a grammar
bound, which stops a small model from running away inside a string.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

KEY = {"key": True}


def _extra(
    key: bool, candidates: str | None, primary: bool, scope: str | None, fallback: str | None = None
) -> dict[str, Any] | None:
    extra: dict[str, Any] = {}
    if fallback:
        extra["fallback"] = fallback
    if key:
        extra["key"] = True
    if candidates:
        extra["candidates"] = candidates
    if primary:
        extra["primary"] = True
    if scope:
        extra["candidates_scope"] = scope
    return extra or None


def _name(
    description: str,
    *,
    key: bool = False,
    max_length: int = 120,
    candidates: str | None = None,
    primary: bool = False,
    scope: str | None = None,
    fallback: str | None = None,
) -> Any:
    return Field(
        min_length=1,
        max_length=max_length,
        description=description,
        json_schema_extra=_extra(key, candidates, primary, scope, fallback),
    )


def _opt(description: str, max_length: int = 120, *, candidates: str | None = None, scope: str | None = None) -> Any:
    return Field(
        default=None,
        max_length=max_length,
        description=description,
        json_schema_extra=_extra(False, candidates, False, scope),
    )


EVIDENCE_DESCRIPTION = "verbatim quote from the text (one sentence or less) that supports this record"


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidence: str = Field(min_length=1, max_length=400, description=EVIDENCE_DESCRIPTION)


class Article(Record):
    title: str = _name("the article's title as written", key=True, max_length=500, candidates="title")
    article_type: (
        Literal[
            "news",
            "press_release",
            "case_report",
            "research_abstract",
            "review",
            "meeting_abstract",
            "trial_record",
            "other",
        ]
        | None
    ) = None
    published: str | None = Field(
        default=None,
        max_length=10,
        pattern=r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$",
        description="original publication date, ISO, as precise as stated: 2025-01-30, 2025-04 or 2025",
        json_schema_extra={"candidates": "date"},
    )
    source: str | None = _opt("journal or site name", candidates="source")
    doi: str | None = _opt("DOI, e.g. 10.1016/j.medj.2025.100676", 100, candidates="doi")
    pmid: str | None = Field(default=None, max_length=12, pattern=r"^[0-9]{1,10}$")


class Person(Record):
    name: str = _name("person's name without credentials", key=True, max_length=80, candidates="person")
    credentials: str | None = _opt("degrees and credentials, e.g. MD, PhD", 60, candidates="credentials")
    role: str | None = _opt("role as stated, e.g. 'clinical director' or 'author'", 160)
    affiliation: str | None = _opt("organization name as stated", 160, candidates="organization")


class Organization(Record):
    name: str = _name("organization name as written", key=True, candidates="organization")
    kind: (
        Literal[
            "company",
            "regulator",
            "hospital",
            "university",
            "government",
            "funder",
            "nonprofit",
            "publisher",
            "other",
        ]
        | None
    ) = None


class Condition(Record):
    name: str = _name("disease, syndrome, complication or adverse event", key=True, candidates="condition")
    abbreviation: str | None = _opt("abbreviation defined in the text, e.g. CRS", 20, candidates="abbreviation")


class Therapy(Record):
    name: str = _name("product name or code, or the specific therapy as written", key=True, candidates="therapy")
    modality: str | None = _opt("kind of therapy as stated, e.g. 'mRNA CAR T cell therapy'")
    target: str | None = _opt("molecular target, e.g. CD19, BCMA", 30, candidates="target")
    developer: str | None = _opt("company or institution developing it", candidates="organization", scope="chunk")
    indications: list[Annotated[str, Field(max_length=120)]] = Field(
        default_factory=list, max_length=12, json_schema_extra={"candidates": "condition"}
    )


class RegulatoryEvent(Record):
    agency: str = _name("regulator, e.g. FDA", key=True, max_length=80, candidates="agency")
    action: str = _name(
        "action as stated, e.g. 'Rare Pediatric Disease Designation'", key=True, candidates="action", primary=True
    )
    therapy: str = _name("therapy the action is about", key=True, candidates="therapy", scope="chunk", fallback="title")
    indication: str | None = _opt("condition the action is for", candidates="condition")
    date: str | None = Field(
        default=None,
        max_length=10,
        pattern=r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$",
        description="ISO date as precise as stated",
        json_schema_extra={"candidates": "date"},
    )


class Trial(Record):
    # one record per trial mention ("the Phase 3 TRAILBLAZER-ALZ 2 trial", "a cluster randomised
    # controlled trial"); its phase, name and registry id are those written inside the mention
    therapy: str = _name("therapy studied", key=True, candidates="therapy", scope="chunk", fallback="title")
    phase: str | None = Field(
        default=None,
        min_length=1,
        max_length=5,
        pattern=r"^[0-9][a-z]?(/[0-9][a-z]?)?$",
        description="phase in digits: 1, 2, 3, 1/2, 2b; null when the text states none",
        json_schema_extra={"key": True, "candidates": "phase", "primary": True, "anchor": "trial_mention"},
    )
    # two trials of one therapy with no phase stated share their key; a name or registry id tells them apart
    name: str | None = Field(
        default=None,
        max_length=80,
        description="trial name, e.g. AURORA",
        json_schema_extra={"candidates": "trial_name", "distinguishes": True, "in_anchor": True},
    )
    indication: str | None = _opt("condition studied", candidates="condition")
    status: Literal["planned", "ongoing", "completed", "unknown"] | None = None
    registry_id: str | None = Field(
        default=None,
        max_length=30,
        description="NCT number or other registry id",
        json_schema_extra={"candidates": "registry_id", "distinguishes": True, "in_anchor": True},
    )
    sponsor: str | None = _opt("sponsor", candidates="organization", scope="chunk")


class Outcome(Record):
    therapy: str = _name("therapy the result is about", key=True, candidates="therapy", scope="chunk", fallback="title")
    finding: str = _name("reported result as stated", key=True, max_length=200, candidates="finding", primary=True)
    condition: str | None = _opt("condition of the patients", candidates="condition", scope="chunk")
    kind: Literal["efficacy", "safety"] | None = None
    timepoint: str | None = _opt("timepoint as stated, e.g. '11 months'", 40, candidates="timepoint")


class Funding(Record):
    funder: str = _name("funding organization or programme", key=True, candidates="funder")
    grant_id: str | None = _opt("grant number as written", 40, candidates="grant_id")


class Citation(Record):
    title: str = _name("title of the reference-list item", key=True, max_length=300, candidates="citation_title")
    source: str | None = _opt("journal, publisher or organization of the item", candidates="citation_source")
    year: int | None = Field(default=None, ge=1800, le=2100)


#: at most this many records of one type per chunk: a grammar bound against runaway lists
#: (a meeting abstract's author list holds 14 names in one chunk; the oracle ceiling lost 2 at 12)
MAX_RECORDS = 24


class Biomedical(BaseModel):
    """All record types of the biomedical spec, as extracted from one chunk of text."""

    model_config = ConfigDict(extra="forbid")

    article: Article | None = None
    people: list[Person] = Field(default_factory=list, max_length=MAX_RECORDS)
    organizations: list[Organization] = Field(default_factory=list, max_length=MAX_RECORDS)
    conditions: list[Condition] = Field(default_factory=list, max_length=MAX_RECORDS)
    therapies: list[Therapy] = Field(default_factory=list, max_length=MAX_RECORDS)
    regulatory_events: list[RegulatoryEvent] = Field(default_factory=list, max_length=MAX_RECORDS)
    trials: list[Trial] = Field(default_factory=list, max_length=MAX_RECORDS)
    outcomes: list[Outcome] = Field(default_factory=list, max_length=MAX_RECORDS)
    funding: list[Funding] = Field(default_factory=list, max_length=MAX_RECORDS)
    citations: list[Citation] = Field(default_factory=list, max_length=MAX_RECORDS)
